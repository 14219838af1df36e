"""Scan benchmarks: batchguard's full validation against the raw read and pandera.

Every measurement runs in a fresh subprocess, the variants are interleaved
round by round (so a noisy moment hits all of them alike), and ratios are
taken within each round before the median is taken over rounds. Peak RSS is
each child's own ``VmHWM`` from ``/proc/self/status``, read as it finishes:
``wait4``/``RUSAGE_CHILDREN``'s ``ru_maxrss`` would not do, as on Linux a child
inherits its parent's high-water mark across fork/exec (it is kept in the JSON
as ``rusage_maxrss_mb`` for comparison). CPU times (user, sys) come from
``wait4``.

Variants (all on the same parquet file, page cache warmed first):

``pyarrow_stream``  ``pq.ParquetFile(path, pre_buffer=False).iter_batches(65536)`` consumed
``source_stream``   ``pipeline.source.Source(path).iter_batches()`` consumed (adds ``_row_id``)
``profile``         ``pipeline.profile(path)``: pass 1 alone (mergeable stats + row sample)
``validate``        ``pipeline.validate(path, label="label")``: both passes, no outputs
``cli``             ``validate PATH --label label --format json -o FILE`` end to end
                    (process wall time, interpreter start-up and imports included)
``pandera``         ``pq.read_table(path).to_pandas()`` then a pandera
                    ``DataFrameSchema`` over the 32 float columns (non-null,
                    finite, ``in_range(-1000, 1000)``), ``validate(lazy=True)``
``baseline``        imports only (numpy, pyarrow, pipeline.validation): the RSS floor

Times of in-process variants are measured inside the child around the work
only (imports excluded); ``cli`` is the whole process.

Usage::

    python benchmarks/bench_scan.py                       # 5M file, 5 rounds, + 20M RSS check
    python benchmarks/bench_scan.py --data benchmarks/data/bench_small.parquet --big none --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA_DIR = HERE / "data"
FLOATS = [f"f{i:02d}" for i in range(32)]

MAIN_VARIANTS = ["pyarrow_stream", "source_stream", "profile", "validate", "cli", "pandera"]


# -- child side: one variant, one process ------------------------------------------------------
def vm_hwm_mb() -> float | None:
    """This process's peak RSS (VmHWM), counted from its exec.

    Not ``ru_maxrss``: on Linux a child's ``ru_maxrss`` (from ``wait4`` or
    ``RUSAGE_CHILDREN``) keeps the high-water mark its parent had when it was
    forked, so a child of a big parent reports at least the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _meta(path: str) -> dict[str, Any]:
    """File facts and library versions, read in a child so the parent stays small."""
    import pyarrow.parquet as pq

    md = pq.ParquetFile(path).metadata
    versions = {}
    for mod in ("numpy", "pyarrow", "pandas", "pandera"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return {"rows": md.num_rows, "row_groups": md.num_row_groups, "versions": versions}


#: the ``validate`` console script, run so that its peak RSS can be read at exit
_CLI = (
    "import atexit, os, sys\n"
    "sys.path.insert(0, {here!r})\n"
    "from bench_scan import vm_hwm_mb\n"
    "atexit.register(lambda: open(os.environ['BENCH_HWM'], 'w').write(str(vm_hwm_mb())))\n"
    "sys.argv = ['validate', *sys.argv[1:]]\n"
    "from pipeline.cli import main\n"
    "sys.exit(main())\n"
)


def _child(variant: str, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if variant == "meta":
        return _meta(path)
    if variant == "baseline":
        import numpy  # noqa: F401
        import pyarrow  # noqa: F401

        import pipeline.validation  # noqa: F401

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
        from pipeline.source import Source

        t0 = time.perf_counter()
        rows = 0
        for batch in Source(path).iter_batches():
            rows += batch.num_rows
        out["rows"] = rows
    elif variant == "profile":
        import pipeline

        profile = pipeline.profile  # the public function; resolves the lazy import first

        t0 = time.perf_counter()
        prof = profile(path)
        out["rows"] = prof.rows
    elif variant == "validate":
        import pipeline.validation as v

        t0 = time.perf_counter()
        report = v.validate(path, label="label")
        out["rows"] = report.rows
        out["rows_quarantined"] = report.rows_quarantined
        out["findings"] = len(report.findings)
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
    out["peak_rss_mb"] = vm_hwm_mb()
    return out


# -- parent side -------------------------------------------------------------------------------
def run_variant(variant: str, path: Path) -> dict[str, Any]:
    """Run one variant in a fresh process; wall time, CPU time and peak RSS of that process."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    hwm = DATA_DIR / f".cli_hwm.{os.getpid()}"
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        if variant == "cli":
            # Not `-o /dev/null`: the report is written atomically (temp file + rename), and
            # as root that rename would replace the /dev/null device with a regular file.
            # The console script's two lines, run by `python -c` so the peak RSS is read at exit.
            report = DATA_DIR / f".cli_report.{os.getpid()}.json"
            env["BENCH_HWM"] = str(hwm)
            cmd = [sys.executable, "-c", _CLI.format(here=str(HERE)), str(path), "--label",
                   "label", "--format", "json", "-o", str(report), "--no-progress",
                   "--quiet"]  # fmt: skip
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant, str(path)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if variant == "cli":
        report.unlink(missing_ok=True)
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"cli failed ({proc.returncode}): {stderr[-2000:]}")
        result: dict[str, Any] = {"seconds": wall, "exit_code": proc.returncode}
        result["peak_rss_mb"] = float(hwm.read_text())
        hwm.unlink()
    else:
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} failed ({proc.returncode}): {stderr[-2000:]}")
        result = json.loads(stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    result["user_s"] = usage.ru_utime
    result["sys_s"] = usage.ru_stime
    # For reference only: includes the parent's high-water mark (see vm_hwm_mb).
    result["rusage_maxrss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    return result


def _cpu_times() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields), idle


def busy_fraction(seconds: float = 0.5) -> float | None:
    """Share of all CPUs busy over ``seconds`` (other processes: nothing of ours runs now)."""
    try:
        total0, idle0 = _cpu_times()
        time.sleep(seconds)
        total1, idle1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    dt = total1 - total0
    return None if dt <= 0 else 1.0 - (idle1 - idle0) / dt


def wait_for_quiet(limit: float, max_wait: float) -> float | None:
    """Wait (up to ``max_wait`` s) until other processes use under ``limit`` of the CPUs."""
    deadline = time.monotonic() + max_wait
    busy = busy_fraction()
    while busy is not None and busy > limit and time.monotonic() < deadline:
        time.sleep(1.0)
        busy = busy_fraction()
    return busy


def warm_cache(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(4 << 20):  # small reads: the parent stays small (see vm_hwm_mb)
            pass


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pipeline_digest() -> str:
    """A digest of the scan's modules as they are now (others edit them while benchmarks run).

    The training side (scaler, sampler, loader, guard) is left out: the scan never imports it.
    """
    import hashlib

    training = {"scaler.py", "sampler.py", "loader.py", "guard.py", "engines"}
    h = hashlib.sha256()
    for f in sorted((ROOT / "pipeline").rglob("*.py")):
        if training & set(f.relative_to(ROOT / "pipeline").parts):
            continue
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "pipeline"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        info["git"] = head + (" (pipeline/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def bench(
    path: Path,
    big: Path | None,
    reps: int,
    big_reps: int,
    variants: list[str],
    log: Any,
    quiet: tuple[float, float] = (0.25, 5.0),
) -> dict[str, Any]:
    meta = run_variant("meta", path)
    results: dict[str, Any] = {
        "pipeline_digest_start": pipeline_digest(),
        "machine": {**machine(), "versions": meta["versions"]},
        "file": {
            "path": str(path),
            "rows": meta["rows"],
            "row_groups": meta["row_groups"],
            "mb": round(path.stat().st_size / 1e6, 1),
        },  # fmt: skip
        "reps": reps,
        "runs": {v: [] for v in [*variants, "baseline"]},
    }
    warm_cache(path)
    results["runs"]["baseline"].append(run_variant("baseline", path))
    for r in range(reps):
        for v in variants:
            busy = wait_for_quiet(*quiet)
            res = run_variant(v, path)
            res["busy_before"] = busy
            results["runs"][v].append(res)
            print(
                f"round {r + 1}/{reps} {v:15s} {res['seconds']:7.2f} s  "
                f"cpu {res['cpu_s']:6.2f} s  rss {res['peak_rss_mb']:7.0f} MB  "
                f"(others busy {busy if busy is not None else float('nan'):.0%} before)",
                file=log,
                flush=True,
            )
    if big is not None:
        bmd = run_variant("meta", big)
        results["big_file"] = {"path": str(big), "rows": bmd["rows"],
                               "row_groups": bmd["row_groups"],
                               "mb": round(big.stat().st_size / 1e6, 1)}  # fmt: skip
        warm_cache(big)
        results["big_runs"] = {"validate": [], "source_stream": []}
        for r in range(big_reps):
            for v in ("source_stream", "validate"):
                busy = wait_for_quiet(*quiet)
                res = run_variant(v, big)
                res["busy_before"] = busy
                results["big_runs"][v].append(res)
                print(
                    f"big {r + 1}/{big_reps} {v:15s} {res['seconds']:7.2f} s  "
                    f"rss {res['peak_rss_mb']:7.0f} MB",
                    file=log,
                    flush=True,
                )
    results["pipeline_digest_end"] = pipeline_digest()
    results["summary"] = summarise(results)
    return results


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    runs = results["runs"]
    summary: dict[str, Any] = {"variants": {}, "ratios": {}, "targets": {}}
    for v, rs in runs.items():
        if not rs:
            continue
        row = {
            "seconds": _median([r["seconds"] for r in rs]),
            "process_wall_s": _median([r["process_wall_s"] for r in rs]),
            "cpu_s": _median([r["cpu_s"] for r in rs]),
            "user_s": _median([r["user_s"] for r in rs]),
            "sys_s": _median([r["sys_s"] for r in rs]),
            "peak_rss_mb": _median([r["peak_rss_mb"] for r in rs]),
            "n": len(rs),
            "spread_s": [min(r["seconds"] for r in rs), max(r["seconds"] for r in rs)],
        }
        for extra in ("read_s", "to_pandas_s", "validate_s"):
            if extra in rs[0]:
                row[extra] = _median([r[extra] for r in rs])
        if "rows" in rs[0]:
            row["mrows_per_s"] = rs[0]["rows"] / row["seconds"] / 1e6
        summary["variants"][v] = row

    def per_round(a: str, b: str, key: str = "seconds") -> float | None:
        if not runs.get(a) or not runs.get(b):
            return None
        return _median([x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=False)])

    ratios = summary["ratios"]
    ratios["validate / source_stream (time)"] = per_round("validate", "source_stream")
    ratios["validate / pyarrow_stream (time)"] = per_round("validate", "pyarrow_stream")
    ratios["profile / source_stream (time)"] = per_round("profile", "source_stream")
    ratios["source_stream / pyarrow_stream (time)"] = per_round("source_stream", "pyarrow_stream")
    ratios["pandera / validate (time)"] = per_round("pandera", "validate")
    ratios["pandera / cli (time, cli incl. start-up)"] = per_round("pandera", "cli")
    ratios["validate / source_stream (CPU)"] = per_round("validate", "source_stream", "cpu_s")
    ratios["pandera / validate (CPU)"] = per_round("pandera", "validate", "cpu_s")
    ratios["validate / pandera (peak RSS)"] = per_round("validate", "pandera", "peak_rss_mb")
    ratios["cli / pandera (peak RSS)"] = per_round("cli", "pandera", "peak_rss_mb")
    if results.get("big_runs"):
        big, small = results["big_runs"], runs
        for v in ("validate", "source_stream"):
            if big.get(v) and small.get(v):
                ratios[f"{v} 4x / 1x (peak RSS)"] = _median(
                    [r["peak_rss_mb"] for r in big[v]]
                ) / _median([r["peak_rss_mb"] for r in small[v]])
                ratios[f"{v} 4x / 1x (time)"] = _median([r["seconds"] for r in big[v]]) / _median(
                    [r["seconds"] for r in small[v]]
                )
        summary["big_variants"] = {
            v: {"seconds": _median([r["seconds"] for r in rs]),
                "peak_rss_mb": _median([r["peak_rss_mb"] for r in rs]), "n": len(rs)}
            for v, rs in big.items() if rs
        }  # fmt: skip

    def target(name: str, value: float | None, limit: float, le: bool = True) -> None:
        if value is None:
            return
        summary["targets"][name] = {
            "value": value,
            "limit": limit,
            "met": value <= limit if le else value >= limit,
        }

    target("full scan <= 1.5x read-only stream", ratios["validate / source_stream (time)"], 1.5)
    target("pandera path >= 2x slower than full scan", ratios["pandera / validate (time)"], 2.0,
           le=False)  # fmt: skip
    target("full scan peak RSS <= 25% of pandera's", ratios["validate / pandera (peak RSS)"], 0.25)
    target("peak RSS 4x file <= 1.15x 1x file", ratios.get("validate 4x / 1x (peak RSS)"), 1.15)
    return summary


def table(results: dict[str, Any]) -> str:
    s = results["summary"]
    f = results["file"]
    m = results["machine"]
    lines = [
        f"Machine: {m.get('cpus')} CPUs ({m.get('cpu', '?')}), {m.get('mem_gib', '?')} GiB RAM; "
        f"pipeline at {m.get('git', '?')}, digest {results['pipeline_digest_start']}.",
        f"File: {f['path']} ({f['rows']:,} rows, {f['row_groups']} row groups, {f['mb']} MB); "
        f"medians of {results['reps']} rounds, each variant in a fresh process.",
        "",
        "| variant | time (s) | min-max (s) | Mrows/s | CPU user+sys (s) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for v, row in s["variants"].items():
        mrows = f"{row['mrows_per_s']:.1f}" if "mrows_per_s" in row else ""
        secs = spread = ""
        if v != "baseline":
            secs = f"{row['seconds']:.2f}"
            spread = f"{row['spread_s'][0]:.2f}-{row['spread_s'][1]:.2f}"
        lines.append(
            f"| {v} | {secs} | {spread} | {mrows} | {row['user_s']:.2f}+{row['sys_s']:.2f} "
            f"| {row['peak_rss_mb']:.0f} |"
        )
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
        lines += ["", f"4x file: {b['path']} ({b['rows']:,} rows, {b['mb']} MB)", "",
                  "| variant | 1x time (s) | 4x time (s) | 1x peak RSS (MB) | 4x peak RSS (MB) |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for v, row in s["big_variants"].items():
            one = s["variants"].get(v, {})
            lines.append(
                f"| {v} | {one.get('seconds', float('nan')):.2f} | {row['seconds']:.2f} | "
                f"{one.get('peak_rss_mb', float('nan')):.0f} | {row['peak_rss_mb']:.0f} |"
            )
    lines += ["", "| ratio (median of per-round ratios) | value |", "|---|---:|"]
    for name, value in s["ratios"].items():
        if value is not None:
            lines.append(f"| {name} | {value:.2f} |")
    lines += ["", "| target | value | limit | met |", "|---|---:|---:|---|"]
    for name, t in s["targets"].items():
        lines.append(
            f"| {name} | {t['value']:.2f} | {t['limit']:.2f} | {'yes' if t['met'] else 'NO'} |"
        )
    if results["pipeline_digest_start"] != results["pipeline_digest_end"]:
        lines += [
            "",
            "WARNING: pipeline/ changed while the benchmark ran; rerun for clean figures.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, default=DATA_DIR / "bench_5m.parquet")
    ap.add_argument("--big", default=str(DATA_DIR / "bench_20m.parquet"),
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
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0
    big = None if args.big in ("none", "") else Path(args.big)
    for p in [args.data, big]:
        if p is not None and not p.exists():
            ap.error(f"{p} does not exist; write it with benchmarks/make_data.py")
    variants = [v for v in args.variants.split(",") if v]
    results = bench(
        args.data,
        big,
        args.reps,
        args.big_reps,
        variants,
        sys.stderr,
        (args.quiet_limit, args.quiet_wait),
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
