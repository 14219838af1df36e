"""Micro-benchmarks behind the speed-up suggestions in RESULTS.md that are still open.

Each measures an alternative to a piece of ``pipeline/`` without changing it: the
alternative is written here and timed against the shipped code's way on the same data,
the calls interleaved, medians of ``--reps``.

Experiments:

``stats``     the stats phase after pass 1; quartiles + top value per column as
              shipped (np.quantile + pc.value_counts) against one np.sort
``values``    first batch of a high-cardinality float column: full
              ``pc.value_counts`` against a prefix test that gives up early
``pandas``    import cost of ``pa.array`` (pyarrow imports pandas on the first call)
``batchsize`` ``validate()`` end to end at batch_size 65,536 / 262,144 / 1,048,576,
              each run a fresh process

Experiments whose ideas have shipped (the fused moments kernel, pass 2 reading only the
columns that can fail, the read-ahead thread, and the prototype that combined them) have
left this file; their figures stay in RESULTS.md, their code in this file's git history.

Usage::

    python benchmarks/micro.py [--data benchmarks/data/bench_5m.parquet] [--only stats,values]
    python benchmarks/micro.py --quick     # smoke run on the 20k-row file
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

import _harness as h
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(h.ROOT))

import pipeline  # noqa: E402
from pipeline.profiling import EXACT_VALUES  # noqa: E402

FLOATS = [f"f{i:02d}" for i in range(32)]


def timed(fns: dict[str, Any], reps: int) -> dict[str, Any]:
    """Median wall and process-CPU milliseconds of each call, the calls interleaved."""
    wall, cpu = h.time_calls(fns, reps)
    return {
        "ms": {k: v * 1e3 for k, v in h.medians(wall).items()},
        "cpu_ms": {k: v * 1e3 for k, v in h.medians(cpu).items()},
    }


def _batches(path: Path, n: int, columns: list[str] | None = None) -> list[pa.RecordBatch]:
    out = []
    for batch in pipeline.Source(path).iter_batches(columns=columns):
        out.append(batch)
        if len(out) == n:
            break
    return out


# -- stats phase -------------------------------------------------------------------------------
def exp_stats(path: Path, reps: int) -> dict[str, Any]:
    """The stats phase after pass 1, and a cheaper way to get quartiles and the top value.

    Shipped: per column ``np.quantile`` (a partition) plus ``pc.value_counts`` over the
    sample for the top value's share (a hash table of ~100k floats). Alternative: one
    ``np.sort`` per column; quartiles by index (numpy's 'linear' rule), top value by the
    longest run of equal neighbours (ties to the smaller value, as the exact path does).
    """
    batches = _batches(path, 24)  # 1.5M rows: the 100k-row sample is full, as on any big file
    prof = pipeline.Profile(batches[0].schema)
    for b in batches:
        prof.update(b)
    prof.sample.table()  # build (and, where memoised, keep) the sorted sample first
    xs = [prof.sample_values(n) for n in FLOATS]
    # One untouched copy per timed call: a profile keeps the stats it has computed.
    fresh = [copy.deepcopy(prof) for _ in range(reps)]

    def all_stats() -> None:
        p = fresh.pop()
        for name in p.columns:
            p.stats(name)

    def shipped_pieces() -> None:
        for x in xs:
            np.quantile(x, [0.25, 0.5, 0.75])
            counts = pc.value_counts(pa.array(x))
            n = counts.field("counts").to_numpy()
            int(np.argmax(n))

    arrs = [pa.array(x) for x in xs]

    def quantile_only() -> None:
        for x in xs:
            np.quantile(x, [0.25, 0.5, 0.75])

    def value_counts_only() -> None:
        for a in arrs:
            pc.value_counts(a)

    def sorted_pieces() -> None:
        for x in xs:
            quartiles_and_top(x)

    for x in xs[:4]:
        q, _top, _share = quartiles_and_top(x)
        assert np.allclose(q, np.quantile(x, [0.25, 0.5, 0.75]), rtol=0, atol=0)

    t = timed(
        {"stats of all 34 columns (shipped)": all_stats,
         "quantile + value_counts, 32 float columns": shipped_pieces,
         "  np.quantile only": quantile_only,
         "  pc.value_counts only": value_counts_only,
         "one sort: quartiles + top run, 32 float columns": sorted_pieces},
        reps,
    )  # fmt: skip
    return {"sample_rows": int(xs[0].size), **t}


def quartiles_and_top(x: np.ndarray) -> tuple[list[float], float, float]:
    s = np.sort(x)
    n = s.size
    q = []
    for p in (0.25, 0.5, 0.75):
        pos = p * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        q.append(float(s[lo] + (s[hi] - s[lo]) * (pos - lo)))
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    runs = np.diff(np.append(starts, n))
    i = int(np.argmax(runs))  # first longest run: the smallest value among ties
    return q, float(s[starts[i]]), float(runs[i] / n)


# -- value counts ------------------------------------------------------------------------------
def exp_values(path: Path, reps: int) -> dict[str, Any]:
    batch = _batches(path, 1, FLOATS)[0]
    cols = [batch.column(c) for c in FLOATS]

    def shipped() -> None:
        for arr in cols:
            present = pc.drop_null(arr)
            present = present.filter(pc.is_finite(present))
            counts = pc.value_counts(present)
            assert len(counts) > EXACT_VALUES

    def prefix() -> None:
        # At most EXACT_VALUES distinct values overall implies at most that many in any prefix.
        for arr in cols:
            head = arr.slice(0, 4 * EXACT_VALUES)
            head = head.filter(pc.is_finite(head))
            if pc.count_distinct(head).as_py() > EXACT_VALUES:
                continue  # overflowed: values = None, no full value_counts
            raise AssertionError("expected overflow")

    t = timed({"shipped": shipped, "prefix test": prefix}, reps)
    return {"columns": len(cols), "rows": batch.num_rows, **t}


# -- pandas import through pa.array ------------------------------------------------------------
_PANDAS = """\
import sys, time, numpy as np, pyarrow as pa
def rss():
    s = open('/proc/self/status').read().split('VmRSS:')[1]
    return int(s.split()[0]) / 1024
r0 = rss(); t = time.perf_counter()
{stmt}
print(time.perf_counter() - t, rss() - r0, 'pandas' in sys.modules)
"""


def exp_pandas(path: Path, reps: int) -> dict[str, Any]:
    stmts = {
        "pa.array(np.arange(5))": "pa.array(np.arange(5))",
        "pa.Array.from_buffers": (
            "pa.Array.from_buffers(pa.int64(),5,[None,pa.py_buffer(np.arange(5))])"
        ),
    }
    out: dict[str, Any] = {}
    for name, stmt in stmts.items():
        runs = []
        for _ in range(reps):
            dt, drss, imported = h.run_python(["-c", _PANDAS.format(stmt=stmt)]).stdout.split()
            runs.append((float(dt), float(drss), imported == "True"))
        out[name] = {
            "ms": h.median(r[0] for r in runs) * 1e3,
            "rss_growth_mb": h.median(r[1] for r in runs),
            "imports_pandas": runs[0][2],
        }
    return out


# -- batch size --------------------------------------------------------------------------------
_VALIDATE = """\
import sys, time, pipeline
validate = pipeline.validate
t = time.perf_counter()
validate(sys.argv[1], label='label', batch_size=int(sys.argv[2]))
print(time.perf_counter() - t)
"""


def exp_batchsize(path: Path, reps: int) -> dict[str, Any]:
    """``validate(path, label="label", batch_size=N)`` end to end, each run a fresh process."""
    sizes = [65_536, 262_144, 1_048_576]
    runs: dict[int, list[tuple[float, float | None]]] = {bs: [] for bs in sizes}
    for _ in range(reps):
        for bs in sizes:
            child = h.run_python(["-c", _VALIDATE, path, bs])
            runs[bs].append((float(child.stdout.split()[-1]), child.peak_rss_mb))
    return {
        str(bs): {"seconds": h.median(r[0] for r in rs),
                  "peak_rss_mb": h.median(r[1] or 0.0 for r in rs)}
        for bs, rs in runs.items()
    }  # fmt: skip


EXPERIMENTS = {
    "stats": exp_stats,
    "values": exp_values,
    "pandas": exp_pandas,
    "batchsize": exp_batchsize,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=h.DATA_DIR / "bench_5m.parquet")
    ap.add_argument("--only", default=",".join(EXPERIMENTS))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke run: the 20k-row file, 1 rep")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.quick:
        args.data, args.reps = h.quick_file(), 1
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    results = {}
    for name in args.only.split(","):
        results[name] = EXPERIMENTS[name](args.data, args.reps)
        print(f"== {name}\n{json.dumps(results[name], indent=1, default=float)}", flush=True)
    if args.json:
        h.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
