"""What ``guard()`` costs per batch: clean batches, batches that trip, and in a training loop.

Measures (issue 6 of the tracker; results in ``benchmarks/RESULTS-training.md``), at batch
size 256 x 32 float32 with 5 imbalanced classes:

(a) a plain ``DataLoader(TensorDataset(X, y, ids), batch_size=256, shuffle=True)`` loop,
    unguarded vs ``guard(loader, row_id=2)``;
(b) a ``make_loader`` loop, unguarded vs ``guard(loader)`` (which takes the loader's profile:
    all four checks on, ``out_of_range`` against the dataset's fences);
(c) (b) with a small MLP step per batch (32-64-64-5, cross-entropy, SGD: forward, backward,
    step), unguarded vs guarded, and guarded + ``g.observe_loss(loss)`` (the documented loop);
(d) the checker alone on prebuilt batches: a clean batch vs one that trips (NaN rows,
    ``on_bad="drop"``, with and without a quarantine directory);
(e) the clean path op by op (µs per call, warm, alone), next to the previous implementation's.
(b) and (c) also run the irreducible part of the check alone (column min/max to the host)
inside the same loop, to show what a check costs there (cold caches) against (e).

Every ratio is taken within one round (the variants interleaved, their order alternated),
and the median over ``--rounds`` rounds is reported; each variant's first ``--warmup``
batches of a round are not timed, and round 0 is a warm-up. torch runs with one intra-op
thread (``torch.set_num_threads(1)``; 2-core machine, single-threaded loops).

Usage::

    python benchmarks/bench_guard.py             # full: 1M rows, ~3 min
    python benchmarks/bench_guard.py --small     # smoke run: 60k rows, ~20 s
"""

from __future__ import annotations

import argparse
import copy
import gc
import itertools
import json
import logging
import operator
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
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.guarding import BatchChecker, guard  # noqa: E402
from pipeline.loader import make_loader  # noqa: E402

BATCH = 256
WIDTH = 32
SHARES = [0.50, 0.25, 0.15, 0.07, 0.03]


def _rows(loader: Any) -> int:
    return len(loader.dataset)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def clean_data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, WIDTH), dtype=np.float32)
    x *= np.linspace(0.5, 5.0, WIDTH, dtype=np.float32)
    x += np.linspace(-40.0, 40.0, WIDTH, dtype=np.float32)
    y = rng.choice(len(SHARES), rows, p=SHARES).astype(np.int64)
    return x, y, np.arange(rows, dtype=np.int64)


