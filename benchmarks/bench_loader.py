"""Training-side throughput: make_loader vs plain torch loaders, stratification, RobustScaler.

Measures (issue 5 of the tracker; results in ``benchmarks/RESULTS-training.md``):

1. **Loader throughput** at batch size 256 on the benchmark file (5M x 32 float32,
   5 imbalanced classes): ``make_loader`` steady-state samples/s (its construction time
   reported separately) against, on the same rows held in memory,
   ``DataLoader(TensorDataset(X, y), batch_size=256, shuffle=True)`` and bare random-gather
   loops (``X[perm[i:i+256]]`` in torch, ``torch.index_select``, ``numpy.take``). Also
   ``make_loader(..., stratify=False)`` (its own cache of the same rows), and the
   DataLoader's own floor (a dataset that returns a ready batch).
2. **Class deviation per batch**: max over batches and classes of
   ``|count - len(batch) * share|`` for make_loader's stratified batches and for a uniform
   shuffle (``torch.randperm``, what ``shuffle=True`` draws).
3. **RobustScaler**: ``pipeline.RobustScaler().fit(parquet, columns=f00..f31)`` (streamed,
   exact) against ``sklearn.preprocessing.RobustScaler().fit(X)`` on the in-memory float32
   matrix; results asserted equal (``np.allclose(..., rtol=1e-6)``). The benchmark file
   carries +-inf faults, which RobustScaler rejects by design, so both fit a copy with inf
   replaced by NaN (``training_<rows>_noinf.parquet``, written once; NaN is ignored by both).

Every figure is the median of ``--rounds`` rounds; within a round all loaders are open at
once and take turns of ``--chunk`` batches (the TensorDataset loader: 1/8 of that), so that
load from other processes falls on all alike; ratios are taken within a round, then the
median. Each loader's first ``--warmup`` batches of a round, and round 0, are not timed.
torch runs with one intra-op thread (``torch.set_num_threads(1)``: every loop here is
single-threaded Python; on 2 cores this keeps torch's pool from competing); pyarrow keeps
its default pool for decoding.

Usage::

    python benchmarks/bench_loader.py            # full: bench_5m.parquet, ~4-5 min
    python benchmarks/bench_loader.py --small    # short run: 200k rows, ~30 s
    python benchmarks/bench_loader.py --quick    # smoke run: 20k rows, a few seconds
    python benchmarks/bench_loader.py --json out.json --skip-scaler
    python benchmarks/bench_loader.py --scaler-only      # ~1.5 min
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _harness as h
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, TensorDataset

DATA = h.DATA_DIR
sys.path.insert(0, str(h.ROOT))

import pipeline  # noqa: E402

FEATURES = [f"f{i:02d}" for i in range(32)]
LABEL = "label"
BATCH = 256
TENSOR_DATASET = "DataLoader(TensorDataset, shuffle=True)"


# -- data ------------------------------------------------------------------------------------------
def bench_file(rows: int) -> Path:
    """The shared benchmark file if it is there, else our own copy from make_data's generator."""
    name = "bench_small.parquet" if rows == 200_000 else f"bench_{rows // 1_000_000}m.parquet"
    shared = DATA / name
    if shared.exists() and pq.ParquetFile(shared).metadata.num_rows == rows:
        return shared
    import make_data  # benchmarks/make_data.py: same rows, same faults

    own = DATA / f"training_{rows}.parquet"
    small = rows == 200_000
    return make_data.ensure(rows, own, make_data.SMALL_ROW_GROUP if small else make_data.ROW_GROUP)


