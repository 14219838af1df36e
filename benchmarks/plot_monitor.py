"""The README's stability-monitor figure: one run with the monitor, the same run without.

An MLP (30-32-32-2, SGD 0.05 with momentum 0.9, batch 32) on scikit-learn's breast
cancer table, with two faults in the one batch order both runs share:

- step 150: two rows scaled x100 with their labels flipped (a unit mix-up);
- step 300: one row holding a NaN.

Without the monitor the mix-up's step throws the weights off (the loss jumps and takes
a while to come back) and the NaN row writes NaN into every weight (the loss is NaN
from then on). With it, both steps get a ``data`` verdict naming the rows and are
skipped. The verdicts are printed and written on the figure.

Usage::

    python benchmarks/plot_monitor.py                 # writes docs/monitor-run.png
    python benchmarks/plot_monitor.py --out run.png
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import _harness as h
import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(h.ROOT))

from pipeline.monitor import StabilityMonitor  # noqa: E402
from tests.test_monitor import batches  # noqa: E402  (the fast suite's shuffled batches of 32)

STEPS, MIXUP, NAN = 450, 150, 300


def data() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def run(monitored: bool) -> tuple[np.ndarray, list]:
    """Batch losses of each step (NaN once the weights are), and the monitor's verdicts."""
    x, y = data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 2))  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    monitor = StabilityMonitor(model, opt) if monitored else None
    losses = []
    for step, idx in enumerate(batches(len(x), 0, STEPS)):
        xb, yb = x[idx].clone(), y[idx].clone()
        if step == MIXUP:
            xb[:2] *= 100
            yb[:2] = 1 - yb[:2]
        if step == NAN:
            xb[5, 3] = math.nan
        per_row = nn.functional.cross_entropy(model(xb), yb, reduction="none")
        losses.append(float(per_row.detach().mean()))
        opt.zero_grad()
        per_row.mean().backward()
        if monitor is not None:
            verdict = monitor.check(per_row, row_ids=idx)
            if verdict is not None and verdict.skip:
                continue
        opt.step()
    return np.array(losses), [] if monitor is None else monitor.verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(h.ROOT / "docs" / "monitor-run.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.set_num_threads(1)
    bare, _ = run(monitored=False)
    watched, verdicts = run(monitored=True)
    for v in verdicts:
        print(v)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True, dpi=100)
    steps = np.arange(STEPS)
    for ax, losses, title in (
        (axes[0], bare, "without the monitor"),
        (axes[1], watched, "with StabilityMonitor"),
    ):
        ax.plot(steps, losses, lw=0.8, color="tab:blue" if ax is axes[1] else "tab:gray")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        for at in (MIXUP, NAN):
            ax.axvline(at, color="tab:red", lw=0.6, ls=":")
    axes[0].set_ylabel("batch loss")
    dead = np.flatnonzero(~np.isfinite(bare))
    if dead.size:
        axes[0].annotate(
            f"NaN from step {dead[0]} on\n(every weight is NaN)", (dead[0], 0.1),
            xytext=(dead[0] - 130, 0.02), fontsize=8, arrowprops={"arrowstyle": "->"},
        )  # fmt: skip
    top = float(np.nanmax(watched[np.isfinite(watched)]))
    low = float(np.nanmin(watched[np.isfinite(watched)]))
    for v in verdicts:
        label = f"step {v.step}: {v.cause}/{v.kind}\nrows {v.rows}; skipped"
        y = float(watched[v.step]) if math.isfinite(watched[v.step]) else math.sqrt(top * low)
        text_y = top / 8 if v.step == MIXUP else low * 2
        axes[1].annotate(label, (v.step, y), xytext=(v.step - 140, text_y), fontsize=7,
                         arrowprops={"arrowstyle": "->", "lw": 0.6})  # fmt: skip
    fig.suptitle("Two bad batches (rows x100 with flipped labels at step 150, a NaN at 300)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
