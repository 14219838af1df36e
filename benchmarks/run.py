"""Run the scan benchmark end to end (``make bench``).

Writes the data files if they are missing (benchmarks/data/, git-ignored), runs
``bench_scan.py`` (5 interleaved rounds on the 5M-row file, 3 on the 20M-row
file for the memory-scaling check; its default variants, the polars peer included
when the ``bench`` extra is installed) and prints the table of medians and ratios.
The raw runs go to ``benchmarks/data/results.json``.

Options::

    --small      short run: 200k / 800k-row files, 2 rounds (about a minute)
    --quick      smoke run: the 20k-row file, 1 round, no 4x file (seconds)
    --profile    also print the cProfile stage table of the full scan
    --micro      also run the micro-benchmarks behind RESULTS.md's suggestions
    --no-big     skip the 4x file (no 20M-row file written, ~3 GB)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_data  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--micro", action="store_true")
    ap.add_argument("--no-big", action="store_true")
    ap.add_argument("--reps", type=int)
    args = ap.parse_args(argv)
    py = sys.executable
    if args.quick:  # every script knows its own smoke run
        scripts = ["bench_scan.py"] + ["profile_scan.py"] * args.profile + ["micro.py"] * args.micro
        for script in scripts:
            code = subprocess.call([py, str(HERE / script), "--quick"])
            if code:
                return code
        return 0

    rows = 200_000 if args.small else 5_000_000
    group = make_data.SMALL_ROW_GROUP if args.small else make_data.ROW_GROUP
    data = make_data.ensure(rows, row_group=group)
    big = None if args.no_big else make_data.ensure(4 * rows, row_group=group)
    reps = args.reps or (2 if args.small else 5)
    cmd = [
        py, str(HERE / "bench_scan.py"), "--data", str(data),
        "--big", str(big) if big else "none", "--reps", str(reps),
        "--big-reps", "1" if args.small else "3",
        "--json", str(HERE / "data" / ("results_small.json" if args.small else "results.json")),
    ]  # fmt: skip
    if args.small:
        cmd += ["--quiet-wait", "2"]
    code = subprocess.call(cmd)
    if code == 0 and args.profile:
        code = subprocess.call([py, str(HERE / "profile_scan.py"), "--data", str(data)])
    if code == 0 and args.micro:
        code = subprocess.call(
            [py, str(HERE / "micro.py"), "--data", str(data), "--reps", "3" if args.small else "5"]
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