def noinf_copy(path: Path) -> Path:
    """``path`` with +-inf replaced by NaN (same row groups, snappy), written once."""
    rows = pq.ParquetFile(path).metadata.num_rows
    out = DATA / f"training_{rows}_noinf.parquet"
    if out.exists() and out.stat().st_mtime >= path.stat().st_mtime:
        return out
    started = time.perf_counter()
    pf = pq.ParquetFile(path)
    tmp = out.with_name(f".{out.name}.tmp")
    with pq.ParquetWriter(tmp, pf.schema_arrow, compression="snappy") as writer:
        for i in range(pf.num_row_groups):
            table = pf.read_row_group(i)
            cols = []
            for col in table.columns:
                if pa.types.is_floating(col.type):
                    col = pc.if_else(pc.is_inf(col), pa.scalar(float("nan"), col.type), col)
                cols.append(col)
            writer.write_table(
                pa.table(cols, names=table.column_names), row_group_size=table.num_rows
            )
    os.replace(tmp, out)
    h.log(f"wrote {out} in {time.perf_counter() - started:.1f} s")
    return out


# -- loaders ---------------------------------------------------------------------------------------
class _Ready(torch.utils.data.Dataset[Any]):
    """A dataset that returns one prebuilt batch for any index: the DataLoader's own cost."""

    def __init__(self, batch: Any, n: int):
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: Any) -> Any:
        return self.batch


def _floor_loader(loader: DataLoader[Any]) -> DataLoader[Any]:
    """make_loader's DataLoader and sampler around a dataset that does no work."""
    ds: Any = loader.dataset
    ready = _Ready(ds[np.arange(BATCH)], len(ds))
    return DataLoader(ready, sampler=loader.sampler, batch_size=None, collate_fn=loader.collate_fn)


def bare_loop(kind: str, x: Any, y: Any, seed: int) -> Iterator[Any]:
    """Random batches of 256 rows gathered straight from the in-memory arrays."""
    n = len(x)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if kind == "numpy take":
        p = perm.numpy()
        for i in range(0, n, BATCH):
            rows = p[i : i + BATCH]
            yield np.take(x, rows, axis=0), np.take(y, rows)
    elif kind == "torch X[idx]":
        for i in range(0, n, BATCH):
            idx = perm[i : i + BATCH]
            yield x[idx], y[idx]
    else:  # torch.index_select
        for i in range(0, n, BATCH):
            idx = perm[i : i + BATCH]
            yield torch.index_select(x, 0, idx), torch.index_select(y, 0, idx)


