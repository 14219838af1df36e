"""What ``StabilityMonitor.check`` costs a training step: bare vs monitored vs with hooks.

A small MLP (32 inputs, ``--depth`` hidden ReLU layers of ``--width`` units, 10 classes)
trained with Adam on synthetic rows, batch ``--batch``, one torch thread, on the CPU with
gradient tracking on. Each variant trains its own copy of the same model on the same
batches:

- ``bare``: forward, backward, ``optimizer.step()``;
- ``monitored``: the same with ``StabilityMonitor(model, optimizer).check(per_row, ids)``
  between backward and step, default settings;
- ``monitored, sync_every=1``: a host read of the statistics every step;
- ``monitored + activation hooks``: defaults and ``activations=True``.

The variants take turns of ``--chunk`` steps (order rotated each turn) within a round,
so load from other processes falls on all of them alike; each ratio is taken within a
round and the median over ``--rounds`` rounds is reported, by wall clock and by this
thread's CPU time. ``--sizes`` repeats the comparison for other MLP sizes. Every run
must end with no verdict (the rows are clean).

Usage::

    python benchmarks/bench_monitor.py            # 4 x 256, batch 256, 9 rounds
    python benchmarks/bench_monitor.py --sizes    # also 2 x 64 and 8 x 512
    python benchmarks/bench_monitor.py --quick    # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _harness as h
import torch
from torch import nn

sys.path.insert(0, str(h.ROOT))

from pipeline.monitor import StabilityMonitor  # noqa: E402

INPUTS, CLASSES = 32, 10


def mlp(depth: int, width: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    w = INPUTS
    for _ in range(depth):
        layers += [nn.Linear(w, width), nn.ReLU()]
        w = width
    layers.append(nn.Linear(w, CLASSES))
    return nn.Sequential(*layers)


class Trainer:
    """One variant: its own copy of the model, its optimizer, and its monitor (or none)."""

    def __init__(self, model: nn.Module, monitor: dict[str, Any] | None):
        self.model = copy.deepcopy(model)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.monitor = None if monitor is None else StabilityMonitor(
            self.model, self.opt, **monitor
        )  # fmt: skip

    def step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        x, y, ids = batch
        per_row = nn.functional.cross_entropy(self.model(x), y, reduction="none")
        self.opt.zero_grad()
        per_row.mean().backward()
        if self.monitor is not None:
            verdict = self.monitor.check(per_row, row_ids=ids)
            if verdict is not None and verdict.skip:
                return
        self.opt.step()


VARIANTS: dict[str, dict[str, Any] | None] = {
    "bare": None,
    "monitored": {},
    "monitored, sync_every=1": {"sync_every": 1},
    "monitored + activation hooks": {"activations": True},
}


def compare(depth: int, width: int, args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    rows = args.batch * 64
    x = torch.randn(rows, INPUTS)
    y = (x[:, :CLASSES] + 0.5 * torch.randn(rows, CLASSES)).argmax(1)  # learnable labels
    ids = torch.arange(rows)
    batches = [
        (x[b : b + args.batch], y[b : b + args.batch], ids[b : b + args.batch])
        for b in range(0, rows, args.batch)
    ]
    model = mlp(depth, width)
    trainers = {name: Trainer(model, options) for name, options in VARIANTS.items()}

    def loop() -> Iterator[Any]:
        return iter(batches)

    variants: dict[str, tuple[Callable[[], Iterator[Any]], Callable[[Any], Any]]] = {
        name: (loop, t.step) for name, t in trainers.items()
    }
    wall, cpu = h.interleaved(
        variants,  # type: ignore[arg-type]
        rounds=args.rounds,
        warmup=args.warmup,
        batches=args.steps,
        chunk=args.chunk,
        label=f"{depth}x{width}",
    )
    verdicts = {n: len(t.monitor.verdicts) for n, t in trainers.items() if t.monitor is not None}
    # The rows are clean: a verdict of the loss or the gradients would be a false alarm
    # (dead ReLU units are real on random rows, and counted, not failed).
    alarms = [v for t in trainers.values() if t.monitor for v in t.monitor.verdicts]
    if any(v.cause != "activations" for v in alarms):
        raise SystemExit(f"a clean run got verdicts: {[str(v) for v in alarms]}")
    return {
        "model": f"{depth} x {width} ReLU, batch {args.batch}, Adam",
        "parameters": sum(p.numel() for p in model.parameters()),
        "wall_clock": h.summarise(wall, "us per step"),
        "thread_cpu_time": h.summarise(cpu, "us per step"),
        "verdicts": verdicts,
    }


def table(results: list[dict[str, Any]]) -> str:
    names = list(VARIANTS)
    header = ["model", "bare step (µs, CPU)", *[f"{n} / bare" for n in names[1:]]]
    lines = []
    for r in results:
        for clock in ("thread_cpu_time", "wall_clock"):
            s = r[clock]
            ratios = [f"{s['ratios'][f'{n} / bare']:.3f}" for n in names[1:]]
            label = f"{r['model']} ({clock.replace('_', ' ')})"
            lines.append([label, f"{s['us per step']['bare']:.0f}", *ratios])
    return h.markdown_table(header, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=320, help="steps per variant per round")
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=64, help="untimed steps per round")
    parser.add_argument("--sizes", action="store_true", help="also 2 x 64 and 8 x 512")
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.chunk, args.warmup = 2, 64, 16, 32
    torch.set_num_threads(1)
    busy = h.wait_for_quiet()
    sizes = [(args.depth, args.width)]
    if args.sizes:
        sizes = [(2, 64), *sizes, (8, 512)]
    results = [compare(d, w, args) for d, w in sizes]
    print(table(results))
    out = {"machine": h.machine(torch=torch.__version__), "busy_before": busy, "results": results}
    if args.json:
        h.write_json(Path(args.json), out)
    else:
        shown = {**out, "results": [h.without(r) for r in results]}
        print(json.dumps(shown, indent=1, default=str))


if __name__ == "__main__":
    main()
