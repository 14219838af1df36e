from __future__ import annotations

import logging

import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pipeline.errors import BadBatchError, UsageError
from pipeline.guarding import guard, guarded_collate


def _clean(n=512, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.arange(n) % 3
    ids = torch.arange(n) + 1000
    return x, y, ids


class DictDataset(Dataset):
    def __init__(self, x, y, ids):
        self.x, self.y, self.ids = x, y, ids

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i], "row_id": self.ids[i]}


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))


@pytest.mark.parametrize("form", ["tuple", "dict", "tensor"])
def test_clean_batches_pass_through_unchanged(form):
    x, y, ids = _clean()
    if form == "tuple":
        ds = TensorDataset(x, y, ids)
    elif form == "dict":
        ds = DictDataset(x, y, ids)
    else:
        ds = TensorDataset(x)
    loader = DataLoader(ds, batch_size=64, shuffle=False)
    g = guard(loader)
    plain = list(loader)
    guarded = list(g)
    assert len(g) == len(loader) == len(guarded)
    unwrap = (lambda b: b[0]) if form == "tensor" else (lambda b: b)
    assert all(_same(unwrap(a), unwrap(b)) for a, b in zip(plain, guarded, strict=True))
    assert g.stats.rows_dropped == 0 and g.stats.batches == 8
    assert g.batch_size == 64  # attributes pass through


@pytest.mark.slow  # worker processes start torch (seconds each)
def test_workers_and_sampler_epoch_pass_through():
    from torch.utils.data.distributed import DistributedSampler

    x, y, ids = _clean()
    loader = DataLoader(TensorDataset(x, y, ids), batch_size=32, num_workers=2)
    got = torch.cat([b[2] for b in guard(loader)])
    assert got.tolist() == ids.tolist()
    ds = TensorDataset(x, y, ids)
    sampled = DataLoader(ds, batch_size=32, sampler=DistributedSampler(ds, 1, 0))
    guard(sampled).sampler.set_epoch(3)
    assert sampled.sampler.epoch == 3


def _dirty():
    x, y, ids = _clean()
    x[5, 1] = float("nan")
    x[70, 0] = float("inf")
    x[71, 2] = -float("inf")
    return x, y, ids


def test_drop_removes_bad_rows_and_quarantines_them(tmp_path):
    x, y, ids = _dirty()
    loader = DataLoader(TensorDataset(x, y, ids), batch_size=64)
    with guard(loader, on_bad="drop", quarantine=tmp_path / "q", row_id=2) as g:
        batches = list(g)
    kept = torch.cat([b[2] for b in batches])
    assert len(kept) == 509 and not {1005, 1070, 1071} & set(kept.tolist())
    assert len(batches) == 8  # never whole batches: the step count is unchanged
    table = pq.read_table(tmp_path / "q")
    assert sorted(table.column("_row_id").to_pylist()) == [1005, 1070, 1071]
    reasons = {
        r: [c["check"] for c in rs]
        for r, rs in zip(
            table.column("_row_id").to_pylist(), table.column("_reasons").to_pylist(), strict=True
        )
    }
    assert reasons == {1005: ["nan"], 1070: ["inf"], 1071: ["inf"]}
    assert g.stats.rows_dropped == 3


def test_raise_names_the_rows():
    x, y, ids = _dirty()
    loader = DataLoader(TensorDataset(x, y, ids), batch_size=64)
    g = guard(loader, on_bad="raise", row_id=2)
    with pytest.raises(BadBatchError, match=r"batch 0: 1 bad rows: row 1005 \(nan\)"):
        list(g)


def test_warn_keeps_rows(caplog):
    x, y, ids = _dirty()
    loader = DataLoader(TensorDataset(x, y, ids), batch_size=64)
    with caplog.at_level(logging.WARNING, logger="batchguard"):
        kept = sum(len(b[0]) for b in guard(loader, on_bad="warn", row_id=2))
    assert kept == 512 and "row 1070 (inf)" in caplog.text


def test_batch_constant_and_single_class(caplog):
    x = torch.randn(256, 3)
    x[128:, 1] = 7.0  # constant in the second half, varied in the first
    y = torch.cat([torch.arange(128) % 2, torch.zeros(128, dtype=torch.long)])
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    with caplog.at_level(logging.WARNING, logger="batchguard"):
        g = guard(loader)
        list(g)
    assert g.stats.reasons["batch_constant"] == 2
    assert g.stats.reasons["batch_single_class"] == 2
    with pytest.raises(BadBatchError, match="batch_single_class"):
        list(guard(loader, on_bad="raise"))


