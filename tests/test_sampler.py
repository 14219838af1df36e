"""StratifiedBatchSampler: coverage, proportions, determinism, resume, replicas."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from pipeline.errors import UsageError
from pipeline.sampler import StratifiedBatchSampler


def _deviation(labels: np.ndarray, batches: list[list[int]]) -> float:
    """Largest |rows of a class in a batch - len(batch) * share of the class| over all batches."""
    classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    share = counts / len(labels)
    worst = 0.0
    for batch in batches:
        in_batch = np.bincount(codes[batch], minlength=len(classes))
        worst = max(worst, float(np.abs(in_batch - len(batch) * share).max()))
    return worst


def _all_ranks(
    labels: np.ndarray, batch_size: int, replicas: int, **kw: Any
) -> list[list[list[int]]]:
    return [
        list(StratifiedBatchSampler(labels, batch_size, num_replicas=replicas, rank=r, **kw))
        for r in range(replicas)
    ]


labels_st = st.lists(st.integers(0, 5), min_size=1, max_size=250).map(np.array)
sizes_st = st.integers(1, 40)
common = settings(max_examples=120, deadline=None)


# -- properties -----------------------------------------------------------------------------------
@common
@given(labels=labels_st, batch_size=sizes_st, drop_last=st.booleans(), seed=st.integers(0, 2**32))
def test_every_row_exactly_once(
    labels: np.ndarray, batch_size: int, drop_last: bool, seed: int
) -> None:
    sampler = StratifiedBatchSampler(labels, batch_size, drop_last=drop_last, seed=seed)
    batches = list(sampler)
    rows = [i for b in batches for i in b]
    assert len(batches) == len(sampler)
    assert len(rows) == len(set(rows))
    if drop_last:
        assert all(len(b) == batch_size for b in batches)
        assert len(rows) == len(labels) - len(labels) % batch_size
    else:
        assert sorted(rows) == list(range(len(labels)))
        assert all(len(b) == batch_size for b in batches[:-1])


@common
@given(
    labels=labels_st,
    batch_size=st.integers(1, 40),
    drop_last=st.booleans(),
    replicas=st.integers(1, 4),
    epoch=st.integers(0, 5),
)
def test_every_batch_keeps_the_class_proportions(
    labels: np.ndarray, batch_size: int, drop_last: bool, replicas: int, epoch: int
) -> None:
    for rank in range(replicas):
        sampler = StratifiedBatchSampler(
            labels, batch_size, drop_last=drop_last, num_replicas=replicas, rank=rank
        )
        sampler.set_epoch(epoch)
        assert _deviation(labels, list(sampler)) < 1


@common
@given(
    # With <= 6 classes and >= 60 rows some class has >= 10 rows: a repeated order is < 1 / 10!.
    labels=st.lists(st.integers(0, 5), min_size=60, max_size=250).map(np.array),
    batch_size=sizes_st,
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 9),
)
def test_order_is_a_function_of_seed_and_epoch(
    labels: np.ndarray, batch_size: int, seed: int, epoch: int
) -> None:
    first = StratifiedBatchSampler(labels, batch_size, seed=seed)
    second = StratifiedBatchSampler(labels.tolist(), batch_size, seed=seed)
    first.set_epoch(epoch)
    second.set_epoch(epoch)
    assert list(first) == list(second) == list(first)
    first.set_epoch(epoch + 1)
    assert list(first) != list(second)


@common
@given(
    labels=labels_st,
    batch_size=st.integers(1, 40),
    replicas=st.integers(1, 4),
    drop_last=st.booleans(),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 5),
    data=st.data(),
)
def test_resume_yields_the_uninterrupted_tail(
    labels: np.ndarray,
    batch_size: int,
    replicas: int,
    drop_last: bool,
    seed: int,
    epoch: int,
    data: st.DataObject,
) -> None:
    rank = data.draw(st.integers(0, replicas - 1))
    kw: dict[str, Any] = {
        "drop_last": drop_last,
        "seed": seed,
        "num_replicas": replicas,
        "rank": rank,
    }
    sampler = StratifiedBatchSampler(labels, batch_size, **kw)
    sampler.set_epoch(epoch)
    full = list(sampler)
    taken = data.draw(st.integers(0, len(full)))
    it = iter(sampler)
    head = [next(it) for _ in range(taken)]
    state = sampler.state_dict()
    assert state["batches_yielded"] == taken and state["epoch"] == epoch

    resumed = StratifiedBatchSampler(labels, batch_size, **{**kw, "seed": 12345})
    resumed.load_state_dict(state)
    resumed.set_epoch(epoch)  # the usual call at the top of a training loop keeps the resume point
    assert head + list(resumed) == full
    assert list(resumed) == full  # the next pass is a whole epoch again


@common
@given(labels=labels_st, batch_size=sizes_st, replicas=st.integers(1, 4), drop_last=st.booleans())
def test_ranks_are_disjoint_with_equal_batch_counts(
    labels: np.ndarray, batch_size: int, replicas: int, drop_last: bool
) -> None:
    per_rank = _all_ranks(labels, batch_size, replicas, drop_last=drop_last, seed=3)
    counts = {len(batches) for batches in per_rank}
    assert len(counts) == 1
    rows = [i for batches in per_rank for b in batches for i in b]
    assert len(rows) == len(set(rows))
    n_batches = len(labels) // batch_size + (0 if drop_last or len(labels) % batch_size == 0 else 1)
    assert counts == {n_batches // replicas}
    # Policy: only the incomplete last round of batches is left out.
    assert len(labels) - len(rows) < replicas * batch_size + (batch_size if drop_last else 0)


# -- examples --------------------------------------------------------------------------------------
IMBALANCED = np.repeat(np.arange(5), [5003, 2511, 1497, 689, 300])  # about 50/25/15/7/3 %


def test_stratified_versus_plain_shuffle() -> None:
    batch_size = 100
    rng = np.random.default_rng(0)
    plain = rng.permutation(len(IMBALANCED))
    plain_batches = [plain[i : i + batch_size].tolist() for i in range(0, len(plain), batch_size)]
    ours = list(StratifiedBatchSampler(IMBALANCED, batch_size, seed=0))
    plain_dev, our_dev = _deviation(IMBALANCED, plain_batches), _deviation(IMBALANCED, ours)
    print(f"\nmax per-batch class deviation: plain {plain_dev:.2f}, stratified {our_dev:.2f}")
    assert our_dev <= 1 < plain_dev


def test_rare_class_is_spread_over_the_epoch() -> None:
    labels = np.repeat([0, 1], [9900, 100])
    sampler = StratifiedBatchSampler(labels, 32, seed=4)
    hits = np.array([np.count_nonzero(labels[b] == 1) for b in sampler])
    expected = np.cumsum([len(b) for b in sampler]) * 100 / len(labels)
    # Kronecker spreading keeps the running count within a few rows of its expectation.
    assert np.abs(np.cumsum(hits) - expected).max() <= 3
    gaps = np.diff(np.flatnonzero(hits))
    assert hits.max() == 1 and gaps.max() <= 2 * len(hits) / 100


def test_with_a_dataloader() -> None:
    rng = np.random.default_rng(1)
    labels = rng.choice(3, size=1000, p=[0.6, 0.3, 0.1])
    dataset = TensorDataset(torch.arange(1000), torch.from_numpy(labels))
    sampler = StratifiedBatchSampler(torch.from_numpy(labels), batch_size=64, seed=2)
    loader = DataLoader(dataset, batch_sampler=sampler)
    assert len(loader) == len(sampler) == 16
    seen = []
    for index, y in loader:
        assert torch.equal(y, torch.from_numpy(labels)[index])
        share = np.bincount(y.numpy(), minlength=3) - len(y) * np.bincount(labels) / 1000
        assert np.abs(share).max() < 1
        seen.append(index)
    assert sorted(torch.cat(seen).tolist()) == list(range(1000))


def test_ten_million_labels_build_and_iterate_quickly() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, size=10_000_000, dtype=np.int64)
    labels[::997] = 10  # a rare class
    start = time.perf_counter()
    sampler = StratifiedBatchSampler(labels, 4096, seed=0)
    built = time.perf_counter() - start
    batches = [b for _, b in zip(range(5), sampler, strict=False)]
    total = time.perf_counter() - start
    print(f"\n10M labels: built in {built:.2f}s, first 5 batches after {total:.2f}s")
    assert sampler._by_class.dtype == np.int32 and sampler._codes.dtype == np.int16
    assert len(sampler) == -(-10_000_000 // 4096)
    counts = np.bincount(labels, minlength=11)
    for b in batches:
        assert np.abs(np.bincount(labels[b], minlength=11) - 4096 * counts / len(labels)).max() < 1


def test_continuous_labels_with_quantile_bins() -> None:
    rng = np.random.default_rng(3)
    target = rng.lognormal(size=5000)
    sampler = StratifiedBatchSampler(target, 50, bins=5, seed=1)
    bin_of = np.searchsorted(np.quantile(target, [0.2, 0.4, 0.6, 0.8]), target, side="right")
    assert sampler.class_counts.tolist() == np.bincount(bin_of).tolist() == [1000] * 5
    for batch in sampler:
        assert np.bincount(bin_of[batch], minlength=5).tolist() == [10] * 5


def test_ties_in_binned_labels_drop_empty_bins() -> None:
    target = np.array([0.0] * 80 + [1.0, 2.0, 3.0, 4.0] * 5)
    sampler = StratifiedBatchSampler(target, 10, bins=4)
    assert len(sampler.classes) < 4 and sampler.class_counts.sum() == 100
    assert sorted(i for b in sampler for i in b) == list(range(100))


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["cat", "dog", "cat", "emu"] * 25),
        np.array([True, False, False, False] * 25),
        np.array([0.5, 1.5, 0.5, 0.5] * 25),
        np.array([10**12, -7, 10**12, 3] * 25),
        torch.tensor([2, 1, 1, 1] * 25),
    ],
    ids=["str", "bool", "float", "wide-int", "tensor"],
)
def test_label_types(labels: object) -> None:
    sampler = StratifiedBatchSampler(labels, 8)
    arr = labels.numpy() if isinstance(labels, torch.Tensor) else labels
    assert sorted(i for b in sampler for i in b) == list(range(100))
    assert _deviation(np.asarray(arr), list(sampler)) < 1
    assert sorted(sampler.labels_of(next(iter(sampler))).tolist()) == sorted(
        np.asarray(arr)[next(iter(sampler))].tolist()
    )


def test_len_and_remainder_policy_across_replicas() -> None:
    labels = np.arange(103) % 3  # 103 rows, batches of 10: 10 full + 1 short
    lengths = [len(StratifiedBatchSampler(labels, 10, num_replicas=w, rank=0)) for w in range(1, 5)]
    assert lengths == [11, 5, 3, 2]  # 11 batches, the incomplete last round dropped
    assert len(StratifiedBatchSampler(labels, 10, drop_last=True, num_replicas=3, rank=2)) == 3


def test_defaults_without_a_process_group() -> None:
    sampler = StratifiedBatchSampler([0, 1, 0, 1], 2)
    assert (sampler.num_replicas, sampler.rank) == (1, 0)


def test_empty_labels_give_no_batches() -> None:
    sampler = StratifiedBatchSampler(np.array([], dtype=np.int64), 4)
    assert len(sampler) == 0 and list(sampler) == []


def test_set_epoch_to_another_epoch_drops_the_resume_point() -> None:
    sampler = StratifiedBatchSampler(np.arange(40) % 4, 4, seed=5)
    it = iter(sampler)
    next(it)
    resumed = StratifiedBatchSampler(np.arange(40) % 4, 4)
    resumed.load_state_dict(sampler.state_dict())
    resumed.set_epoch(1)
    assert len(list(resumed)) == 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size should be a positive integer value, but got batch_size=0"),
        ({"batch_size": True}, "positive integer value, but got batch_size=True"),
        ({"batch_size": 2.0}, "positive integer value, but got batch_size=2.0"),
        ({"drop_last": 1}, "drop_last should be a boolean value, but got drop_last=1"),
        ({"seed": -1}, "seed should be a non-negative integer, but got seed=-1"),
        ({"num_replicas": 0}, "num_replicas should be a positive integer value, but got num_repl"),
        ({"num_replicas": 2, "rank": 2}, r"Invalid rank 2, rank should be in the interval \[0, 1"),
        ({"rank": -1}, r"Invalid rank -1, rank should be in the interval \[0, 0\]"),
        ({"bins": 0}, "bins should be a positive integer value, but got bins=0"),
        ({"labels": [[0, 1], [1, 0]]}, r"labels should be a 1-D array .* got shape \(2, 2\)"),
        ({"labels": [0.0, np.nan, 1.0]}, "labels contain NaN \\(first at row 1\\)"),
        ({"labels": ["a", "b"], "bins": 2}, "labels should be numeric when bins is given"),
    ],
)
def test_parameter_errors(kwargs: dict, message: str) -> None:
    args = {"labels": [0, 1, 0, 1], "batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        StratifiedBatchSampler(args.pop("labels"), args.pop("batch_size"), **args)


def test_load_state_dict_rejects_another_layout() -> None:
    state = StratifiedBatchSampler(np.arange(40) % 4, 4).state_dict()
    with pytest.raises(ValueError, match="saved with batch_size=4 but this sampler has batch_size"):
        StratifiedBatchSampler(np.arange(40) % 4, 5).load_state_dict(state)
    with pytest.raises(ValueError, match="lacks"):
        StratifiedBatchSampler(np.arange(40) % 4, 4).load_state_dict({"epoch": 0})


def test_parameter_errors_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="batch_size should be a positive integer"):
        StratifiedBatchSampler([0, 1], 0)
    sampler = StratifiedBatchSampler([0, 1, 0, 1], 2)
    with pytest.raises(UsageError, match="epoch should be a non-negative integer"):
        sampler.set_epoch(-1)
    with pytest.raises(UsageError, match="lacks"):
        sampler.load_state_dict({})


def test_iter_arrays_gives_the_batches_of_iter_as_int64_arrays() -> None:
    labels = np.arange(103) % 3
    lists, arrays = (StratifiedBatchSampler(labels, 10, seed=5) for _ in range(2))
    for epoch in (0, 1):
        lists.set_epoch(epoch)
        arrays.set_epoch(epoch)
        got = list(arrays.iter_arrays())
        assert all(b.dtype == np.int64 and b.ndim == 1 for b in got)
        assert [b.tolist() for b in got] == list(lists)
    # The same state as iter(): the epoch starts at the call, and batches are counted.
    it = arrays.iter_arrays()
    assert arrays.state_dict()["batches_yielded"] == 0
    first = [next(it) for _ in range(4)]
    state = arrays.state_dict()
    assert state == {**lists.state_dict(), "batches_yielded": 4}
    resumed = StratifiedBatchSampler(labels, 10)
    resumed.load_state_dict(state)
    rest = list(resumed.iter_arrays())
    assert [b.tolist() for b in first + rest] == list(lists)
