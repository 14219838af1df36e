"""Training-side throughput: make_loader vs plain torch loaders, stratification, RobustScaler.

Measures (issue 5 of the tracker; results in ``benchmarks/RESULTS-training.md``):

1. **Loader throughput** at batch size 256 on the benchmark file (5M x 32 float32,
   5 imbalanced classes): ``make_loader`` steady-state samples/s (its construction time
   reported separately) against, on the same rows held in memory,
   ``DataLoader(TensorDataset(X, y), batch_size=256, shuffle=True)`` and bare random-gather
   loops (``X[perm[i:i+256]]`` in torch, ``torch.index_select``, ``numpy.take``). Also, on
   the same cache file: the loader as it was before this change (list-of-ints sampler,
   label and row id gathered separately, ``default_convert``), the ``stratify=False`` path,
   and the DataLoader's own floor (a dataset that returns a ready batch).
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
    python benchmarks/bench_loader.py --small    # smoke run: 200k rows, ~30 s
    python benchmarks/bench_loader.py --json out.json --skip-scaler
    python benchmarks/bench_loader.py --scaler-only      # ~1.5 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pipeline.loader import ArrowMatrixDataset, Batch, _batch_sampler, make_loader  # noqa: E402
from pipeline.sampler import StratifiedBatchSampler  # noqa: E402

FEATURES = [f"f{i:02d}" for i in range(32)]
LABEL = "label"
BATCH = 256


def _rows(loader: Any) -> int:
    return len(loader.dataset)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
    log(f"wrote {out} in {time.perf_counter() - started:.1f} s")
    return out


# -- loaders ---------------------------------------------------------------------------------------
class _PreviousDataset(ArrowMatrixDataset):
    """The dataset as it was before this change: label and row id gathered separately."""

    def _open(self) -> None:
        super()._open()
        self._labels_c = None if self.labels is None else np.ascontiguousarray(self.labels)
        self._ids_c = np.ascontiguousarray(self.row_ids)

    def __getitem__(self, indices: Any) -> Batch:
        idx = np.asarray(indices, dtype=np.int64)
        x = np.take(self._chunks[0], idx, axis=0)
        y = None if self._labels_c is None else torch.from_numpy(np.take(self._labels_c, idx))
        return Batch(torch.from_numpy(x), y, torch.from_numpy(np.take(self._ids_c, idx)))


def _previous_loader(ds: ArrowMatrixDataset) -> DataLoader[Any]:
    """make_loader's loop before this change: list-of-ints stratified sampler, three
    separate gathers, ``default_convert``; on the same cache file."""
    assert ds.labels is not None
    sampler = StratifiedBatchSampler(ds.labels, BATCH, seed=0)
    return DataLoader(_PreviousDataset(ds.path), sampler=sampler, batch_size=None)


def _unstratified_loader(ds: ArrowMatrixDataset, collate: Any) -> DataLoader[Any]:
    """make_loader(..., stratify=False) on the same cache (BatchSampler(RandomSampler))."""
    sampler = _batch_sampler(ds, BATCH, LABEL, False, True, False, 0, None, None, None, True)
    return DataLoader(ds, sampler=sampler, batch_size=None, collate_fn=collate)


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
    ds: ArrowMatrixDataset = loader.dataset  # type: ignore[assignment]
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


def time_interleaved(
    candidates: dict[str, Callable[[], Iterator[Any]]],
    warmup: int,
    batches: int,
    chunk: int,
    slow: dict[str, int],
) -> tuple[dict[str, float], dict[str, float]]:
    """Samples/s of each loader over ``batches`` batches, timed in chunks taken in turns.

    Every loader's iterator stays open; they take turns of ``chunk`` batches (``slow``: fewer
    for the slow ones), so that a burst of load from other processes on this shared machine
    falls on all of them alike. ``warmup`` untimed batches first. Returns samples/s by wall
    clock, and by this thread's CPU time (``time.thread_time``: the loop is single-threaded,
    and CPU time leaves out the time other processes held the cores).
    """
    its = {name: make() for name, make in candidates.items()}
    for it in its.values():
        for _ in range(warmup):
            next(it)
    wall = dict.fromkeys(its, 0.0)
    cpu = dict.fromkeys(its, 0.0)
    rows = dict.fromkeys(its, 0)
    names = list(its)
    for turn in range(max(batches // chunk, 1)):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            it, count, n = its[name], slow.get(name, chunk), 0
            started, started_cpu = time.perf_counter(), time.thread_time()
            for _ in range(count):
                n += len(next(it)[0])
            cpu[name] += time.thread_time() - started_cpu
            wall[name] += time.perf_counter() - started
            rows[name] += n
    return (
        {name: rows[name] / wall[name] for name in names},
        {name: rows[name] / cpu[name] for name in names},
    )


def bench_throughput(loader: DataLoader[Any], args: argparse.Namespace) -> dict[str, Any]:
    ds: ArrowMatrixDataset = loader.dataset  # type: ignore[assignment]
    assert ds.labels is not None
    started = time.perf_counter()
    x_np = np.array(ds._chunks[0])  # the same rows, in memory
    y_np = np.ascontiguousarray(ds.labels)
    x_t, y_t = torch.from_numpy(x_np), torch.from_numpy(y_np)
    log(f"in-memory copy {x_np.shape} {x_np.dtype}: {time.perf_counter() - started:.1f} s")
    tds = DataLoader(TensorDataset(x_t, y_t), batch_size=BATCH, shuffle=True)
    candidates: dict[str, Callable[[], Iterator[Any]]] = {
        "make_loader": lambda: iter(loader),
        "make_loader, previous implementation":
            lambda: iter(_previous_loader(ds)),
        "make_loader(stratify=False)": lambda: iter(_unstratified_loader(ds, loader.collate_fn)),
        "DataLoader floor (make_loader's sampler, dataset returns a ready batch)":
            lambda: iter(_floor_loader(loader)),
        "DataLoader(TensorDataset, shuffle=True)": lambda: iter(tds),
        "bare torch X[idx]": lambda: bare_loop("torch X[idx]", x_t, y_t, 1),
        "bare torch.index_select": lambda: bare_loop("torch.index_select", x_t, y_t, 2),
        "bare numpy take": lambda: bare_loop("numpy take", x_np, y_np, 3),
    }  # fmt: skip
    per_round: list[dict[str, float]] = []
    per_round_cpu: list[dict[str, float]] = []
    # TensorDataset is ~30x slower per batch: shorter turns keep the rounds short.
    slow = {"DataLoader(TensorDataset, shuffle=True)": max(args.chunk // 8, 2)}
    for r in range(args.rounds + 1):  # round 0: warm-up, not counted
        got, got_cpu = time_interleaved(candidates, args.warmup, args.batches, args.chunk, slow)
        if r:
            per_round.append(got)
            per_round_cpu.append(got_cpu)
        log(
            f"round {r}{' (warm-up)' if not r else ''}: "
            + ", ".join(f"{k.split(' (')[0]} {v / 1e6:.2f}M/s" for k, v in got.items())
        )
    return {
        "wall_clock": _summarise(per_round),
        "thread_cpu_time": _summarise(per_round_cpu),
        "rows": len(ds),
        "features": int(x_np.shape[1]),
    }


def _summarise(per_round: list[dict[str, float]]) -> dict[str, Any]:
    med = {k: statistics.median(d[k] for d in per_round) for k in per_round[0]}

    def ratio(a: str, b: str) -> float:
        return statistics.median(d[a] / d[b] for d in per_round)

    ours = "make_loader"
    ratios = {
        "make_loader / TensorDataset": ratio(ours, "DataLoader(TensorDataset, shuffle=True)"),
        "make_loader / bare numpy take": ratio(ours, "bare numpy take"),
        "make_loader / bare torch.index_select": ratio(ours, "bare torch.index_select"),
        "make_loader / bare torch X[idx]": ratio(ours, "bare torch X[idx]"),
        "make_loader / previous implementation": ratio(
            ours, "make_loader, previous implementation"
        ),
        "make_loader(stratify=False) / bare numpy take": ratio(
            "make_loader(stratify=False)", "bare numpy take"
        ),
    }
    return {"samples_per_s": med, "ratios": ratios, "rounds": per_round}


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


def bench_stratification(loader: DataLoader[Any], epochs: int) -> dict[str, Any]:
    ds: ArrowMatrixDataset = loader.dataset  # type: ignore[assignment]
    assert ds.labels is not None
    labels = np.ascontiguousarray(ds.labels)
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

    from pipeline.scaler import RobustScaler

    started = time.perf_counter()
    table = pq.read_table(path, columns=FEATURES)
    x = np.column_stack([table.column(c).to_numpy() for c in FEATURES]).astype(np.float32)
    del table
    load_s = time.perf_counter() - started
    log(f"scaler: in-memory {x.shape} {x.dtype} loaded in {load_s:.1f} s")
    times: dict[str, list[float]] = {"ours": [], "sklearn": []}
    cpu: dict[str, list[float]] = {"ours": [], "sklearn": []}
    ours = sk = None
    for r in range(rounds + 1):  # round 0: warm-up (page cache, imports), not counted
        for name in ("ours", "sklearn") if r % 2 else ("sklearn", "ours"):
            t0, c0 = time.perf_counter(), time.process_time()
            if name == "ours":
                ours = RobustScaler().fit(path, columns=FEATURES)
            else:
                sk = SkRobustScaler().fit(x)
            took, took_cpu = time.perf_counter() - t0, time.process_time() - c0
            if r:
                times[name].append(took)
                cpu[name].append(took_cpu)
            log(f"scaler round {r}: {name} {took:.2f} s (cpu, all threads: {took_cpu:.2f} s)")
    assert ours is not None and sk is not None
    assert ours.center_ is not None and ours.scale_ is not None
    assert np.allclose(ours.center_, sk.center_, rtol=1e-6, atol=0)
    assert np.allclose(ours.scale_, sk.scale_, rtol=1e-6, atol=0)
    rel = max(
        float(np.max(np.abs(ours.center_ - sk.center_) / np.abs(sk.center_))),
        float(np.max(np.abs(ours.scale_ - sk.scale_) / np.abs(sk.scale_))),
    )
    ratios = [s / o for s, o in zip(times["sklearn"], times["ours"], strict=True)]
    return {
        "rows": int(x.shape[0]),
        "ours_s": statistics.median(times["ours"]),
        "sklearn_s": statistics.median(times["sklearn"]),
        "speedup": statistics.median(ratios),
        "times": times,
        "cpu_s_all_threads": {k: statistics.median(v) for k, v in cpu.items()},
        "cpu_times": cpu,
        "in_memory_load_s": load_s,
        "max_relative_difference": rel,
        "allclose_rtol_1e-6": True,
    }


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", action="store_true", help="smoke run on the 200k-row file")
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
    args.rounds = args.rounds or (3 if args.small else 7)
    args.batches = args.batches or (300 if args.small else 2000)
    args.scaler_rounds = args.scaler_rounds or (3 if args.small else 5)
    torch.set_num_threads(1)
    path = args.data or bench_file(200_000 if args.small else 5_000_000)
    log(
        f"data {path} ({pq.ParquetFile(path).metadata.num_rows:,} rows); torch threads "
        f"{torch.get_num_threads()}, pyarrow cpu_count {pa.cpu_count()}, cores {os.cpu_count()}"
    )
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pyarrow": pa.__version__,
            "cores": os.cpu_count(),
            "torch_threads": 1,
        },
        "data": str(path),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    if not args.scaler_only:
        with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
            started = time.perf_counter()
            loader = make_loader(
                path, features=FEATURES, label=LABEL, batch_size=BATCH, cache_dir=tmp
            )
            build_s = time.perf_counter() - started
            log(f"make_loader construction: {build_s:.1f} s ({_rows(loader):,} clean rows)")
            results["construction_s"] = build_s
            results["throughput"] = bench_throughput(loader, args)
            results["stratification"] = bench_stratification(loader, args.epochs)
            del loader
    if not args.skip_scaler:
        results["scaler"] = bench_scaler(noinf_copy(path), args.scaler_rounds)
    print(json.dumps(_summary(results), indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in results.items() if k != "throughput"}
    if "throughput" in results:
        out["throughput"] = {
            k: ({m: w for m, w in v.items() if m != "rounds"} if isinstance(v, dict) else v)
            for k, v in results["throughput"].items()
        }
    return out


if __name__ == "__main__":
    sys.exit(main())
