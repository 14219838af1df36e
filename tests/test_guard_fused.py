"""The guard's checks inside a batchguard loader's fetch agree with the exact checks.

``guard(loader)`` on a loader built by batchguard decides most batches where the
dataset gathers them (:class:`pipeline.guarding._FusedCheck`); every batch it does
not vouch for goes through :class:`~pipeline.guarding.BatchChecker`. These tests
compare that with the checker alone on the same batches: the same batches served,
the same rows dropped, the same reasons counted.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline
from pipeline import guard

torch = pytest.importorskip("torch")


def _table(rows: int, seed: int, *, blocks: int = 0) -> pa.Table:
    """Two measurements, a 0/1 flag and a label; ``blocks``: the flag and label in runs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(10.0, 2.0, rows)
    w = rng.gamma(2.0, 3.0, rows)
    flag = rng.integers(0, 2, rows)
    label = rng.integers(0, 3, rows)
    if blocks:  # long runs: batches served in order hold one flag value and one label
        flag = (np.arange(rows) // blocks) % 2
        label = (np.arange(rows) // blocks) % 3
    return pa.table({"x": x, "w": w, "flag": flag.astype(np.int64), "label": label})


def _served(g) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(b.row_id.numpy().copy(), b.features.numpy().copy()) for b in g]


def _compare(make) -> tuple[pipeline.guarding.GuardStats, int, int]:
    """Iterate two loaders from ``make()`` (the same batches), guarded fused and exact.

    Asserts they serve the same batches with the same stats. Returns the stats, the
    number of batches and how many of them the fetch vouched for.
    """
    loader = make()
    fused = guard(loader)
    assert fused._fused is not None, "a batchguard loader in this process is checked in its fetch"
    vouched = 0
    passed = fused.checker.passed

    def counting(batch):
        nonlocal vouched
        vouched += 1
        return passed(batch)

    fused.checker.passed = counting
    exact = guard(make())
    exact._fused = None
    a, b = _served(fused), _served(exact)
    assert len(a) == len(b)
    for (ids_a, x_a), (ids_b, x_b) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ids_a, ids_b)
        np.testing.assert_array_equal(x_a, x_b)
    assert fused.stats == exact.stats
    assert loader.dataset.batch_hook is None, "the hook is removed when iteration ends"
    return fused.stats, len(a), vouched


def test_clean_shuffled_batches_pass_in_the_fetch(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(_table(3000, 0), path)
    prep = pipeline.fit(path, label="label", scaler=None)
    stats, batches, vouched = _compare(lambda: prep.loader(path, batch_size=64))
    assert stats.rows == 3000 and stats.rows_dropped == 0
    assert not stats.reasons
    assert vouched == batches  # every clean batch was decided in the fetch


def test_out_of_range_rows_of_other_data_are_dropped_alike(tmp_path):
    train, other = tmp_path / "train.parquet", tmp_path / "other.parquet"
    pq.write_table(_table(3000, 1), train)
    t = _table(1000, 2)
    x = t.column("x").to_numpy().copy()
    x[[5, 300, 301, 777]] = [1e6, -1e6, 5e5, 2e6]  # far beyond the training fences: kept
    pq.write_table(t.set_column(0, "x", pa.array(x)), other)
    prep = pipeline.fit(train, label="label", scaler=None)
    stats, batches, vouched = _compare(lambda: prep.loader(other, batch_size=100))
    assert stats.reasons["out_of_range"] == 4 and stats.rows_dropped == 4
    assert batches - 4 <= vouched < batches  # only batches holding a far row are re-checked


def test_constant_and_single_class_batches_are_reported_alike(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(_table(2000, 3, blocks=400), path)
    prep = pipeline.fit(path, label="label", scaler=None)
    stats, batches, vouched = _compare(
        lambda: prep.loader(path, batch_size=100, shuffle=False, stratify=False)
    )
    assert vouched == 0
    assert stats.reasons["batch_single_class"] == batches  # every batch one label
    assert stats.reasons["batch_constant"] == batches  # and one flag value


def test_a_loader_with_workers_keeps_the_exact_path(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(_table(500, 4), path)
    prep = pipeline.fit(path, label="label")
    assert guard(prep.loader(path, num_workers=1))._fused is None
    assert guard(prep.loader(path, pin_memory=True))._fused is None
    assert guard(prep.loader(path), label=1)._fused is None  # the user says where things sit


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    train = tmp_path_factory.mktemp("fitted") / "train.parquet"
    pq.write_table(_table(400, 5), train)
    return pipeline.fit(train, label="label", scaler=None)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    batch_size=st.sampled_from([2, 7, 8, 33, 256]),
    blocks=st.sampled_from([0, 3, 50]),
    shuffle=st.booleans(),
    far=st.lists(st.integers(0, 399), max_size=6),
)
def test_fused_and_exact_agree_on_any_batching(
    fitted, tmp_path_factory, seed, batch_size, blocks, shuffle, far
):
    other = tmp_path_factory.mktemp("fused") / "other.parquet"
    t = _table(400, seed, blocks=blocks)
    x = t.column("x").to_numpy().copy()
    x[far] = 1e7
    pq.write_table(t.set_column(0, "x", pa.array(x)), other)
    stats, _, _ = _compare(
        lambda: fitted.loader(other, batch_size=batch_size, shuffle=shuffle, stratify=False)
    )
    assert stats.reasons["out_of_range"] == len(set(far))


def test_a_regression_target_learns_its_labels_as_the_exact_path_does(tmp_path):
    # No classes to take from the loader: a constant-target batch is judged on the
    # target values seen before it, which batches passed in the fetch must add too.
    path = tmp_path / "reg.parquet"
    t = _table(2000, 7)
    target = np.random.default_rng(7).normal(0, 1, 2000)
    target[1000:1100] = 3.0  # one batch in order holds one target value
    pq.write_table(t.drop_columns(["label"]).append_column("y", pa.array(target)), path)
    prep = pipeline.fit(path, label="y", scaler=None)
    stats, _, vouched = _compare(
        lambda: prep.loader(path, batch_size=100, shuffle=False, stratify=False)
    )
    assert vouched > 0
    assert stats.reasons["batch_single_class"] == 1
