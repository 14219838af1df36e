"""Profile the full scan (``pipeline.validate(path, label="label")``) with cProfile.

Prints the cumulative time of the pipeline's main stages as a share of the
whole run, then the top functions by own time. cProfile's overhead is small
here (a few hundred thousand calls; the time goes to numpy/pyarrow kernels).
Pyarrow's parquet decoding runs inside the ``Source`` generators, so cProfile
books it on ``source.py:_read_file``; ``_batches`` is pass 2's reading. Since
``Source`` reads ahead on a background thread (``prefetch=2``), cProfile, which
sees only the main thread, shows the decoding (and the pandas import that the
first ``pa.array`` call triggers there) as time waiting in ``_prefetch``.

Stages are found by file and function name; one that matches nothing (the code moved or
was renamed) is marked "not found" in the table rather than shown as 0 s.

Usage::

    python benchmarks/profile_scan.py [--data benchmarks/data/bench_5m.parquet] [--out FILE.prof]
    python benchmarks/profile_scan.py --quick     # smoke run: the 20k-row file, 1 run
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

import _harness as h

sys.path.insert(0, str(h.ROOT))

# (label, file suffix, function name); cumulative time of each, in this order
STAGES = [
    ("validate (total)", "pipeline/validation.py", "validate"),
    ("pass 1: LocalEngine.profile_pass", "pipeline/engines/_local.py", "profile_pass"),
    (
        "  pass 1 reading in this thread (Source._iter_all, decode incl.)",
        "pipeline/source.py",
        "_iter_all",
    ),
    ("  Profile.update", "pipeline/profiling.py", "update@Profile"),
    ("    ColumnProfile.update (34 columns)", "pipeline/profiling.py", "update@ColumnProfile"),
    ("      _update_numeric (sum/min/max/mean/var)", "pipeline/profiling.py", "_update_numeric"),
    ("        np.var", "numpy/_core/fromnumeric.py", "var"),
    ("        np.mean", "numpy/_core/fromnumeric.py", "mean"),
    ("      _update_values (value_counts)", "pipeline/profiling.py", "_update_values"),
    ("    RowSample.update (hash, take, prune)", "pipeline/profiling.py", "update@RowSample"),
    ("      RowSample._prune", "pipeline/profiling.py", "_prune"),
    ("  ChunkNotes.add", "pipeline/engines/_run.py", "add@ChunkNotes"),
    ("column_findings (stats of every column)", "pipeline/checks.py", "column_findings"),
    ("  Profile._compute_stats", "pipeline/profiling.py", "_compute_stats"),
    ("    RowSample.table (sort + take, per call)", "pipeline/profiling.py", "table"),
    ("    Profile.sample_values (quantile input)", "pipeline/profiling.py", "sample_values"),
    ("    Profile._top_and_distinct", "pipeline/profiling.py", "_top_and_distinct"),
    ("outlier_fences", "pipeline/fences.py", "outlier_fences"),
    ("pass 2 reading (LocalEngine._batches, decode incl.)", "pipeline/engines/_local.py",
     "_batches"),
    ("waiting for the read-ahead thread (Source._prefetch, both passes)", "pipeline/source.py",
     "_prefetch"),
    ("pass 2 row rules", "pipeline/engines/_run.py", "failures@RowRules"),
    ("  non_finite_rule", "pipeline/checks.py", "rule@non_finite_rule"),
    ("  outlier_rule", "pipeline/checks.py", "rule@outlier_rule"),
    ("pass 2 RowTally.add", "pipeline/engines/_run.py", "add@RowTally"),
    ("pass 2 OutputSplitter.write", "pipeline/quarantine.py", "write"),
    ("import pandas (first pa.array call; on the read-ahead thread it is not seen)",
     "pandas/__init__.py", "<module>"),
]  # fmt: skip


def _owner(filename: str, line: int) -> str:
    """The class or top-level function that encloses ``line`` of ``filename``."""
    try:
        src = Path(filename).read_text().splitlines()
    except OSError:
        return ""
    for text in reversed(src[: line - 1]):
        if text.startswith(("class ", "def ")):
            return text.split()[1].split("(")[0].rstrip(":")
    return ""


def _find(stats: pstats.Stats, suffix: str, func: str) -> float | None:
    """Cumulative seconds of ``func`` (``name`` or ``name@Owner``, the enclosing class or
    top-level function) in a file ending with ``suffix``; summed over matches, None if none."""
    if "|" in func:
        found = [t for alt in func.split("|") if (t := _find(stats, suffix, alt)) is not None]
        return sum(found) if found else None
    name, _, owner = func.partition("@")
    total, matched = 0.0, False
    raw = stats.stats  # type: ignore[attr-defined]
    for (filename, line, fname), (_cc, _nc, _tt, ct, _callers) in raw.items():
        if not filename.endswith(suffix) or fname != name:
            continue
        if owner and _owner(filename, line) != owner:
            continue
        total += ct
        matched = True
    return total if matched else None


def profile_validate(path: Path, out: Path | None) -> tuple[pstats.Stats, float]:
    import pipeline

    validate = pipeline.validate  # imported outside the profile, as the CLI would

    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    validate(path, label="label")
    prof.disable()
    wall = time.perf_counter() - t
    if out is not None:
        prof.dump_stats(out)
    return pstats.Stats(prof, stream=io.StringIO()), wall


def summary(runs: list[tuple[pstats.Stats, float]]) -> str:
    """Stage table: per stage the median over runs of its seconds and of its share."""
    totals = [_find(st, "pipeline/validation.py", "validate") or wall for st, wall in runs]
    lines = [
        f"cProfile of validate(), {len(runs)} run(s): total under the profiler "
        + ", ".join(f"{t:.2f}" for t in totals)
        + " s; medians below",
        "",
        "| stage (cumulative) | seconds | share of total |",
        "|---|---:|---:|",
    ]
    for label, suffix, func in STAGES:
        found = [_find(st, suffix, func) for st, _ in runs]
        name = label.replace("  ", "&nbsp;&nbsp;")
        if any(s is None for s in found):
            lines.append(f"| {name} | not found: `{func}` in `{suffix}` | |")
            continue
        secs = [s or 0.0 for s in found]
        share = h.median(s / t for s, t in zip(secs, totals, strict=True))
        lines.append(f"| {name} | {h.median(secs):.3f} | {share:.1%} |")
    stats = runs[len(runs) // 2][0]
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(15)
    lines += ["", "Top 15 by own time (the middle run):", "```", buf.getvalue().strip(), "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=h.DATA_DIR / "bench_5m.parquet")
    ap.add_argument("--out", type=Path, help="also dump the raw profile here (snakeviz, pstats)")
    ap.add_argument("--reps", type=int, default=3, help="profiled runs, each in a fresh process")
    ap.add_argument("--quick", action="store_true", help="smoke run: the 20k-row file, 1 run")
    ap.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        profile_validate(args.data, args.one)
        return 0
    if args.quick:
        args.data, args.reps = h.quick_file(), 1
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.reps):
            # A fresh process per run, so one-off costs (imports) count in every run.
            out = Path(tmp) / f"run{i}.prof"
            child = h.run_python([__file__, "--data", args.data, "--one", out])
            runs.append((pstats.Stats(str(out), stream=io.StringIO()), child.wall_s))
            if i == 0 and args.out is not None:
                args.out.write_bytes(out.read_bytes())
    print(summary(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
