"""Drift against a baseline (``validate --baseline``): what it costs, how big a baseline is,
how quiet it stays on resamples of real tables, and Evidently's data-drift preset beside it.

Four measurements (results in ``benchmarks/RESULTS.md``, "Drift (issue 15)"):

(a) **cost against n**: 32 float32 columns + an int label + a string column, a reference
    and a current file drawn independently (two columns of the current one shifted). Per
    size: ``validate CUR`` (the scan), ``validate CUR --baseline REF.json``, and the
    comparison alone (reading the baseline JSON, then comparing it with the scanned
    profile), medians of ``--rounds`` runs in this process;
(b) **baseline size**: the ``--profile-out`` JSON and the slim ``--baseline-out`` JSON at
    32 and at ``--wide`` columns (100,000 rows, so the row sample is full);
(c) **null study**: bootstrap resamples of real tables (scikit-learn's bundled ones and
    statsmodels' fair and randhie) at 100k and 1M rows, several seeds: errors and the
    warning rate per column comparison;
(d) **Evidently** ``DataDriftPreset`` on the same reference and current data, run by
    ``--evidently PYTHON`` (an interpreter with evidently installed, kept apart from the
    project's environment); the ratio to batchguard's whole ``validate --baseline`` run
    and to its comparison alone.

Usage::

    python benchmarks/bench_drift.py --rows 1000000 --evidently /path/to/venv/bin/python
    python benchmarks/bench_drift.py --quick      # smoke run: 20k rows, no Evidently
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pipeline import validate  # noqa: E402
from pipeline.drift import compare, load_baseline, summarize, write_baseline  # noqa: E402
from pipeline.profiling import Profile  # noqa: E402
from pipeline.source import ROW_ID  # noqa: E402

COLUMNS = 32
ROW_GROUP = 131_072


def make_table(n: int, seed: int, shift: bool = False, columns: int = COLUMNS) -> pa.Table:
    """``columns`` float32 columns of four shapes, a 5-class label and a 4-value string column."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for j in range(columns):
        kind = j % 4
        if kind == 0:
            x = rng.normal(10.0, 2.0, n)
        elif kind == 1:
            x = rng.lognormal(0.0, 0.8, n)
        elif kind == 2:
            x = rng.uniform(-1.0, 1.0, n)
        else:
            x = rng.gamma(2.0, 3.0, n)
        cols[f"f{j:02d}"] = x.astype(np.float32)
    if shift:  # a mean shift of 0.5 sd and a doubled spread
        cols["f00"] = cols["f00"] + np.float32(1.0)
        cols["f02"] = cols["f02"] * np.float32(2.0)
    cols["label"] = rng.choice(5, n, p=[0.4, 0.25, 0.2, 0.1, 0.05]).astype(np.int64)
    cols["segment"] = np.array(["a", "b", "c", "d"])[rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])]
    return pa.table(cols)


def write(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path, row_group_size=ROW_GROUP)
    return path


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# -- (a) cost ----------------------------------------------------------------------------------
def cost(n: int, folder: Path, rounds: int) -> dict[str, Any]:
    ref = write(make_table(n, seed=1), folder / f"ref-{n}.parquet")
    cur = write(make_table(n, seed=2, shift=True), folder / f"cur-{n}.parquet")
    baseline = folder / f"ref-{n}.json"
    profile = validate(ref, label="label").profile
    baseline.write_text(json.dumps(profile.to_dict(), default=str))
    scan, with_baseline, load, comp = [], [], [], []
    report = None
    for _ in range(rounds):
        t, report = timed(lambda: validate(cur, label="label"))
        scan.append(t)
        t, drifted = timed(lambda: validate(cur, label="label", baseline=baseline))
        with_baseline.append(t)
        t, base = timed(lambda: load_baseline(baseline))
        load.append(t)
        t, _ = timed(lambda base=base, prof=report.profile: compare(base, prof, label="label"))
        comp.append(t)
    found = sorted({(f.check, f.column, f.severity) for f in drifted.drift.findings})
    return {
        "rows": n,
        "scan_s": statistics.median(scan),
        "validate_baseline_s": statistics.median(with_baseline),
        "load_baseline_s": statistics.median(load),
        "compare_s": statistics.median(comp),
        "findings": found,
        "files": [str(ref), str(cur)],
    }


