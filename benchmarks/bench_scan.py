"""Scan benchmarks: batchguard's full validation against the raw read and its peers.

Every measurement runs in a fresh subprocess, the variants are interleaved
round by round (so a noisy moment hits all of them alike), and ratios are
taken within each round before the median is taken over rounds. Peak RSS is
each child's own ``VmHWM``, read as it exits (see ``_harness.py`` for why not
``ru_maxrss``, which the JSON keeps as ``rusage_maxrss_mb`` for comparison).
CPU times (user, sys) come from ``wait4``.

Variants (all on the same parquet file, page cache warmed first):

``pyarrow_stream``  ``pq.ParquetFile(path, pre_buffer=False).iter_batches(65536)`` consumed
``source_stream``   ``pipeline.Source(path).iter_batches()`` consumed (adds ``_row_id``)
``profile``         ``pipeline.profile(path)``: pass 1 alone (mergeable stats + row sample)
``validate``        ``pipeline.validate(path, label="label")``: both passes, no outputs
``validate_prev``   the same with the previous release's outlier judgement
                    (:data:`PREVIOUS_DEFAULTS`: 5-IQR fences, sentinels and the joint
                    score off), to price the new defaults
``cli``             ``validate PATH --label label --format json -o FILE`` end to end
                    (process wall time, interpreter start-up and imports included)
``pandera``         ``pq.read_table(path).to_pandas()`` then a pandera
                    ``DataFrameSchema`` over the 32 float columns (non-null,
                    finite, ``in_range(-1000, 1000)``), ``validate(lazy=True)``
``polars_lazy``     a hand-written polars lazy scan of the same per-column statistics
                    (:func:`polars_statistics`; exact quantiles, in-memory engine)
``duckdb_summarize`` DuckDB ``SUMMARIZE`` of the file on 2 threads (not in the default
                    set: about a minute per run on 2 cores; add it with ``--variants``)
``baseline``        imports only (numpy, pyarrow, ``pipeline.validate``): the RSS floor

Times of in-process variants are measured inside the child around the work
only (imports excluded); ``cli`` is the whole process. Each run also keeps its
whole process's wall time (``process_wall_s``: start-up and imports included),
and the ratios are given both ways.

Usage::

    python benchmarks/bench_scan.py                       # 5M file, 5 rounds, + 20M RSS check
    python benchmarks/bench_scan.py --data benchmarks/data/bench_small.parquet --big none --reps 3
    python benchmarks/bench_scan.py --quick               # smoke run: 20k rows, 1 round
    python benchmarks/bench_scan.py --big none --reps 7 \
        --variants pyarrow_stream,source_stream,validate,validate_prev,polars_lazy,duckdb_summarize
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h

FLOATS = [f"f{i:02d}" for i in range(32)]

MAIN_VARIANTS = [
    "pyarrow_stream", "source_stream", "profile", "validate", "validate_prev", "cli", "pandera",
    "polars_lazy",
]  # fmt: skip
#: every variant ``--variants`` accepts (besides the imports-only ``baseline``)
VARIANTS = [*MAIN_VARIANTS, "duckdb_summarize"]
#: the options that give the previous release's outlier judgement: 5-IQR fences per
#: column, no sentinels, no joint row score (``validate_prev``)
PREVIOUS_DEFAULTS = {
    "outlier_method": "iqr",
    "severities": {"sentinel": "off", "joint_outlier": "off"},
}
#: the peers that need a library of the ``bench`` extra; left out when it is missing
PEER_MODULES = {"polars_lazy": "polars", "duckdb_summarize": "duckdb"}
#: quantiles the polars peer computes per numeric column (those the profile reports)
QUARTILES = [0.25, 0.5, 0.75]


def polars_statistics(schema: Any) -> list[Any]:
    """Polars expressions for the statistics ``validate`` profiles, per column.

    For every column: rows, nulls and the top value's share of the present values; for
    float columns also NaN, +inf and -inf counts, with the rest taken over the finite
    values; for numeric columns count, min, max, mean, standard deviation and the
    quartiles. Written as a careful user would: each column is filtered and sorted once
    (polars shares the common subexpressions), the quartiles come from that sorted
    column in one call, and a float column's top value from its longest run of equal
    sorted values, which avoids hashing millions of distinct floats (4-8x slower here).
    """
    import polars as pl

    exprs = []
    for name, dtype in schema.items():
        col = pl.col(name)
        exprs += [col.len().alias(f"{name}:rows"), col.null_count().alias(f"{name}:nulls")]
        if dtype.is_float():
            exprs += [
                col.is_nan().sum().alias(f"{name}:nan"),
                (col == float("inf")).sum().alias(f"{name}:posinf"),
                (col == float("-inf")).sum().alias(f"{name}:neginf"),
            ]
            present = col.filter(col.is_finite())
            ordered = present.sort()
            top = ordered.rle().struct.field("len").max()
        else:  # few distinct values (labels, categories): counting them is cheap
            present = col.drop_nulls()
            ordered = present.sort() if dtype.is_numeric() else present
            top = present.unique_counts().max()
        exprs += [
            present.count().alias(f"{name}:count"),
            (top / present.count()).alias(f"{name}:top_share"),
        ]
        if dtype.is_numeric():
            exprs += [
                present.min().alias(f"{name}:min"),
                present.max().alias(f"{name}:max"),
                present.mean().alias(f"{name}:mean"),
                present.std().alias(f"{name}:std"),
                ordered.quantile(QUARTILES, "linear").alias(f"{name}:quartiles"),
            ]
    return exprs


# -- child side: one variant, one process ------------------------------------------------------
def _meta(path: str) -> dict[str, Any]:
    """File facts and library versions, read in a child so the parent stays small."""
    import pyarrow.parquet as pq

    md = pq.ParquetFile(path).metadata
    versions = {}
    for mod in ("numpy", "pyarrow", "pandas", "pandera", "polars", "duckdb"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return {"rows": md.num_rows, "row_groups": md.num_row_groups, "versions": versions}


def _child(variant: str, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if variant == "meta":
        return _meta(path)
    if variant == "baseline":
        import numpy  # noqa: F401
        import pyarrow  # noqa: F401

        import pipeline

        pipeline.validate  # noqa: B018 - resolves the lazy import, as a caller's first use does

        t0 = time.perf_counter()
    elif variant == "pyarrow_stream":
        import pyarrow.parquet as pq

        t0 = time.perf_counter()
        pf = pq.ParquetFile(path, pre_buffer=False, memory_map=False)
        rows = 0
        for batch in pf.iter_batches(batch_size=65_536, use_threads=True):
            rows += batch.num_rows
        out["rows"] = rows
    elif variant == "source_stream":
        import pipeline

        source = pipeline.Source  # the public class; resolves the lazy import first

        t0 = time.perf_counter()
        rows = 0
        for batch in source(path).iter_batches():
            rows += batch.num_rows
        out["rows"] = rows
    elif variant == "profile":
        import pipeline

        profile = pipeline.profile  # the public function; resolves the lazy import first

        t0 = time.perf_counter()
        prof = profile(path)
        out["rows"] = prof.rows
    elif variant == "validate":
        import pipeline

        validate = pipeline.validate  # the public function; resolves the lazy import first

        t0 = time.perf_counter()
        report = validate(path, label="label")
        out["rows"] = report.rows
        out["rows_quarantined"] = report.rows_quarantined
        out["findings"] = len(report.findings)
    elif variant == "validate_prev":
        import pipeline

        validate = pipeline.validate

        t0 = time.perf_counter()
        report = validate(path, label="label", **PREVIOUS_DEFAULTS)
        out["rows"] = report.rows
        out["rows_quarantined"] = report.rows_quarantined
        out["findings"] = len(report.findings)
    elif variant == "polars_lazy":
        import polars as pl

        t0 = time.perf_counter()
        lazy = pl.scan_parquet(path)
        stats = lazy.select(polars_statistics(lazy.collect_schema())).collect(engine="in-memory")
        out["rows"] = int(stats.item(0, "label:rows"))
        out["statistics"] = stats.width
    elif variant == "duckdb_summarize":
        import duckdb

        t0 = time.perf_counter()
        con = duckdb.connect()
        con.execute("SET threads = 2")
        summary = con.execute("SUMMARIZE SELECT * FROM read_parquet(?)", [path]).fetchall()
        out["rows"] = int(summary[0][10])  # the count column
        out["columns"] = len(summary)
    elif variant == "pandera":
        import numpy as np
        import pandera.pandas as pdx
        import pyarrow.parquet as pq
        from pandera.errors import SchemaErrors

        schema = pdx.DataFrameSchema(
            {
                name: pdx.Column(
                    np.float32,
                    nullable=False,
                    checks=[
                        pdx.Check(lambda s: np.isfinite(s), element_wise=False, name="is_finite"),
                        pdx.Check.in_range(-1000.0, 1000.0),
                    ],
                )
                for name in FLOATS
            }
        )
        t0 = time.perf_counter()
        table = pq.read_table(path)
        t1 = time.perf_counter()
        df = table.to_pandas()
        t2 = time.perf_counter()
        try:
            schema.validate(df, lazy=True)
            failures = 0
        except SchemaErrors as exc:
            failures = len(exc.failure_cases)
        t3 = time.perf_counter()
        out.update(
            rows=len(df), failure_cases=failures,
            read_s=t1 - t0, to_pandas_s=t2 - t1, validate_s=t3 - t2,
        )  # fmt: skip
    else:
        raise SystemExit(f"unknown variant {variant}")
    out["seconds"] = time.perf_counter() - t0
    return out


# -- parent side -------------------------------------------------------------------------------
def run_variant(variant: str, path: Path) -> dict[str, Any]:
    """Run one variant in a fresh process; wall time, CPU time and peak RSS of that process."""
    if variant != "cli":
        return h.run_python([__file__, "--child", variant, path]).result()
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        # The report goes to a real file: writing it is part of what the command costs.
        child = h.run_python(
            ["-m", "pipeline", path, "--label", "label", "--format", "json",
             "-o", Path(tmp) / "report.json", "--no-progress", "--quiet"],
            ok=(0, 1),
        )  # fmt: skip
    return {"seconds": child.wall_s, "exit_code": child.returncode, **child.figures()}


def _run(variant: str, path: Path, quiet: tuple[float, float]) -> dict[str, Any]:
    busy = h.wait_for_quiet(*quiet)
    return {**run_variant(variant, path), "busy_before": busy}


def pipeline_digest() -> str:
    """A digest of the scan's modules as they are now (others edit them while benchmarks run).

    The training side (scaler, sampler, loader, guard) is left out: the scan never imports it.
    """
    import hashlib

    training = {"scaler.py", "sampler.py", "loader.py", "guarding.py"}
    digest = hashlib.sha256()
    for f in sorted((h.ROOT / "pipeline").rglob("*.py")):
        if training & set(f.relative_to(h.ROOT / "pipeline").parts):
            continue
        digest.update(str(f.relative_to(h.ROOT)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def _file(path: Path) -> dict[str, Any]:
    meta = run_variant("meta", path)
    size = round(path.stat().st_size / 1e6, 1)
    return {"path": str(path), "rows": meta["rows"], "row_groups": meta["row_groups"], "mb": size}


def installed(variants: list[str]) -> list[str]:
    """The variants whose peer library is installed; the others are named and left out."""
    from importlib.util import find_spec  # finds without importing: the parent stays small

    kept = []
    for v in variants:
        module = PEER_MODULES.get(v)
        if module is not None and find_spec(module) is None:
            h.log(f"{v} left out: {module} is not installed (pip install -e '.[bench]')")
        else:
            kept.append(v)
    return kept


def bench(
    path: Path,
    big: Path | None,
    reps: int,
    big_reps: int,
    variants: list[str],
    quiet: tuple[float, float] = (0.25, 5.0),
) -> dict[str, Any]:
    versions = run_variant("meta", path)["versions"]
    results: dict[str, Any] = {
        "pipeline_digest_start": pipeline_digest(),
        "machine": {**h.machine(), "versions": versions},
        "file": _file(path),
        "reps": reps,
        "runs": {v: [] for v in [*variants, "baseline"]},
    }
    h.warm_cache(path)
    results["runs"]["baseline"].append(run_variant("baseline", path))
    for r in range(reps):
        for v in h.rotated(variants, r):  # a slow moment falls on every variant in turn
            res = _run(v, path, quiet)
            results["runs"][v].append(res)
            busy = res["busy_before"]
            h.log(
                f"round {r + 1}/{reps} {v:15s} {res['seconds']:7.2f} s  "
                f"cpu {res['cpu_s']:6.2f} s  rss {res['peak_rss_mb']:7.0f} MB  "
                f"(others busy {busy if busy is not None else float('nan'):.0%} before)"
            )
    if big is not None:
        results["big_file"] = _file(big)
        h.warm_cache(big)
        results["big_runs"] = {"validate": [], "source_stream": []}
        for r in range(big_reps):
            for v in ("source_stream", "validate"):
                res = _run(v, big, quiet)
                results["big_runs"][v].append(res)
                h.log(
                    f"big {r + 1}/{big_reps} {v:15s} {res['seconds']:7.2f} s  "
                    f"rss {res['peak_rss_mb']:7.0f} MB"
                )
    results["pipeline_digest_end"] = pipeline_digest()
    results["summary"] = summarise(results)
    return results


def _medians(rs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    return {k: h.median(r[k] for r in rs) for k in keys if rs and k in rs[0]}


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    runs = results["runs"]
    summary: dict[str, Any] = {"variants": {}, "ratios": {}, "targets": {}}
    for v, rs in runs.items():
        if not rs:
            continue
        row = _medians(rs, ("seconds", "process_wall_s", "cpu_s", "user_s", "sys_s",
                            "peak_rss_mb", "read_s", "to_pandas_s", "validate_s"))  # fmt: skip
        row["n"] = len(rs)
        row["spread_s"] = [min(r["seconds"] for r in rs), max(r["seconds"] for r in rs)]
        if "rows" in rs[0]:
            row["mrows_per_s"] = rs[0]["rows"] / row["seconds"] / 1e6
        summary["variants"][v] = row

    def per_round(a: str, b: str, key: str = "seconds") -> float | None:
        xs, ys = runs.get(a) or [], runs.get(b) or []
        return h.paired_ratio([x[key] for x in xs], [y[key] for y in ys])

    ratios = summary["ratios"]
    ratios["validate / source_stream (time)"] = per_round("validate", "source_stream")
    ratios["validate / pyarrow_stream (time)"] = per_round("validate", "pyarrow_stream")
    ratios["validate / pyarrow_stream (whole process)"] = per_round(
        "validate", "pyarrow_stream", "process_wall_s"
    )
    ratios["validate / validate_prev (time)"] = per_round("validate", "validate_prev")
    ratios["validate / validate_prev (whole process)"] = per_round(
        "validate", "validate_prev", "process_wall_s"
    )
    ratios["validate / validate_prev (CPU)"] = per_round("validate", "validate_prev", "cpu_s")
    ratios["polars_lazy / validate (time)"] = per_round("polars_lazy", "validate")
    ratios["polars_lazy / validate (whole process)"] = per_round(
        "polars_lazy", "validate", "process_wall_s"
    )
    ratios["polars_lazy / validate (CPU)"] = per_round("polars_lazy", "validate", "cpu_s")
    ratios["duckdb_summarize / validate (time)"] = per_round("duckdb_summarize", "validate")
    ratios["duckdb_summarize / validate (whole process)"] = per_round(
        "duckdb_summarize", "validate", "process_wall_s"
    )
    ratios["profile / source_stream (time)"] = per_round("profile", "source_stream")
    ratios["source_stream / pyarrow_stream (time)"] = per_round("source_stream", "pyarrow_stream")
    ratios["pandera / validate (time)"] = per_round("pandera", "validate")
    ratios["pandera / cli (time, cli incl. start-up)"] = per_round("pandera", "cli")
    ratios["validate / source_stream (CPU)"] = per_round("validate", "source_stream", "cpu_s")
    ratios["pandera / validate (CPU)"] = per_round("pandera", "validate", "cpu_s")
    ratios["validate / pandera (peak RSS)"] = per_round("validate", "pandera", "peak_rss_mb")
    ratios["cli / pandera (peak RSS)"] = per_round("cli", "pandera", "peak_rss_mb")
    if results.get("big_runs"):
        big = {v: _medians(rs, ("seconds", "peak_rss_mb")) for v, rs in results["big_runs"].items()}
        for v, row in big.items():
            one = summary["variants"].get(v)
            if one:
                ratios[f"{v} 4x / 1x (peak RSS)"] = row["peak_rss_mb"] / one["peak_rss_mb"]
                ratios[f"{v} 4x / 1x (time)"] = row["seconds"] / one["seconds"]
        summary["big_variants"] = {
            v: {**row, "n": len(results["big_runs"][v])} for v, row in big.items() if row
        }

    def target(name: str, value: float | None, limit: float, le: bool = True) -> None:
        if value is not None:
            met = value <= limit if le else value >= limit
            summary["targets"][name] = {"value": value, "limit": limit, "met": met}

    target("full scan <= 1.5x read-only stream", ratios["validate / source_stream (time)"], 1.5)
    target("pandera path >= 2x slower than full scan", ratios["pandera / validate (time)"], 2.0,
           le=False)  # fmt: skip
    target("full scan peak RSS <= 25% of pandera's", ratios["validate / pandera (peak RSS)"], 0.25)
    target("peak RSS 4x file <= 1.15x 1x file", ratios.get("validate 4x / 1x (peak RSS)"), 1.15)
    target("new defaults <= 1.15x previous (whole process)",
           ratios["validate / validate_prev (whole process)"], 1.15)  # fmt: skip
    target("polars lazy scan >= 4x slower than validate (whole process)",
           ratios["polars_lazy / validate (whole process)"], 4.0, le=False)  # fmt: skip
    return summary


def table(results: dict[str, Any]) -> str:
    s = results["summary"]
    f = results["file"]
    m = results["machine"]
    rows = []
    for v, row in s["variants"].items():
        timed = v != "baseline"  # imports only: its time says nothing
        rows.append([
            v,
            f"{row['seconds']:.2f}" if timed else "",
            f"{row['spread_s'][0]:.2f}-{row['spread_s'][1]:.2f}" if timed else "",
            f"{row['process_wall_s']:.2f}" if "process_wall_s" in row else "",
            f"{row['mrows_per_s']:.1f}" if "mrows_per_s" in row else "",
            f"{row['user_s']:.2f}+{row['sys_s']:.2f}",
            f"{row['peak_rss_mb']:.0f}",
        ])  # fmt: skip
    lines = [
        f"Machine: {m.get('cpus')} CPUs ({m.get('cpu', '?')}), {m.get('mem_gib', '?')} GiB RAM; "
        f"pipeline at {m.get('git', '?')}, digest {results['pipeline_digest_start']}.",
        f"File: {f['path']} ({f['rows']:,} rows, {f['row_groups']} row groups, {f['mb']} MB); "
        f"medians of {results['reps']} rounds, each variant in a fresh process.",
        "",
        h.markdown_table(
            [
                "variant",
                "time (s)",
                "min-max (s)",
                "process (s)",
                "Mrows/s",
                "CPU user+sys (s)",
                "peak RSS (MB)",
            ],
            rows,
        ),  # fmt: skip
    ]
    if "pandera" in s["variants"]:
        p = s["variants"]["pandera"]
        lines += [
            "",
            f"pandera breakdown (medians): read_table {p['read_s']:.2f} s, "
            f"to_pandas {p['to_pandas_s']:.2f} s, "
            f"schema.validate(lazy=True) {p['validate_s']:.2f} s",
        ]
    if "big_variants" in s:
        b = results["big_file"]
        big_rows = []
        for v, row in s["big_variants"].items():
            one = s["variants"].get(v, {})
            big_rows.append([v, f"{one.get('seconds', float('nan')):.2f}", f"{row['seconds']:.2f}",
                             f"{one.get('peak_rss_mb', float('nan')):.0f}",
                             f"{row['peak_rss_mb']:.0f}"])  # fmt: skip
        header = ["variant", "1x time (s)", "4x time (s)", "1x peak RSS (MB)", "4x peak RSS (MB)"]
        lines += ["", f"4x file: {b['path']} ({b['rows']:,} rows, {b['mb']} MB)", "",
                  h.markdown_table(header, big_rows)]  # fmt: skip
    ratio_rows = [[k, f"{v:.2f}"] for k, v in s["ratios"].items() if v is not None]
    target_rows = [[k, f"{t['value']:.2f}", f"{t['limit']:.2f}", "yes" if t["met"] else "NO"]
                   for k, t in s["targets"].items()]  # fmt: skip
    lines += [
        "",
        h.markdown_table(["ratio (median of per-round ratios)", "value"], ratio_rows),
        "",
        h.markdown_table(["target", "value", "limit", "met"], target_rows, "lrrl"),
    ]
    if results["pipeline_digest_start"] != results["pipeline_digest_end"]:
        lines += [
            "",
            "WARNING: pipeline/ changed while the benchmark ran; rerun for clean figures.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, default=h.DATA_DIR / "bench_5m.parquet")
    ap.add_argument("--big", default=str(h.DATA_DIR / "bench_20m.parquet"),
                    help="4x file for the RSS-scaling check, or 'none'")  # fmt: skip
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--big-reps", type=int, default=3)
    ap.add_argument("--variants", default=",".join(MAIN_VARIANTS))
    ap.add_argument("--json", type=Path, help="write all runs and the summary here")
    ap.add_argument(
        "--quiet-limit",
        type=float,
        default=0.25,
        help="before each run, wait while other processes keep more than this "
        "share of the CPUs busy ...",
    )
    ap.add_argument("--quiet-wait", type=float, default=5.0, help="... for at most this long (s)")
    ap.add_argument("--quick", action="store_true", help="smoke run: the 20k-row file, 1 round")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0
    if args.quick:
        args.data, args.big, args.reps, args.quiet_wait = h.quick_file(), "none", 1, 0.0
    big = None if args.big in ("none", "") else Path(args.big)
    for p in [args.data, big]:
        if p is not None and not p.exists():
            ap.error(f"{p} does not exist; write it with benchmarks/make_data.py")
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variant {unknown[0]}; variants are {', '.join(VARIANTS)}")
    variants = installed(variants)
    quiet = (args.quiet_limit, args.quiet_wait)
    results = bench(args.data, big, args.reps, args.big_reps, variants, quiet)
    if args.json:
        h.write_json(args.json, results)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
