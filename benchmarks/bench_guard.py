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

Every ratio is taken within one round (the variants interleaved, their order rotated),
and the median over ``--rounds`` rounds is reported; each variant's first ``--warmup``
batches of a round are not timed, and round 0 is a warm-up. torch runs with one intra-op
thread (``torch.set_num_threads(1)``; 2-core machine, single-threaded loops).

Usage::

    python benchmarks/bench_guard.py             # full: 1M rows, ~3 min
    python benchmarks/bench_guard.py --small     # short run: 60k rows, ~20 s
    python benchmarks/bench_guard.py --quick     # smoke run: 5k rows, a few seconds
"""

from __future__ import annotations

import argparse
import copy
import gc
import itertools
import json
import logging
import operator
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _harness as h
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(h.ROOT))

import pipeline  # noqa: E402
from pipeline import guard  # noqa: E402
from pipeline.guarding import BatchChecker  # noqa: E402

BATCH = 256
WIDTH = 32
SHARES = [0.50, 0.25, 0.15, 0.07, 0.03]


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
def compare(
    variants: dict[str, h.Variant],
    args: argparse.Namespace,
    label: str,
    batches: int | None = None,
    chunk: int | None = None,
) -> dict[str, Any]:
    """``--rounds`` rounds (+1 warm-up round) of interleaved loops; µs per batch, medians."""
    wall, cpu = h.interleaved(
        variants,
        rounds=args.rounds,
        warmup=args.warmup,
        batches=batches or args.batches,
        chunk=chunk or args.chunk,
        label=label,
    )
    return {"wall_clock": _summarise(wall), "thread_cpu_time": _summarise(cpu)}


def _summarise(rounds: list[h.Round]) -> dict[str, Any]:
    """Medians, ratios to the first variant, and the overhead in µs over it."""
    out = h.summarise(rounds, "us_per_batch")
    base, *others = rounds[0]
    out["overhead_us"] = {k: h.median(r[k] - r[base] for r in rounds) for k in others}
    return out


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
def _per_call_us(f: Callable[[], Any], calls: int, samples: int = 7) -> float:
    """µs per call of ``f`` in a tight loop: median of ``samples`` loops, the first not counted."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        for _ in range(calls):
            f()
        times.append((time.perf_counter() - started) / calls * 1e6)
    return h.median(times[1:])


def _observe_loss_us(loss: torch.Tensor, calls: int, samples: int = 7) -> float:
    """µs per ``observe_loss(loss)`` on a guard that holds 50 recent losses.

    Each call gets a guard of its own, built beforehand with the same history, so that
    every call takes the same path (a call adds its loss to the history).
    """
    history = np.random.default_rng(0).normal(1.0, 0.05, 60).tolist()  # the last 50 stay
    times = []
    for _ in range(samples):
        guards = [guard([]) for _ in range(calls)]
        for g in guards:
            for v in history:
                g.observe_loss(v)
        started = time.perf_counter()
        for g in guards:
            g.observe_loss(loss)
        times.append((time.perf_counter() - started) / calls * 1e6)
    return h.median(times[1:])


def op_costs(x: np.ndarray, y: np.ndarray, calls: int) -> dict[str, float]:
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
    history = np.random.default_rng(0).normal(1.0, 0.05, 50)
    ops: dict[str, Callable[[], Any]] = {
        "guard(...) next(): Guard + BatchChecker, clean batch, all checks": lambda: next(guarded),
        "BatchChecker.__call__, clean batch, all checks": lambda: checker(batch, index=0),
        "torch.amin(x, 0)": lambda: torch.amin(xt, 0),
        "torch.amax(x, 0)": lambda: torch.amax(xt, 0),
        "Tensor.tolist() (32 values)": lambda: lo_t.tolist(),
        "all(map(operator.ge, ...)) (32 values)": lambda: all(map(operator.ge, lows, limits)),
        "any(map(operator.eq, ...)) (32 values)": lambda: any(map(operator.eq, lows, highs)),
        "labels: y.tolist() + count (256 labels)": lambda: (lambda v: v.count(v[0]))(yt.tolist()),
        "torch op floor: x.sum()": lambda: xt.sum(),
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
    out = {name: _per_call_us(f, calls) for name, f in ops.items()}
    # below / above the median of the recent losses (above it, the MAD is computed too)
    for where, loss in (("below", 0.99), ("above", 1.01)):
        name = f"observe_loss(loss), 50 recent losses, loss {where} their median"
        out[name] = _observe_loss_us(torch.tensor(loss), calls)
    return out


def _checks_fences(loader: Any) -> bool:
    """Whether ``guard(loader)`` checks the dataset's fences: one absurd value must trip it."""
    x, y, ids = loader.dataset[np.arange(BATCH)]
    x = x.clone()
    x[0, 0] = 1e30  # finite in float32, far beyond any fence of this data

    class OneBatch(list):  # a list that can carry the loader's batchguard info
        batchguard = loader.batchguard

    probe = guard(OneBatch([pipeline.Batch(x, y, ids)]))
    list(probe)
    return probe.stats.reasons["out_of_range"] > 0


# -- main -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", action="store_true", help="short run (60k rows, fewer rounds)")
    ap.add_argument("--quick", action="store_true", help="smoke run (5k rows, 1 round, seconds)")
    ap.add_argument("--rows", type=int, help="rows of the synthetic dataset (default 1M)")
    ap.add_argument("--rounds", type=int, help="timed rounds (default 9; --small 3)")
    ap.add_argument("--batches", type=int, help="timed batches per variant and round")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=50, help="batches per turn (interleaving)")
    ap.add_argument("--nan-rows", type=int, default=2, help="NaN rows per tripping batch")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    size = "quick" if args.quick else "small" if args.small else "full"
    rows = args.rows or {"quick": 5_000, "small": 60_000, "full": 1_000_000}[size]
    args.rounds = args.rounds or {"quick": 1, "small": 3, "full": 9}[size]
    args.batches = args.batches or {"quick": 20, "small": 200, "full": 2000}[size]
    args.trip_batches = {"quick": 20, "small": 400, "full": 4100}[size]
    op_calls = 200 if args.quick else 2000
    if args.quick:
        args.warmup, args.chunk = 5, 10
    torch.set_num_threads(1)
    logging.getLogger("batchguard").setLevel(logging.ERROR)  # the trip runs log every batch
    x, y, ids = clean_data(rows)
    versions = {"torch": torch.__version__, "numpy": np.__version__}
    results: dict[str, Any] = {
        "machine": {**h.machine(**versions), "torch_threads": torch.get_num_threads()},
        "rows": rows,
        "batch": BATCH,
        "width": WIDTH,
        "settings": vars(args),
    }
    with tempfile.TemporaryDirectory(prefix="bench-guard-") as tmpdir:
        tmp = Path(tmpdir)
        write_parquet(tmp / "train.parquet", x, y)
        started = time.perf_counter()
        loader = pipeline.make_loader(
            tmp / "train.parquet", label="label", batch_size=BATCH, cache_dir=tmp / "cache"
        )
        took = time.perf_counter() - started
        h.log(f"make_loader: {took:.1f} s, {h.loader_rows(loader):,} rows")
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
        assert _checks_fences(twin), "guard(loader) should check out_of_range against the fences"

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
        results["e_ops_us"] = op_costs(x, y, op_calls)
    if args.json:
        h.write_json(args.json, results)
    print(json.dumps(h.without(results), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