def bench_throughput(
    loader: DataLoader[Any],
    unstratified: DataLoader[Any],
    x_np: np.ndarray,
    y_np: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    x_t, y_t = torch.from_numpy(x_np), torch.from_numpy(y_np)
    tds = DataLoader(TensorDataset(x_t, y_t), batch_size=BATCH, shuffle=True)
    candidates: dict[str, Callable[[], Iterator[Any]]] = {
        "make_loader": lambda: iter(loader),
        "make_loader(stratify=False)": lambda: iter(unstratified),
        "DataLoader floor (make_loader's sampler, dataset returns a ready batch)":
            lambda: iter(_floor_loader(loader)),
        TENSOR_DATASET: lambda: iter(tds),
        "bare torch X[idx]": lambda: bare_loop("torch X[idx]", x_t, y_t, 1),
        "bare torch.index_select": lambda: bare_loop("torch.index_select", x_t, y_t, 2),
        "bare numpy take": lambda: bare_loop("numpy take", x_np, y_np, 3),
    }  # fmt: skip
    # TensorDataset is ~30x slower per batch: shorter turns keep the rounds short.
    wall, cpu = h.interleaved(
        candidates,
        rounds=args.rounds,
        warmup=args.warmup,
        batches=args.batches,
        chunk=args.chunk,
        short={TENSOR_DATASET: max(args.chunk // 8, 2)},
        per="row",
        label="throughput",
    )
    ours = "make_loader"
    ratios = {
        "make_loader / TensorDataset": (ours, TENSOR_DATASET),
        "make_loader / bare numpy take": (ours, "bare numpy take"),
        "make_loader / bare torch.index_select": (ours, "bare torch.index_select"),
        "make_loader / bare torch X[idx]": (ours, "bare torch X[idx]"),
        "make_loader(stratify=False) / bare numpy take": (
            "make_loader(stratify=False)",
            "bare numpy take",
        ),
    }
    return {
        "wall_clock": h.summarise(wall, "samples_per_s", ratios),
        "thread_cpu_time": h.summarise(cpu, "samples_per_s", ratios),
        "rows": len(x_np),
        "features": int(x_np.shape[1]),
    }


# -- stratification --------------------------------------------------------------------------------
def _deviation(batch_labels: list[np.ndarray], shares: np.ndarray) -> dict[str, float]:
    worst, worst_per_batch, rare_missing = 0.0, [], 0
    k = len(shares)
    for b in batch_labels:
        counts = np.bincount(b, minlength=k)
        dev = float(np.abs(counts - len(b) * shares).max())
        worst = max(worst, dev)
        worst_per_batch.append(dev)
        rare_missing += int(counts[-1] == 0 and len(b) == BATCH)
    return {
        "max_abs_deviation": worst,
        "mean_of_batch_max": float(np.mean(worst_per_batch)),
        "batches": len(batch_labels),
        "full_batches_without_rarest_class": rare_missing,
    }


def bench_stratification(
    loader: DataLoader[Any], labels: np.ndarray, epochs: int
) -> dict[str, Any]:
    """Class deviation of ``loader``'s batches, and of a uniform shuffle of ``labels``."""
    classes, codes = np.unique(labels, return_inverse=True)
    counts = np.bincount(codes)
    shares = counts / counts.sum()
    remap = {int(c): i for i, c in enumerate(classes.tolist())}
    assert list(remap.values()) == list(range(len(classes)))
    ours, plain = [], []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        ours += [np.searchsorted(classes, b.label.numpy()) for b in loader]
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(epoch)).numpy()
        shuffled = codes[perm]
        plain += [shuffled[i : i + BATCH] for i in range(0, len(shuffled), BATCH)]
    loader.sampler.set_epoch(0)  # type: ignore[attr-defined]
    return {
        "classes": classes.tolist(),
        "shares": shares.tolist(),
        "expected_per_batch": (BATCH * shares).tolist(),
        "epochs": epochs,
        "make_loader": _deviation(ours, shares),
        "shuffle=True": _deviation(plain, shares),
    }


# -- RobustScaler ----------------------------------------------------------------------------------
def bench_scaler(path: Path, rounds: int) -> dict[str, Any]:
    from sklearn.preprocessing import RobustScaler as SkRobustScaler

    started = time.perf_counter()
    table = pq.read_table(path, columns=FEATURES)
    x = np.column_stack([table.column(c).to_numpy() for c in FEATURES]).astype(np.float32)
    del table
    load_s = time.perf_counter() - started
    h.log(f"scaler: in-memory {x.shape} {x.dtype} loaded in {load_s:.1f} s")
    fitted: dict[str, Any] = {}

    def ours() -> None:
        fitted["ours"] = pipeline.RobustScaler().fit(path, columns=FEATURES)

    def sklearn() -> None:
        fitted["sklearn"] = SkRobustScaler().fit(x)

    # round 0: warm-up (page cache, imports), not counted
    wall, cpu = h.time_calls({"ours": ours, "sklearn": sklearn}, rounds, warmup=1, label="scaler")
    mine, sk = fitted["ours"], fitted["sklearn"]
    assert mine.center_ is not None and mine.scale_ is not None
    assert np.allclose(mine.center_, sk.center_, rtol=1e-6, atol=0)
    assert np.allclose(mine.scale_, sk.scale_, rtol=1e-6, atol=0)
    rel = max(
        float(np.max(np.abs(mine.center_ - sk.center_) / np.abs(sk.center_))),
        float(np.max(np.abs(mine.scale_ - sk.scale_) / np.abs(sk.scale_))),
    )
    seconds, cpu_s = h.medians(wall), h.medians(cpu)
    return {
        "rows": int(x.shape[0]),
        "ours_s": seconds["ours"],
        "sklearn_s": seconds["sklearn"],
        "speedup": h.ratio(wall, "sklearn", "ours"),
        "times": {k: [r[k] for r in wall] for k in seconds},
        "cpu_s_all_threads": cpu_s,
        "cpu_times": {k: [r[k] for r in cpu] for k in cpu_s},
        "in_memory_load_s": load_s,
        "max_relative_difference": rel,
        "allclose_rtol_1e-6": True,
    }


# -- main ------------------------------------------------------------------------------------------
def _loaders(path: Path, tmp: Path, results: dict[str, Any]) -> tuple[Any, Any]:
    """make_loader as timed (stratified), and make_loader(stratify=False), each with a cache."""
    started = time.perf_counter()
    kw: dict[str, Any] = {"features": FEATURES, "label": LABEL, "batch_size": BATCH}
    loader = pipeline.make_loader(path, cache_dir=tmp / "stratified", **kw)
    results["construction_s"] = time.perf_counter() - started
    h.log(
        f"make_loader construction: {results['construction_s']:.1f} s "
        f"({h.loader_rows(loader):,} clean rows)"
    )
    unstratified = pipeline.make_loader(path, cache_dir=tmp / "unstratified", stratify=False, **kw)
    return loader, unstratified


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", action="store_true", help="short run on the 200k-row file")
    ap.add_argument("--quick", action="store_true", help="smoke run on the 20k-row file")
    ap.add_argument("--data", type=Path, help="parquet file (default: bench_5m / bench_small)")
    ap.add_argument("--rounds", type=int, help="timed rounds (default 7; --small 3)")
    ap.add_argument("--batches", type=int, help="timed batches per loader and round (default 2000)")
    ap.add_argument("--warmup", type=int, default=50, help="untimed batches per loader and round")
    ap.add_argument("--chunk", type=int, default=100, help="batches per turn (interleaving)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs for the class deviation")
    ap.add_argument("--scaler-rounds", type=int, help="timed scaler rounds (default 5; --small 3)")
    ap.add_argument("--skip-scaler", action="store_true")
    ap.add_argument("--scaler-only", action="store_true", help="only the RobustScaler comparison")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.data = args.data or h.quick_file()
        args.rounds, args.batches, args.scaler_rounds = args.rounds or 1, args.batches or 20, 1
        args.warmup, args.chunk, args.epochs = 5, 10, 1
    args.rounds = args.rounds or (3 if args.small else 7)
    args.batches = args.batches or (300 if args.small else 2000)
    args.scaler_rounds = args.scaler_rounds or (3 if args.small else 5)
    torch.set_num_threads(1)
    path = args.data or bench_file(200_000 if args.small else 5_000_000)
    h.log(
        f"data {path} ({h.parquet_rows(path):,} rows); torch threads "
        f"{torch.get_num_threads()}, pyarrow cpu_count {pa.cpu_count()}, cores {os.cpu_count()}"
    )
    versions = {"torch": torch.__version__, "numpy": np.__version__, "pyarrow": pa.__version__}
    results: dict[str, Any] = {
        "machine": {**h.machine(**versions), "torch_threads": torch.get_num_threads()},
        "data": str(path),
        "settings": vars(args),
    }
    if not args.scaler_only:
        with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
            loader, unstratified = _loaders(path, Path(tmp), results)
            started = time.perf_counter()
            ds: Any = loader.dataset
            rows = ds[np.arange(len(ds))]  # the same rows, in memory, in the cache's order
            x_np, y_np = rows.features.numpy(), rows.label.numpy()
            h.log(
                f"in-memory copy {x_np.shape} {x_np.dtype}: {time.perf_counter() - started:.1f} s"
            )
            results["throughput"] = bench_throughput(loader, unstratified, x_np, y_np, args)
            results["stratification"] = bench_stratification(loader, y_np, args.epochs)
            del loader, unstratified, ds
    if not args.skip_scaler:
        results["scaler"] = bench_scaler(noinf_copy(path), args.scaler_rounds)
    print(json.dumps(h.without(results), indent=1, default=str))
    if args.json:
        h.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
