"""Fault injection for ``StabilityMonitor``: does each injected event get the right verdict?

The fuller version of ``tests/test_monitor.py``'s suite. Each run trains a small MLP
(32 units per hidden layer) on a table shipped with scikit-learn (features
standardised): breast cancer, wine, digits and iris (cross-entropy), diabetes
(squared error on the standardised target), with SGD (0.05, momentum 0.9) or Adam
(1e-3), batch 32, and injects one fault:

- ``data``: 1-4 rows of one batch scaled x100 with their label changed (a class
  further on; for diabetes the target moved by 10 standard deviations) -> ``data``, those rows;
- ``lr``: the learning rate multiplied at one step for the rest of the run (x30 SGD,
  x100 Adam; x300 Adam and x100 SGD on the small tables wine and iris) -> ``learning_rate``;
- ``exploding``: a 10-layer ReLU stack initialised at 3x Kaiming -> ``gradients``/
  ``exploding`` in one of its Linear layers;
- ``vanishing``: a 12-layer sigmoid stack -> ``gradients``/``vanishing`` in layer "0";
- ``nan``: a module taking ``log`` of a negative number for one step ->
  ``gradients``/``non_finite`` in that module ("2");
- ``layer``: 30 added to the bias of layer "2" of a 3-hidden-layer ReLU MLP ->
  ``gradients``/``exploding`` in layer "4", the first whose gradient blows up;

and clean runs, which must get no verdict at all. The first verdict at or after the
injection is the one scored. Prints the confusion matrix (injected case x verdict
cause), the right share and the clean steps; every miss is listed.

Usage::

    python benchmarks/monitor_faults.py              # 5 seeds, 400-step clean runs
    python benchmarks/monitor_faults.py --seeds 2    # quicker
    python benchmarks/monitor_faults.py --quick      # smoke run: 1 seed, 2 tables
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import _harness as h
import torch
from torch import nn

sys.path.insert(0, str(h.ROOT))

from pipeline.monitor import StabilityMonitor, Verdict  # noqa: E402
from tests.test_monitor import (  # noqa: E402  (the fast suite's)
    EXPECTED,
    batches,
    inject_fault,
    model_for,
    optimizer_for,
    scored,
)

TABLES = ("cancer", "wine", "digits", "iris", "diabetes")
SMALL = ("wine", "iris")  # under 200 rows: an epoch is a handful of batches
OPTIMIZERS = ("sgd", "adam")
CAUSES = ("data", "learning_rate", "gradients", "activations", "unknown", "none")


@functools.cache
def table(name: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Standardised features, targets, classes (0: a regression)."""
    from sklearn import datasets

    loader = {
        "cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "digits": datasets.load_digits,
        "iris": datasets.load_iris,
        "diabetes": datasets.load_diabetes,
    }[name]
    x, y = loader(return_X_y=True)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)  # digits has constant pixels
    if name == "diabetes":
        y = (y - y.mean()) / y.std()
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), 0
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y), int(y.max()) + 1


class Run:
    """One training run with an optional fault; ``truth`` holds the injected rows."""

    def __init__(self, case: str, seed: int, ds: str, opt: str, steps: int):
        torch.manual_seed(seed)
        self.x, self.y, self.c = table(ds)
        self.case, self.seed, self.ds, self.opt = case, seed, ds, opt
        self.model = model_for(case, self.x.shape[1], max(self.c, 1))
        self.optimizer = optimizer_for(opt, self.model)
        self.monitor = StabilityMonitor(self.model, self.optimizer)
        self.order = batches(len(self.x), seed, steps)
        self.truth: list[int] = []

    def lr_factor(self) -> float:
        if self.opt == "sgd":
            return 100.0 if self.ds in SMALL else 30.0
        return 300.0 if self.ds in SMALL else 100.0

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.order[step]
        xb, yb = self.x[idx].clone(), self.y[idx].clone()
        inject_fault(self, step, xb, yb, idx, self.lr_factor())
        return xb, yb, idx

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.c == 0:
            return (out.squeeze(1) - y) ** 2
        return nn.functional.cross_entropy(out, y, reduction="none")

    def go(self) -> Run:
        for step in range(len(self.order)):
            xb, yb, idx = self.batch(step)
            per_row = self.loss(self.model(xb), yb)
            self.optimizer.zero_grad()
            per_row.mean().backward()
            verdict = self.monitor.check(per_row, row_ids=idx)
            if verdict is None or not verdict.skip:
                self.optimizer.step()
        return self

    def first(self, at: int) -> Verdict | None:
        return next((v for v in self.monitor.verdicts if v.step >= at), None)


def suite(tables: tuple[str, ...], seeds: range, clean_steps: int) -> dict[str, Any]:
    confusion: collections.Counter = collections.Counter()
    per_table: collections.Counter = collections.Counter()
    right = clean = clean_total = 0
    misses = []
    for ds in tables:
        for opt in OPTIMIZERS:
            for seed in seeds:
                run = Run("clean", seed, ds, opt, clean_steps).go()
                clean_total += clean_steps
                clean += len(run.monitor.verdicts)
                misses += [f"clean {ds} {opt} {seed}: {v}" for v in run.monitor.verdicts]
                for case in EXPECTED:
                    cause, ok, verdict = scored(case, ds, opt, seed, runner=Run)
                    confusion[case, cause] += 1
                    per_table[ds, "events"] += 1
                    per_table[ds, "right"] += ok
                    right += ok
                    if not ok:
                        misses.append(f"{case} {ds} {opt} seed {seed}: {verdict}")
        h.log(f"{ds}: {per_table[ds, 'right']}/{per_table[ds, 'events']} right so far")
    return {
        "confusion": {f"{c} -> {v}": n for (c, v), n in sorted(confusion.items())},
        "matrix": show(confusion),
        "per_table": {t: [per_table[t, "right"], per_table[t, "events"]] for t in tables},
        "right": right,
        "events": sum(confusion.values()),
        "clean_steps": clean_total,
        "clean_verdicts": clean,
        "misses": misses,
    }


def show(confusion: collections.Counter) -> str:
    header = ["injected", *CAUSES]
    rows = [[case, *(confusion[case, c] for c in CAUSES)] for case in EXPECTED]
    return h.markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--clean-steps", type=int, default=400)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny MLPs: a second thread only waits
    tables = TABLES[:2] if args.quick else TABLES
    seeds = range(1 if args.quick else args.seeds)
    started = time.perf_counter()
    out = suite(tables, seeds, args.clean_steps)
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["machine"] = h.machine(torch=torch.__version__)
    print(out["matrix"])
    print(
        f"\nright {out['right']}/{out['events']} ({out['right'] / out['events']:.1%}); "
        f"clean steps {out['clean_steps']}, verdicts {out['clean_verdicts']}; "
        f"per table (right/events): {out['per_table']}; {out['seconds']} s"
    )
    for miss in out["misses"]:
        print("miss:", miss)
    if args.json:
        h.write_json(Path(args.json), out)
    else:
        print(json.dumps({k: v for k, v in out.items() if k != "matrix"}, indent=1))


if __name__ == "__main__":
    main()
