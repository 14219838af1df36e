"""lr_find: the LR range test on a real table (scikit-learn's breast cancer data, 569 x 30)."""

from __future__ import annotations

import copy
import math
import sys

import numpy as np
import pyarrow as pa
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pipeline
from pipeline.errors import UsageError
from pipeline.lr_finder import LRFindResult, lr_find, valley
from tests.conftest import write_parquet


@pytest.fixture(scope="module")
def cancer() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def mlp(seed: int = 0, *, extras: bool = False) -> nn.Module:
    """30-32-2 ReLU; ``extras`` adds BatchNorm (buffers) and Dropout (random state)."""
    torch.manual_seed(seed)
    if not extras:
        return nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 2))
    return nn.Sequential(
        nn.Linear(30, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 2)
    )


def loader_of(data: tuple[torch.Tensor, torch.Tensor], batch_size: int = 64) -> DataLoader:
    return DataLoader(TensorDataset(*data), batch_size=batch_size, shuffle=True)


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    return {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),  # state_dict() holds live tensors
        "grads": grads,
        "modes": [m.training for m in model.modules()],
    }


def assert_same_tensors(a, b) -> None:
    """Bit-identical nested structures of tensors, numbers, lists and dicts."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_tensors(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tensors(x, y)
    else:
        assert a == b


def test_suggestion_lies_where_the_loss_descends(cancer):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = lr_find(model, loader_of(cancer), nn.functional.cross_entropy, opt, seed=0)
    assert isinstance(result, LRFindResult)
    assert 1e-7 <= result.lrs[0] < result.suggestion < result.lrs[-1] <= 10
    losses = np.asarray(result.losses)
    assert np.isfinite(losses).all() and len(losses) == len(result.lrs) == len(result.raw_losses)
    at = result.lrs.index(result.suggestion)
    # on the way down: below where the sweep started and before the curve's bottom
    assert losses[at] < losses[result.skip_begin]
    assert result.suggestion <= result.lrs[int(np.argmin(losses))]
    # an SGD sweep up to 10 blows up before its end, and the last kept point shows it
    assert result.stop_reason == "diverged"
    assert losses[-1] > 4 * losses.min()


def test_training_at_the_suggestion_beats_the_sweeps_start(cancer):
    x, y = cancer
    final = {}
    suggestion = None
    for name in ("suggested", "start"):
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        if suggestion is None:
            suggestion = lr_find(model, loader_of(cancer), nn.functional.cross_entropy, opt, seed=0)
        opt.param_groups[0]["lr"] = suggestion.suggestion if name == "suggested" else 1e-7
        torch.manual_seed(1)
        for xb, yb in [b for _ in range(4) for b in loader_of(cancer)]:
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            final[name] = nn.functional.cross_entropy(model(x), y).item()
    assert final["suggested"] < 0.5 * final["start"], final


def test_model_optimizer_grads_modes_and_rng_are_restored_bit_for_bit(cancer):
    model = mlp(extras=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    loader = loader_of(cancer)
    for xb, yb in list(loader)[:3]:  # non-empty Adam state and a running BatchNorm
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    model[0].weight.grad = torch.full_like(model[0].weight, 0.5)
    model[1].bias.grad = None
    model.eval()
    model[3].train()  # a mixed mode, to see each module's flag come back
    before = snapshot(model, opt)
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    result = lr_find(model, loader, nn.functional.cross_entropy, opt, num_iter=40)
    assert len(result.lrs) > 10
    assert_same_tensors(before, snapshot(model, opt))
    assert opt.param_groups[0]["lr"] == 1e-3
    assert torch.equal(torch.rand(3), expected_draw)  # the caller's random stream goes on as if


def test_a_nan_loss_stops_the_sweep_and_stays_out_of_the_curve(cancer):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = snapshot(model, opt)

    def loss_nan_above_0_1(out, y):
        loss = nn.functional.cross_entropy(out, y)
        return loss * math.nan if opt.param_groups[0]["lr"] > 0.1 else loss

    result = lr_find(model, loader_of(cancer), loss_nan_above_0_1, opt, seed=0)
    assert result.stop_reason == "non_finite"
    assert result.non_finite_lr > 0.1 >= max(result.lrs)
    assert np.isfinite(result.losses).all() and np.isfinite(result.raw_losses).all()
    assert result.suggestion is not None and result.suggestion <= 0.1
    assert_same_tensors(before, snapshot(model, opt))


def test_a_nan_batch_mid_sweep_stops_it_at_that_batch(cancer):
    """torch-lr-finder's failure: NaN rows from batch 37 on, and the sweep ran all 60."""
    x, y = cancer
    starts = [i % 512 for i in range(0, 64 * 60, 64)]
    batches = [(x[i : i + 64].clone(), y[i : i + 64]) for i in starts]
    for xb, _ in batches[37:]:
        xb[0, 0] = math.nan
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_find(model, batches, nn.functional.cross_entropy, opt, end_lr=1e-2, num_iter=60)
    assert result.stop_reason == "non_finite" and len(result.lrs) == 37
    assert np.isfinite(result.losses).all()


