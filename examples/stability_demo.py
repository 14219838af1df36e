"""Stability demo: the same MLP on corrupted data, through a plain DataLoader and batchguard.

The training table is corrupted the way real exports are: NaN and inf values,
extreme outliers (a unit mix-up) and rows sorted by label. A hand-written
pipeline (standardise with mean/std, DataLoader without shuffling) turns the
loss into NaN; ``pipeline.fit`` + ``prep.loader`` + ``guard`` quarantine the bad
rows, scale robustly and stratify batches, and the model, evaluated on held-out
rows through ``prep.transform`` (the same features and scaling, never refitted),
ends within a few percent of the loss reached on the uncorrupted data.

Run ``python examples/stability_demo.py`` to write ``examples/stability.png``
(needs matplotlib: ``pip install 'batchguard[plot]'``).
"""

from __future__ import annotations

import argparse
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pipeline import fit, guard

FEATURES = 16
CLASSES = 3


def make_tables(rows: int, seed: int = 0) -> tuple[pa.Table, pa.Table, pa.Table]:
    """An uncorrupted training table, its corrupted twin, and a held-out evaluation table."""
    rng = np.random.default_rng(seed)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, CLASSES, n)
        centers = np.linspace(-1, 1, CLASSES)[y][:, None] * rng.uniform(0.3, 1.0, FEATURES)
        scales = np.geomspace(0.01, 1000, FEATURES)  # features in very different units
        x = (centers + rng.normal(0, 1, (n, FEATURES))) * scales
        return x, y

    def table(x: np.ndarray, y: np.ndarray) -> pa.Table:
        cols = {f"f{j:02d}": x[:, j] for j in range(FEATURES)}
        return pa.table({**cols, "label": y})

    x, y = draw(rows)
    bad = x.copy()
    n_bad = max(3, rows // 200)
    picks = rng.choice(rows, 3 * n_bad, replace=False)
    cols = rng.integers(0, FEATURES, 3 * n_bad)
    bad[picks[:n_bad], cols[:n_bad]] = np.nan
    bad[picks[n_bad : 2 * n_bad], cols[n_bad : 2 * n_bad]] = np.inf
    bad[picks[2 * n_bad :], cols[2 * n_bad :]] *= 1e6  # a unit mix-up
    order = np.argsort(y, kind="stable")  # exported sorted by label
    x_eval, y_eval = draw(max(1000, rows // 4))
    return table(x, y), table(bad[order], y[order]), table(x_eval, y_eval)


def _arrays(t: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    x = np.column_stack([t.column(f"f{j:02d}").to_numpy() for j in range(FEATURES)])
    return x.astype(np.float32), t.column("label").to_numpy().copy()


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, CLASSES))


@dataclass
class Run:
    name: str
    losses: list[float]
    eval_loss: float


def _train(name: str, batches, transform, x_eval, y_eval, epochs: int, g=None) -> Run:
    model = _model(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(epochs):
        for batch in batches:
            x, y = batch[0], batch[1]
            loss = loss_fn(model(x), y)
            losses.append(loss.item())
            if g is not None and g.observe_loss(loss):
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        xe = torch.from_numpy(transform(x_eval).astype(np.float32))
        eval_loss = float(loss_fn(model(xe), torch.from_numpy(y_eval)))
    return Run(name, losses, eval_loss)


def _standardise(x: np.ndarray):
    # What a hand-written pipeline does: mean/std of the training data as loaded.
    mean, std = x.mean(axis=0), x.std(axis=0)
    return lambda a: (a - mean) / std


def run_demo(rows: int = 20_000, epochs: int = 3, workdir: str | None = None) -> dict[str, Run]:
    """Train the three variants; returns them by name."""
    clean_t, corrupt_t, eval_t = make_tables(rows)
    x_eval, y_eval = _arrays(eval_t)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(workdir or tmp)
        pq.write_table(corrupt_t, folder / "corrupted.parquet")

        x, y = _arrays(clean_t)
        scale = _standardise(x)
        clean_loader = DataLoader(
            TensorDataset(torch.from_numpy(scale(x)), torch.from_numpy(y)),
            batch_size=256,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
        )
        reference = _train(
            "uncorrupted data, plain DataLoader", clean_loader, scale, x_eval, y_eval, epochs
        )

        xb, yb = _arrays(corrupt_t)
        scale_b = _standardise(xb)
        plain_loader = DataLoader(
            TensorDataset(torch.from_numpy(scale_b(xb).astype(np.float32)), torch.from_numpy(yb)),
            batch_size=256,
        )
        plain = _train(
            "corrupted data, plain DataLoader", plain_loader, scale_b, x_eval, y_eval, epochs
        )

        finite = np.isfinite(xb).all(axis=1)  # the usual half-fix: drop non-finite rows
        scale_h = _standardise(xb[finite])
        half_loader = DataLoader(
            TensorDataset(
                torch.from_numpy(scale_h(xb[finite]).astype(np.float32)),
                torch.from_numpy(yb[finite]),
            ),
            batch_size=256,
        )
        half = _train(
            "corrupted data, NaN/inf rows dropped by hand",
            half_loader,
            scale_h,
            x_eval,
            y_eval,
            epochs,
        )

        prep = fit(
            folder / "corrupted.parquet",
            label="label",
            quarantine=folder / "quarantine.parquet",
            cache_dir=folder / "cache",
        )
        loader = prep.loader(folder / "corrupted.parquet", batch_size=256)
        g = guard(loader, quarantine=folder / "guard-quarantine")
        guarded = _train(
            "corrupted data, fit + loader + guard", g, prep.transform, x_eval, y_eval, epochs, g
        )
    return {"reference": reference, "plain": plain, "half": half, "guarded": guarded}


def plot(runs: dict[str, Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in runs.values():
        losses = np.array(run.losses)
        label = f"{run.name} (eval loss {run.eval_loss:.3g})"
        if not np.isfinite(losses).any():
            label = f"{run.name}: loss is NaN from step 0"
            losses = np.full_like(losses, np.nan)
        ax.plot(losses, label=label, lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (NaN not drawn)")
    ax.set_title("Same model, same corrupted data")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--png", type=Path, default=Path(__file__).with_name("stability.png"))
    args = parser.parse_args()
    runs = run_demo(args.rows, args.epochs)
    for run in runs.values():
        finite = "NaN" if not math.isfinite(run.eval_loss) else f"{run.eval_loss:.4f}"
        print(f"{run.name:46s} eval loss {finite}")
    ref, ours = runs["reference"].eval_loss, runs["guarded"].eval_loss
    print(f"fit + loader + guard vs uncorrupted: {ours / ref - 1:+.2%}")
    try:
        plot(runs, args.png)
        print(f"wrote {args.png}")
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'batchguard[plot]')")


if __name__ == "__main__":
    main()