# -- (b) size ----------------------------------------------------------------------------------
def sizes(columns: int, folder: Path, rows: int = 100_000) -> dict[str, Any]:
    table = make_table(rows, seed=3, columns=columns)
    table = table.append_column(ROW_ID, pa.array(np.arange(rows, dtype=np.int64)))
    prof = Profile(table.schema)
    for batch in table.to_batches(max_chunksize=65_536):
        prof.update(batch)
    full, slim = folder / f"profile-{columns}.json", folder / f"slim-{columns}.json"
    t_full, _ = timed(lambda: full.write_text(json.dumps(prof.to_dict(), default=str)))
    t_slim, _ = timed(lambda: write_baseline(prof, slim))
    out = {
        "columns": columns + 2,
        "rows": rows,
        "profile_bytes": full.stat().st_size,
        "slim_bytes": slim.stat().st_size,
        "profile_write_s": t_full,
        "slim_write_s": t_slim,
    }
    t_load, base = timed(lambda: load_baseline(slim))
    out["slim_load_s"] = t_load
    out["slim_compare_s"], _ = timed(lambda: compare(base, prof, label="label"))
    full.unlink()
    return out


# -- (c) null study ----------------------------------------------------------------------------
def null_study(sizes_: list[int], seeds: int) -> dict[str, Any]:
    from sklearn import datasets

    tables = {
        "iris": datasets.load_iris(as_frame=True).frame,
        "wine": datasets.load_wine(as_frame=True).frame,
        "breast_cancer": datasets.load_breast_cancer(as_frame=True).frame,
        "diabetes": datasets.load_diabetes(as_frame=True).frame,
        "digits": datasets.load_digits(as_frame=True).frame,
    }
    try:
        import statsmodels.datasets as smd

        tables["fair"] = smd.fair.load_pandas().data
        tables["randhie"] = smd.randhie.load_pandas().data
    except ImportError:
        pass
    rows = []
    for name, frame in tables.items():
        label = "target" if "target" in frame.columns else None
        for n in sizes_:
            runs = warnings = errors = 0
            worst_ks = 0.0
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                pair = []
                for _ in range(2):
                    sample = frame.iloc[rng.integers(0, len(frame), n)].reset_index(drop=True)
                    t = pa.Table.from_pandas(sample, preserve_index=False)
                    t = t.append_column(ROW_ID, pa.array(np.arange(n, dtype=np.int64)))
                    p = Profile(t.schema)
                    for batch in t.to_batches(max_chunksize=262_144):
                        p.update(batch)
                    pair.append(p)
                result = compare(summarize(pair[0]), pair[1], label=label)
                runs += len(result.compared)
                warnings += sum(f.severity == "warning" for f in result.findings)
                errors += sum(f.severity == "error" for f in result.findings)
                ks = [m.value for m in result.measurements if m.metric == "ks"]
                worst_ks = max([worst_ks, *ks])
            rows.append(
                {"table": name, "rows": n, "seeds": seeds, "column_runs": runs,
                 "warnings": warnings, "errors": errors, "max_ks": worst_ks}
            )  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return {"tables": rows}


# -- (d) Evidently -----------------------------------------------------------------------------
_EVIDENTLY = r"""
import sys, time, json
import pandas as pd
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
try:
    from evidently import Report
    from evidently.presets import DataDriftPreset
except ImportError:  # evidently < 0.7
    from evidently.report import Report
    from evidently.metric_preset import DataDriftPreset
start = time.perf_counter()
report = Report([DataDriftPreset()])
result = report.run(reference_data=ref, current_data=cur)
elapsed = time.perf_counter() - start
import evidently
print(json.dumps({"evidently_s": elapsed, "version": evidently.__version__}))
"""


def evidently(python: str, files: list[str], timeout: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(_EVIDENTLY)
    start = time.perf_counter()
    try:
        out = subprocess.run(
            [python, fh.name, *files], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"evidently_s": None, "note": f"over {timeout} s"}
    finally:
        os.unlink(fh.name)
    if out.returncode != 0:
        return {"evidently_s": None, "note": out.stderr.strip().splitlines()[-1:]}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wide", type=int, default=1_000, help="columns of the wide size test")
    ap.add_argument("--null-rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--evidently", metavar="PYTHON", help="an interpreter with evidently")
    ap.add_argument("--evidently-timeout", type=int, default=900)
    ap.add_argument("--skip", nargs="*", default=[], choices=["cost", "size", "null"])
    ap.add_argument("--quick", action="store_true", help="smoke run: 20k rows")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.rounds, args.wide, args.null_rows, args.seeds = [20_000], 1, 64, [5_000], 1
    results: dict[str, Any] = {"cost": [], "size": [], "null": None}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "cost" not in args.skip:
            for n in args.rows:
                row = cost(n, folder, args.rounds)
                if args.evidently:
                    row["evidently"] = evidently(
                        args.evidently, row["files"], args.evidently_timeout
                    )
                del row["files"]
                results["cost"].append(row)
                print(json.dumps(row), flush=True)
        if "size" not in args.skip:
            for columns in (COLUMNS, args.wide):
                results["size"].append(sizes(columns, folder))
                print(json.dumps(results["size"][-1]), flush=True)
    if "null" not in args.skip:
        results["null"] = null_study(args.null_rows, args.seeds)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
