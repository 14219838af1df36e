"""Ray engine against the local engine on the benchmark file, and Ray's fixed start-up cost.

Every variant runs in a fresh process, the variants are interleaved round by
round (so a noisy moment hits all of them alike), and the medians over rounds
are reported. Times are taken inside the child around the work (imports of
batchguard excluded, ``import ray`` included where it is part of the cost).

Variants:

``local``           ``validate(path, label="label")``, both passes, no outputs
``local_outputs``   the same, writing ``--quarantine`` and ``--clean`` files
``ray``             ``ray.init()`` then ``validate(..., engine="ray")`` twice in one process:
                    ``cold`` = init + first run (what ``validate --engine ray`` costs on
                    one machine: Ray starts, workers import pyarrow and batchguard);
                    ``warm`` = the second run (Ray up, workers warm: a running cluster)
``ray_outputs``     the same, writing quarantine and clean directories
``startup``         ``import ray``, ``ray.init()``, a one-row dataset, ``ray.shutdown()``:
                    the fixed cost, whatever the data

``--check`` (on by default) also compares, once, the JSON reports of the two
engines: findings exactly, per-column statistics exactly but means and
standard deviations within a relative 1e-12.

Usage::

    python benchmarks/bench_ray.py                 # bench_5m.parquet, 3 rounds
    python benchmarks/bench_ray.py --data benchmarks/data/bench_small.parquet --reps 1
    python benchmarks/bench_ray.py --quick         # smoke run: 20k rows, local and ray, 1 round
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h

DEFAULT_DATA = h.DATA_DIR / "bench_5m.parquet"
VARIANTS = ["local", "local_outputs", "ray", "ray_outputs", "startup"]
QUICK_VARIANTS = ["local", "ray"]


# -- child side --------------------------------------------------------------------------------
def _init_ray() -> Any:
    import logging

    import ray
    import ray.data  # noqa: F401 - the startup variant times the first dataset

    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    return ray


def _child(variant: str, path: str, scratch: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if variant == "startup":
        t0 = time.perf_counter()
        ray = _init_ray()
        t1 = time.perf_counter()
        ray.data.range(1).materialize()
        t2 = time.perf_counter()
        ray.shutdown()
        t3 = time.perf_counter()
        return {"init_s": t1 - t0, "first_dataset_s": t2 - t1, "shutdown_s": t3 - t2,
                "seconds": t3 - t0}  # fmt: skip

    import pipeline

    validate = pipeline.validate  # the public function; resolves the lazy import first
    outputs = variant.endswith("_outputs")
    if variant.startswith("local"):
        kw = {"quarantine": f"{scratch}/q.parquet", "clean": f"{scratch}/c.parquet"}
        t0 = time.perf_counter()
        report = validate(path, label="label", **(kw if outputs else {}))
        out["seconds"] = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        _init_ray()
        out["init_s"] = time.perf_counter() - t0
        for run in ("cold", "warm"):
            kw = {"quarantine": f"{scratch}/q-{run}", "clean": f"{scratch}/c-{run}"}
            t1 = time.perf_counter()
            report = validate(path, label="label", engine="ray", **(kw if outputs else {}))
            out[f"{run}_run_s"] = time.perf_counter() - t1
        out["cold_s"] = out["init_s"] + out["cold_run_s"]
        out["seconds"] = out["warm_run_s"]
    out.update(rows=report.rows, rows_quarantined=report.rows_quarantined,
               findings=len(report.findings))  # fmt: skip
    return out


def _check(path: str) -> dict[str, Any]:
    """Compare the two engines' JSON reports on ``path``."""
    import pipeline
    from pipeline.report import render

    _init_ray()
    reports = {e: json.loads(render(pipeline.validate(path, label="label", engine=e), "json"))
               for e in ("local", "ray")}  # fmt: skip
    a, b = reports["ray"], reports["local"]
    worst, where = 0.0, ""
    exact = True
    for name, stats in a["columns"].items():
        for stat, value in stats.items():
            expected = b["columns"][name][stat]
            if stat in ("mean", "std") and value is not None and expected is not None:
                rel = abs(value - expected) / max(abs(expected), 1e-300)
                if rel > worst:
                    worst, where = rel, f"{name}.{stat}: {value!r} vs {expected!r}"
            elif value != expected:
                exact = False
    return {
        "findings_equal": a["findings"] == b["findings"],
        "counts_equal": all(a[k] == b[k] for k in ("rows", "rows_quarantined", "rows_clean")),
        "other_stats_equal": exact,
        "mean_std_max_rel_diff": worst,
        "mean_std_worst": where,
        "mean_std_within_1e-12": worst <= 1e-12,
        "findings": len(a["findings"]),
        "rows_quarantined": a["rows_quarantined"],
    }