def test_out_of_range_against_a_profile(tmp_path, dirty_parquet):
    from pipeline.profiling import profile

    prof = profile(dirty_parquet)
    x = torch.tensor([[10.0, 0.5], [10.5, 0.4], [1e4, 0.3]])
    loader = [(x, torch.tensor([0, 1, 0]), torch.tensor([1, 2, 3]))]
    g = guard(loader, profile=prof, feature_names=["x", "y"], row_id=2, quarantine=tmp_path)
    [batch] = list(g)
    assert batch[2].tolist() == [1, 2]
    assert g.stats.reasons["out_of_range"] == 1


def test_loss_spike_quarantines_the_batch(tmp_path):
    x, y, ids = _clean()
    loader = DataLoader(TensorDataset(x, y, ids), batch_size=16)
    g = guard(loader, quarantine=tmp_path / "q", row_id=2)
    skipped = []
    for i, _ in enumerate(g):
        loss = 1.0 + 0.01 * (i % 5)
        if i == 20:
            loss = 50.0
        if i == 25:
            loss = float("nan")
        if g.observe_loss(torch.tensor(loss)):
            skipped.append(i)
    g.close()
    assert skipped == [20, 25]
    table = pq.read_table(tmp_path / "q")
    assert sorted(table.column("_row_id").to_pylist()) == list(range(1320, 1336)) + list(
        range(1400, 1416)
    )
    assert {r[0]["check"] for r in table.column("_reasons").to_pylist()} == {"loss_spike"}


@pytest.mark.slow  # worker processes start torch (seconds each)
def test_collate_form_runs_in_workers(tmp_path):
    x, y, ids = _dirty()
    ds = TensorDataset(x, y, ids)
    collate = guarded_collate(quarantine=tmp_path / "q", row_id=2)
    loader = DataLoader(ds, batch_size=64, num_workers=2, collate_fn=collate)
    kept = torch.cat([b[2] for b in loader])
    assert len(kept) == 509
    assert sorted(pq.read_table(tmp_path / "q").column("_row_id").to_pylist()) == [
        1005,
        1070,
        1071,
    ]


def test_state_dict_passes_through():
    pytest.importorskip("torchdata")
    from torchdata.stateful_dataloader import StatefulDataLoader

    x, y, ids = _clean()
    loader = StatefulDataLoader(TensorDataset(x, y, ids), batch_size=32)
    g = guard(loader)
    it = iter(g)
    first = [next(it)[2] for _ in range(3)]
    state = g.state_dict()
    rest = [b[2] for b in it]
    resumed = StatefulDataLoader(TensorDataset(x, y, ids), batch_size=32)
    g2 = guard(resumed)
    g2.load_state_dict(state)
    resumed_rest = [b[2].tolist() for b in g2]
    # the resumed guard yields exactly the batches after the first three, and together
    # with them every row once, in order
    assert resumed_rest == [b.tolist() for b in rest] and len(rest) == 512 // 32 - 3
    assert torch.cat(first).tolist() + sum(resumed_rest, []) == ids.tolist()


def test_bad_options():
    with pytest.raises(UsageError, match="on_bad should be one of"):
        guard([], on_bad="explode")
    with pytest.raises(UsageError, match="unknown guard check"):
        guard([], checks=["nonfinite", "vibes"])


def test_two_guards_in_one_directory_keep_every_part(tmp_path):
    x, y, ids = _dirty()
    for _ in range(2):
        loader = DataLoader(TensorDataset(x, y, ids), batch_size=64)
        with guard(loader, quarantine=tmp_path / "q", row_id=2) as g:
            list(g)
    assert pq.read_table(tmp_path / "q").num_rows == 6


@pytest.mark.parametrize("rows", [16, 4096])  # labels compared as a list, and through numpy
@pytest.mark.parametrize("dtype", [torch.int64, torch.float32, torch.bfloat16, torch.bool])
def test_single_class_batches_are_found_for_any_label_dtype(dtype, rows):
    from pipeline.guarding import BatchChecker

    checker = BatchChecker(on_bad="warn", checks=["batch_single_class"])
    x = torch.randn(rows, 3)
    mixed = torch.tensor([0, 1] * (rows // 2)).to(dtype)
    one = torch.ones(rows).to(dtype)
    checker((x, mixed), 0)  # two labels seen: the quick path from here on
    checker((x, mixed), 1)
    checker((x, one), 2)
    assert checker.stats.reasons["batch_single_class"] == 1
