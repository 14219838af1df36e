"""Train, validate and test a classifier with one fitted preprocessing, then serve it.

Splits the shipped ``sample_data/credit.parquet`` into train / validation / test
files (60/20/20 by row), then:

1. ``pipeline.fit`` validates the training file once (bad rows quarantined,
   degenerate features left out) and fits the robust scaler on its clean rows;
2. ``prep.loader`` serves stratified training batches and, for validation and
   test, every row the model can take, with the same features and scaling;
3. the model is evaluated per epoch on the validation loader and once on the
   test loader;
4. the preprocessor is saved, reloaded in serving form (``to_torch``), and the
   served predictions are checked against the test loader's.

Run ``python examples/train_validate_test.py``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import torch
from torch import nn

import pipeline
from pipeline import Preprocessor, guard
from pipeline.profiling import is_feature_type

ROOT = Path(__file__).resolve().parents[1]


def split(source: Path, folder: Path) -> dict[str, Path]:
    """Train / validation / test files, 60/20/20 by row."""
    table = pq.read_table(source)
    n = table.num_rows
    cuts = {
        "train": (0, int(0.6 * n)),
        "val": (int(0.6 * n), int(0.8 * n)),
        "test": (int(0.8 * n), n),
    }
    paths = {}
    for name, (start, stop) in cuts.items():
        paths[name] = folder / f"{name}.parquet"
        pq.write_table(table.slice(start, stop - start), paths[name])
    return paths


def mean_loss(model: nn.Module, loader) -> float:
    """Mean cross-entropy over every row the loader serves."""
    total, rows = 0.0, 0
    with torch.no_grad():
        for x, y, _ in loader:
            total += float(nn.functional.cross_entropy(model(x), y, reduction="sum"))
            rows += len(y)
    return total / max(rows, 1)


def main(epochs: int = 3) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = split(ROOT / "sample_data" / "credit.parquet", folder)
        schema = pq.read_schema(paths["train"])
        features = [  # the numeric columns but the label and the customer id
            f.name
            for f in schema
            if is_feature_type(f.type) and f.name not in ("default", "customer_id")
        ]
        prep = pipeline.fit(
            paths["train"], label="default", features=features, quarantine=folder / "bad.parquet"
        )
        print(prep)
        train = prep.loader(paths["train"], batch_size=256)
        val = prep.loader(paths["val"], batch_size=1024, shuffle=False)
        test = prep.loader(paths["test"], batch_size=1024, shuffle=False)
        for loader in (val, test):
            print(loader.batchguard.report.summary())

        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(len(prep.features), 32), nn.ReLU(), nn.Linear(32, 2))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(epochs):
            train.sampler.set_epoch(epoch)
            for x, y, _ in (g := guard(train)):
                loss = nn.functional.cross_entropy(model(x), y)
                if g.observe_loss(loss):
                    continue
                opt.zero_grad()
                loss.backward()
                opt.step()
            print(f"epoch {epoch}: validation loss {mean_loss(model, val):.4f}")
        result = {"validation": mean_loss(model, val), "test": mean_loss(model, test)}
        print(f"test loss {result['test']:.4f}")

        # Serving: the saved preprocessor in front of the model, as one module.
        prep.save(folder / "prep")
        serving = nn.Sequential(Preprocessor.load(folder / "prep").to_torch(), model).eval()
        raw = pq.read_table(paths["test"])
        x, _, row_id = next(iter(test))
        rows = raw.take(row_id.numpy())
        features = torch.tensor(
            [[float(v) for v in r.values()] for r in rows.select(prep.features).to_pylist()],
            dtype=torch.float64,
        )
        with torch.no_grad():
            assert torch.equal(serving(features), model(x)), "served and tested outputs differ"
        print("served predictions equal the test loader's")
        return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--epochs", type=int, default=3)
    main(parser.parse_args().epochs)