# -- parent side -------------------------------------------------------------------------------
def run_child(args: list[str]) -> dict[str, Any]:
    """One variant (or the engine check) in a fresh process, with a scratch directory."""
    with tempfile.TemporaryDirectory(dir=h.DATA_DIR, prefix=".bench_ray.") as scratch:
        return h.run_python([__file__, "--child", *args, scratch]).result()


def bench(path: Path, reps: int, variants: list[str], quiet_wait: float) -> dict[str, Any]:
    results: dict[str, Any] = {"data": str(path), "rows_file_mb": path.stat().st_size / 1e6,
                               "machine": h.machine(), "rounds": []}  # fmt: skip
    for r in range(reps):
        round_: dict[str, Any] = {}
        for variant in variants:
            busy = h.wait_for_quiet(0.25, quiet_wait)
            round_[variant] = {**run_child([variant, str(path)]), "busy_before": busy}
            h.log(f"round {r + 1} {variant}: {json.dumps(round_[variant])}")
        results["rounds"].append(round_)
    return results


#: (label, variant, key) of each row of the table
ROWS = [
    ("local (no outputs)", "local", "seconds"),
    ("local, quarantine + clean files", "local_outputs", "seconds"),
    ("ray cold: init + first run (no outputs)", "ray", "cold_s"),
    ("ray warm: second run (no outputs)", "ray", "warm_run_s"),
    ("ray cold: init + first run, outputs", "ray_outputs", "cold_s"),
    ("ray warm: second run, quarantine + clean dirs", "ray_outputs", "warm_run_s"),
    ("ray.init() alone", "startup", "init_s"),
    ("first one-row dataset after init", "startup", "first_dataset_s"),
    ("ray.shutdown()", "startup", "shutdown_s"),
    ("start-up total (import, init, dataset, shutdown)", "startup", "seconds"),
]


def table(results: dict[str, Any]) -> str:
    rows = []
    for label, variant, key in ROWS:
        values = [r[variant][key] for r in results["rounds"] if key in r.get(variant, {})]
        if values:
            mid = h.median(values)
            span = f"{min(values):.2f}-{max(values):.2f}"
            rows.append([label, "" if math.isnan(mid) else f"{mid:.2f}", span])
    return h.markdown_table(["variant", "time (s)", "min-max (s)"], rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        if argv[1] == "check":
            print(json.dumps(_check(argv[2])))
        else:
            print(json.dumps(_child(argv[1], argv[2], argv[3])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-check", action="store_true")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait, at most, for other processes to calm down",
    )
    parser.add_argument("--out", type=Path, default=h.DATA_DIR / "results_ray.json")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: the 20k-row file, local and ray, 1 round"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.reps, args.quiet_wait = h.quick_file(), 1, 0.0
        args.variants = ",".join(QUICK_VARIANTS)
        args.out = h.DATA_DIR / "results_ray_quick.json"
    if not args.data.exists():
        if args.data != DEFAULT_DATA:
            parser.error(f"{args.data} does not exist")
        subprocess.run([sys.executable, str(h.HERE / "make_data.py")], check=True, cwd=h.ROOT)
    h.warm_cache(args.data)
    results = bench(args.data, args.reps, args.variants.split(","), args.quiet_wait)
    if not args.no_check:
        results["check"] = run_child(["check", str(args.data)])
    h.write_json(args.out, results)
    print(f"File: {args.data} ({results['rows_file_mb']:.1f} MB); "
          f"{results['machine']['cpus']} CPUs; medians of {args.reps} rounds, "
          "each variant in a fresh process.\n")  # fmt: skip
    print(table(results))
    if "check" in results:
        print("\nEngines compared:", json.dumps(results["check"]))
    for scratch in h.DATA_DIR.glob(".bench_ray.*"):
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