def test_the_same_seed_gives_the_same_curve(cancer):
    sweep = {"end_lr": 1.0, "num_iter": 30}
    runs = []
    for _ in range(2):
        model = mlp(extras=True)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loss_fn = nn.functional.cross_entropy
        runs.append(lr_find(model, loader_of(cancer), loss_fn, opt, **sweep, seed=7))
    assert runs[0].losses == runs[1].losses and runs[0].suggestion == runs[1].suggestion
    model = mlp(extras=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    other = lr_find(model, loader_of(cancer), nn.functional.cross_entropy, opt, **sweep, seed=8)
    assert other.raw_losses != runs[0].raw_losses  # the seed drives shuffling and dropout


def test_a_short_loader_is_started_again(cancer):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    three = loader_of((cancer[0][:192], cancer[1][:192]))  # 3 batches
    result = lr_find(model, three, nn.functional.cross_entropy, opt, end_lr=1e-3, num_iter=20)
    assert result.stop_reason == "completed" and len(result.lrs) == 20
    assert result.lrs[0] == pytest.approx(1e-7) and result.lrs[-1] == pytest.approx(1e-3)


def test_batchguard_loader_and_its_sampler_position(cancer, tmp_path):
    data = load_breast_cancer(as_frame=True).frame
    path = write_parquet(tmp_path / "cancer.parquet", pa.Table.from_pandas(data))
    loader = pipeline.make_loader(path, label="target", batch_size=64, cache_dir=tmp_path)
    sampler = loader.sampler
    before = sampler.state_dict()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_find(model, loader, nn.functional.cross_entropy, opt, num_iter=30, seed=0)
    assert len(result.lrs) > 10 and result.suggestion is not None
    assert sampler.state_dict() == before


def test_per_row_losses_are_averaged(cancer):
    results = []
    for reduction in ("mean", "none"):
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)

        def loss_fn(out, y, reduction=reduction):
            return nn.functional.cross_entropy(out, y, reduction=reduction)

        results.append(lr_find(model, loader_of(cancer), loss_fn, opt, num_iter=20, seed=0))
    np.testing.assert_allclose(results[0].raw_losses, results[1].raw_losses, rtol=1e-6)


def test_valley_is_the_middle_of_the_descent_not_of_the_plateau():
    lrs = np.logspace(-7, 1, 17)
    # a noisy plateau (0-7), the descent (8-14), the blow-up (15-16)
    losses = np.array([0.70, 0.69, 0.70, 0.69, 0.68, 0.69, 0.68, 0.69, 0.66, 0.6, 0.5, 0.35, 0.2,
                       0.1, 0.05, 0.3, 2.0])  # fmt: skip
    assert valley(lrs, losses) == lrs[10]  # halfway from 7 (the last point at plateau level) to 14
    assert valley(lrs[:2], losses[:2]) is None
    assert valley(lrs, np.linspace(1, 2, 17)) is None  # the loss never falls


def test_plot_draws_and_saves(cancer, tmp_path):
    pytest.importorskip("matplotlib")
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_find(model, loader_of(cancer), nn.functional.cross_entropy, opt, num_iter=30)
    ax = result.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 0 and ax.get_xscale() == "log"


def test_plot_without_matplotlib_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    result = LRFindResult(suggestion=None, lrs=[1e-3], losses=[1.0])
    with pytest.raises(ImportError, match=r"batchguard\[plot\]"):
        result.plot()


@pytest.mark.parametrize(
    "kwargs",
    [{"start_lr": 0}, {"start_lr": 1, "end_lr": 0.1}, {"num_iter": 1}, {"smooth": 1.0},
     {"diverge": 1.0}],
)  # fmt: skip
def test_bad_arguments_are_usage_errors(cancer, kwargs):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(UsageError):
        lr_find(model, loader_of(cancer), nn.functional.cross_entropy, opt, **kwargs)


def test_an_empty_loader_is_a_usage_error():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(UsageError, match="empty loader"):
        lr_find(model, [], nn.functional.cross_entropy, opt)
