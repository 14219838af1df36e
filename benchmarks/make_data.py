"""Write the benchmark dataset deterministically, one row group at a time.

Default: ``benchmarks/data/bench_5m.parquet``: 5,000,000 rows of

- ``f00`` .. ``f31``: float32 features. f00-f27 are normal with varied
  location/scale; f28, f29 Student-t (3 dof), f30 log-normal, f31 Laplace
  (heavy-tailed, so the outlier rule has natural work in every row group);
- ``label``: int64, 5 classes with shares 50/25/15/7/3 %;
- ``city``: string, 20 categories (Zipf-like shares);

snappy-compressed with pyarrow's default encodings and row groups of
1,048,576 rows (pyarrow's default): ~735 MB, like the 749 MB file behind
DESIGN.md's reference figures. Injected faults, at positions drawn once from
the seed over the whole file: 100 NaN, 20 inf (10 +inf, 10 -inf) and 50 gross
outliers (+-1e6 or the -999 sentinel), spread across the float columns. The exact positions go to
``<file>.faults.json``.

Every row group is generated from its own seed ``(seed, group index)``, so a
file with more rows starts with the same rows, and generation holds one row
group in memory at a time (the 20M-row file is written in bounded memory).

Usage::

    python benchmarks/make_data.py                 # 5M rows  -> bench_5m.parquet
    python benchmarks/make_data.py --rows 20000000 # 20M rows -> bench_20m.parquet
    python benchmarks/make_data.py --small         # 200k rows (65,536-row groups) -> bench_small
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATA_DIR = Path(__file__).resolve().parent / "data"
ROW_GROUP = 1_048_576
#: row groups of the --small smoke files, so that they too have several chunks
SMALL_ROW_GROUP = 65_536
N_FLOAT = 32
FLOATS = [f"f{i:02d}" for i in range(N_FLOAT)]
CLASS_SHARES = [0.50, 0.25, 0.15, 0.07, 0.03]
CITIES = [
    "Amsterdam", "Berlin", "Chicago", "Delhi", "Edinburgh", "Frankfurt", "Geneva",
    "Helsinki", "Istanbul", "Jakarta", "Kyoto", "Lisbon", "Madrid", "Nairobi", "Oslo",
    "Paris", "Quito", "Rome", "Seoul", "Toronto",
]  # fmt: skip
N_NAN, N_INF, N_OUTLIER = 100, 20, 50
SEED = 20240611


def default_path(rows: int) -> Path:
    if rows == 200_000:
        return DATA_DIR / "bench_small.parquet"
    if rows % 1_000_000 == 0:
        return DATA_DIR / f"bench_{rows // 1_000_000}m.parquet"
    return DATA_DIR / f"bench_{rows}.parquet"


def schema() -> pa.Schema:
    return pa.schema(
        [pa.field(n, pa.float32()) for n in FLOATS]
        + [pa.field("label", pa.int64()), pa.field("city", pa.string())]
    )


def _city_probs() -> np.ndarray:
    w = 1.0 / np.arange(1, len(CITIES) + 1) ** 0.8
    return w / w.sum()


def make_group(index: int, start: int, n: int, seed: int) -> dict[str, np.ndarray]:
    """The columns of row group ``index`` (rows ``start .. start+n``), without faults."""
    rng = np.random.default_rng([seed, index])
    cols: dict[str, np.ndarray] = {}
    for i, name in enumerate(FLOATS):
        if i < 28:
            x = rng.standard_normal(n, dtype=np.float32)
            x *= np.float32(0.5 + (i % 7) * 0.75)
            x += np.float32((i - 14) * 3.0)
        elif i in (28, 29):
            x = rng.standard_t(3, n).astype(np.float32)
        elif i == 30:
            x = rng.lognormal(0.0, 1.0, n).astype(np.float32)
        else:
            x = rng.laplace(0.0, 2.0, n).astype(np.float32)
        cols[name] = x
    cols["label"] = rng.choice(len(CLASS_SHARES), n, p=CLASS_SHARES).astype(np.int64)
    cols["city"] = rng.choice(len(CITIES), n, p=_city_probs()).astype(np.int32)
    return cols


def fault_plan(rows: int, seed: int) -> list[tuple[int, str, str, float]]:
    """(row, column, kind, value) for every injected fault, sorted by row."""
    rng = np.random.default_rng([seed, 999_999])
    total = N_NAN + N_INF + N_OUTLIER
    positions = rng.choice(rows, size=min(total, rows), replace=False)
    columns = rng.integers(0, N_FLOAT, size=positions.size)
    plan: list[tuple[int, str, str, float]] = []
    for k, (row, col) in enumerate(zip(positions.tolist(), columns.tolist(), strict=True)):
        if k < N_NAN:
            kind, value = "nan", float("nan")
        elif k < N_NAN + N_INF:
            kind, value = "inf", float("inf") if k % 2 else float("-inf")
        else:
            kind = "outlier"
            value = (1e6, -1e6, -999.0)[k % 3]
        plan.append((row, FLOATS[col], kind, value))
    plan.sort()
    return plan


def write(path: Path, rows: int, *, row_group: int = ROW_GROUP, seed: int = SEED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    plan = fault_plan(rows, seed)
    city_dict = pa.array(CITIES, pa.string())
    tmp = path.with_name(f".{path.name}.tmp")
    started = time.perf_counter()
    with pq.ParquetWriter(tmp, schema(), compression="snappy") as writer:
        for index, start in enumerate(range(0, rows, row_group)):
            n = min(row_group, rows - start)
            cols = make_group(index, start, n, seed)
            for row, col, _kind, value in plan:
                if start <= row < start + n:
                    cols[col][row - start] = value
            arrays = [pa.array(cols[name]) for name in FLOATS]
            arrays.append(pa.array(cols["label"]))
            arrays.append(city_dict.take(pa.array(cols["city"])))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema()), row_group_size=n)
    os.replace(tmp, path)
    faults = [{"row": r, "column": c, "kind": k, "value": repr(v)} for r, c, k, v in plan]
    path.with_name(path.name + ".faults.json").write_text(
        json.dumps({"rows": rows, "seed": seed, "row_group": row_group, "faults": faults}, indent=1)
    )
    size = path.stat().st_size
    print(
        f"wrote {path} ({rows:,} rows, {size / 1e6:.0f} MB, {time.perf_counter() - started:.1f} s)",
        file=sys.stderr,
    )
    return path


def ensure(rows: int, path: Path | None = None, row_group: int = ROW_GROUP) -> Path:
    """The benchmark file with ``rows`` rows, written first if missing or of another shape."""
    path = path or default_path(rows)
    if path.exists():
        try:
            md = pq.ParquetFile(path).metadata
            if md.num_rows == rows and md.row_group(0).num_rows == min(rows, row_group):
                return path
        except Exception:  # noqa: BLE001 - a broken file is simply rewritten
            pass
    return write(path, rows, row_group=row_group)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000, help="rows to write (default 5M)")
    ap.add_argument(
        "--small", action="store_true", help="200k-row smoke file (row groups of 65,536 rows)"
    )
    ap.add_argument(
        "--out", type=Path, help="output path (default benchmarks/data/bench_<N>.parquet)"
    )
    ap.add_argument("--force", action="store_true", help="rewrite even if the file exists")
    ap.add_argument("--row-group", type=int, help=f"rows per row group (default {ROW_GROUP:,})")
    args = ap.parse_args(argv)
    rows = 200_000 if args.small else args.rows
    row_group = args.row_group or (SMALL_ROW_GROUP if args.small else ROW_GROUP)
    path = args.out or default_path(rows)
    if args.force:
        write(path, rows, row_group=row_group)
    else:
        ensure(rows, path, row_group)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