def write_parquet(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    cols = {f"f{j:02d}": pa.array(x[:, j]) for j in range(WIDTH)}
    cols["label"] = pa.array(y)
    pq.write_table(pa.table(cols), path, row_group_size=1 << 20)


# -- timing ---------------------------------------------------------------------------------------
#: a variant: (open an iterator of batches, work done on each batch or None)
Variant = tuple[Callable[[], Iterator[Any]], Callable[[Any], Any] | None]


def interleaved_us(
    variants: dict[str, Variant], warmup: int, batches: int, chunk: int
) -> tuple[dict[str, float], dict[str, float]]:
    """µs per batch of each variant; all iterators open, taking turns of ``chunk`` batches.

    Taking turns makes a burst of load from other processes on this shared 2-core machine
    fall on every variant alike, so the within-round ratio stays meaningful. Returns µs by
    wall clock, and by this thread's CPU time (``time.thread_time``; everything here runs in
    one thread, and CPU time leaves out the time other processes held the cores).
    """
    its = {name: (make(), step) for name, (make, step) in variants.items()}
    for it, step in its.values():
        for _ in range(warmup):
            b = next(it)
            if step is not None:
                step(b)
    wall = dict.fromkeys(its, 0.0)
    cpu = dict.fromkeys(its, 0.0)
    names = list(its)
    turns = max(batches // chunk, 1)
    for turn in range(turns):
        for name in names if turn % 2 else names[::-1]:
            it, step = its[name]
            started, started_cpu = time.perf_counter(), time.thread_time()
            if step is None:
                for _ in range(chunk):
                    next(it)
            else:
                for _ in range(chunk):
                    step(next(it))
            cpu[name] += time.thread_time() - started_cpu
            wall[name] += time.perf_counter() - started
    per = turns * chunk
    return ({k: v / per * 1e6 for k, v in wall.items()}, {k: v / per * 1e6 for k, v in cpu.items()})


def compare(
    variants: dict[str, Variant],
    args: argparse.Namespace,
    label: str,
    batches: int | None = None,
    chunk: int | None = None,
) -> dict[str, Any]:
    """``--rounds`` rounds (+1 warm-up round) of :func:`interleaved_us`; medians and ratios."""
    per_round: list[dict[str, float]] = []
    per_round_cpu: list[dict[str, float]] = []
    for r in range(args.rounds + 1):
        got, got_cpu = interleaved_us(
            variants, args.warmup, batches or args.batches, chunk or args.chunk
        )
        if r:
            per_round.append(got)
            per_round_cpu.append(got_cpu)
        log(
            f"{label} round {r}{' (warm-up)' if not r else ''}: "
            + ", ".join(f"{k} {v:.1f} us" for k, v in got.items())
        )
    return {"wall_clock": _summarise(per_round), "thread_cpu_time": _summarise(per_round_cpu)}


def _summarise(per_round: list[dict[str, float]]) -> dict[str, Any]:
    names = list(per_round[0])
    base = names[0]
    return {
        "us_per_batch": {k: statistics.median(d[k] for d in per_round) for k in names},
        "ratio_to_first": {
            k: statistics.median(d[k] / d[base] for d in per_round) for k in names[1:]
        },
        "overhead_us": {k: statistics.median(d[k] - d[base] for d in per_round) for k in names[1:]},
        "rounds": per_round,
    }


def _min_max_only(batch: Any) -> None:
    """The irreducible part of the clean-path check: column minima and maxima to the host."""
    x = batch[0]
    torch.amin(x, 0).tolist()
    torch.amax(x, 0).tolist()


# -- (c) the training step ------------------------------------------------------------------------
class Trainer:
    def __init__(self, seed: int = 0):
        torch.manual_seed(seed)
        self.model = nn.Sequential(
            nn.Linear(WIDTH, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, len(SHARES)),
        )
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3)
        self.loss_fn = nn.CrossEntropyLoss()

    def step(self, batch: Any) -> torch.Tensor:
        x, y = batch[0], batch[1]
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.opt.step()
        return loss


# -- (d) trip cost --------------------------------------------------------------------------------
def trip_cost(
    x: np.ndarray, y: np.ndarray, ids: np.ndarray, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    n_batches = 200
    rng = np.random.default_rng(1)
    clean, dirty = [], []
    for _ in range(n_batches):
        idx = rng.choice(len(x), BATCH, replace=False)
        xb = torch.from_numpy(x[idx])
        clean.append((xb, torch.from_numpy(y[idx]), torch.from_numpy(ids[idx])))
        xd = xb.clone()
        for r in rng.choice(BATCH, args.nan_rows, replace=False).tolist():
            xd[r, int(rng.integers(WIDTH))] = float("nan")
        dirty.append((xd, clean[-1][1], clean[-1][2]))
    quarantine = tmp / "quarantine"
    rounds = itertools.count()

    def checked(batches: list[Any], to_quarantine: bool = False) -> Callable[[], Iterator[Any]]:
        # The guard flushes its quarantine buffer every 4,096 rows: amortised in the timing.
        def start() -> Iterator[Any]:
            q = quarantine / f"round{next(rounds)}" if to_quarantine else None
            return iter(guard(itertools.cycle(batches), on_bad="drop", row_id=2, quarantine=q))

        return start

    res = compare(
        {
            "clean batch": (checked(clean), None),
            "NaN rows, drop": (checked(dirty), None),
            "NaN rows, drop + quarantine dir": (checked(dirty, True), None),
        },
        args,
        "(d) trip",
        batches=args.trip_batches,
    )
    gc.collect()  # unfinished guards flush their last rows when collected
    res["nan_rows_per_batch"] = args.nan_rows
    res["quarantined_rows_written"] = pq.read_table(quarantine).num_rows
    return res


# -- (e) the clean path, op by op -----------------------------------------------------------------
def op_costs(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """µs per call, each op alone in a tight loop (warm caches: a lower bound for a real loop)."""
    xt = torch.from_numpy(np.ascontiguousarray(x[:BATCH]))
    yt = torch.from_numpy(np.ascontiguousarray(y[:BATCH]))
    lows, highs = torch.amin(xt, 0).tolist(), torch.amax(xt, 0).tolist()
    limits = [-1e300] * WIDTH
    col_min = np.array(lows, dtype=np.float32)
    lo_t, hi_t = torch.aminmax(xt, dim=0)
    checker = BatchChecker(
        bounds=(np.full(WIDTH, -1e9), np.full(WIDTH, 1e9)),
        varied=np.ones(WIDTH, bool),
        num_classes=5,
    )
    batch = (xt, yt, torch.arange(BATCH))
    guarded = iter(guard(itertools.repeat(batch), row_id=2))
    losses = guard([])
    for v in np.random.default_rng(0).normal(1.0, 0.05, 60).tolist():
        losses.observe_loss(v)
    history = np.random.default_rng(0).normal(1.0, 0.05, 50)
    low_loss, high_loss = torch.tensor(0.99), torch.tensor(1.01)  # below / above the median
    ops: dict[str, Callable[[], Any]] = {
        "guard(...) next(): Guard + BatchChecker, clean batch, all checks": lambda: next(guarded),
        "BatchChecker.__call__, clean batch, all checks": lambda: checker(batch, 0),
        "torch.amin(x, 0)": lambda: torch.amin(xt, 0),
        "torch.amax(x, 0)": lambda: torch.amax(xt, 0),
        "Tensor.tolist() (32 values)": lambda: lo_t.tolist(),
        "all(map(operator.ge, ...)) (32 values)": lambda: all(map(operator.ge, lows, limits)),
        "any(map(operator.eq, ...)) (32 values)": lambda: any(map(operator.eq, lows, highs)),
        "labels: y.tolist() + count (256 labels)": lambda: (lambda v: v.count(v[0]))(yt.tolist()),
        "torch op floor: x.sum()": lambda: xt.sum(),
        # (each call's loss taken out of the history again, so that it stays the same)
        "observe_loss(loss), 50 recent losses, loss below their median":
            lambda: (losses.observe_loss(low_loss), losses._losses.pop()),
        "observe_loss(loss), 50 recent losses, loss above their median (MAD computed)":
            lambda: (losses.observe_loss(high_loss), losses._losses.pop()),
        "previous: torch.aminmax(x, dim=0)": lambda: torch.aminmax(xt, dim=0),
        "previous: torch.stack((lo, hi)).cpu().numpy()":
            lambda: torch.stack((lo_t, hi_t)).cpu().numpy(),
        "previous: np.isfinite(col_min).all() (x2 in the old path)":
            lambda: bool(np.isfinite(col_min).all()),
        "previous: torch.aminmax(y) + 2 x .item()":
            lambda: [v.item() for v in torch.aminmax(yt)],
        "previous observe_loss: 2 x np.median over 50 losses":
            lambda: np.median(np.abs(history - np.median(history))),
    }  # fmt: skip
    out = {}
    for name, f in ops.items():
        samples = []
        for _ in range(7):
            started = time.perf_counter()
            for _ in range(2000):
                f()
            samples.append((time.perf_counter() - started) / 2000 * 1e6)
        out[name] = statistics.median(samples[1:])
    return out


# -- main -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", action="store_true", help="smoke run (60k rows, fewer rounds)")
    ap.add_argument("--rows", type=int, help="rows of the synthetic dataset (default 1M)")
    ap.add_argument("--rounds", type=int, help="timed rounds (default 9; --small 3)")
    ap.add_argument("--batches", type=int, help="timed batches per variant and round")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=50, help="batches per turn (interleaving)")
    ap.add_argument("--nan-rows", type=int, default=2, help="NaN rows per tripping batch")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = args.rows or (60_000 if args.small else 1_000_000)
    args.rounds = args.rounds or (3 if args.small else 9)
    args.batches = args.batches or (200 if args.small else 2000)
    args.trip_batches = 400 if args.small else 4100
    torch.set_num_threads(1)
    logging.getLogger("batchguard").setLevel(logging.ERROR)  # the trip runs log every batch
    x, y, ids = clean_data(rows)
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "rows": rows,
        "batch": BATCH,
        "width": WIDTH,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    with tempfile.TemporaryDirectory(prefix="bench-guard-") as tmpdir:
        tmp = Path(tmpdir)
        write_parquet(tmp / "train.parquet", x, y)
        started = time.perf_counter()
        loader = make_loader(
            tmp / "train.parquet", label="label", batch_size=BATCH, cache_dir=tmp / "cache"
        )
        log(f"make_loader: {time.perf_counter() - started:.1f} s, {_rows(loader):,} rows")
        # A twin of the loader (same dataset, a copy of its sampler) for the guarded side, so
        # that the two iterators taking turns do not share one sampler's position.
        twin = DataLoader(
            loader.dataset,
            sampler=copy.copy(loader.sampler),
            batch_size=None,
            collate_fn=loader.collate_fn,
        )
        twin.batchguard = loader.batchguard  # type: ignore[attr-defined]
        guarded = guard(twin)
        assert guarded.checker._bounds is not None  # out_of_range is on

        tds = DataLoader(
            TensorDataset(*map(torch.from_numpy, (x, y, ids))), batch_size=BATCH, shuffle=True
        )
        tds_guarded = guard(tds, row_id=2)
        # ~0.9 ms a batch, and noisy (collating 256 rows makes garbage, and the collector
        # runs at random points): as many batches as the others, in shorter turns.
        results["a_tensordataset"] = compare(
            {
                "unguarded": (lambda: iter(tds), None),
                "guard(loader)": (lambda: iter(tds_guarded), None),
            },
            args,
            "(a) TensorDataset",
            chunk=max(args.chunk // 5, 2),
        )
        results["b_make_loader"] = compare(
            {
                "unguarded": (lambda: iter(loader), None),
                "guard(loader)": (lambda: iter(guarded), None),
                "unguarded + amin/amax/tolist only": (lambda: iter(loader), _min_max_only),
            },
            args,
            "(b) make_loader",
        )

        trainer = Trainer()

        def observed_step(batch: Any) -> None:
            guarded.observe_loss(trainer.step(batch))

        def min_max_step(batch: Any) -> None:
            _min_max_only(batch)
            trainer.step(batch)

        results["c_mlp_step"] = compare(
            {
                "unguarded": (lambda: iter(loader), trainer.step),
                "guard(loader)": (lambda: iter(guarded), trainer.step),
                "guard(loader) + observe_loss": (lambda: iter(guarded), observed_step),
                "unguarded + amin/amax/tolist only": (lambda: iter(loader), min_max_step),
            },
            args,
            "(c) MLP step",
        )
        results["guard_stats"] = {
            "batches": guarded.stats.batches,
            "rows_dropped": guarded.stats.rows_dropped,
            "reasons": dict(guarded.stats.reasons),
        }
        assert guarded.stats.rows_dropped == 0, guarded.stats  # clean batches stay whole
        results["d_trip"] = trip_cost(x, y, ids, args, tmp)
        results["e_ops_us"] = op_costs(x, y)
    text = json.dumps(results, indent=1)
    if args.json:
        args.json.write_text(text)
    print(json.dumps({k: _drop_rounds(v) for k, v in results.items()}, indent=1))
    return 0


def _drop_rounds(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    return {k: _drop_rounds(w) for k, w in v.items() if k != "rounds"}


if __name__ == "__main__":
    sys.exit(main())
