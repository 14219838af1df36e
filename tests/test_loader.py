from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import make_loader
from pipeline.errors import UsageError
from pipeline.loader import ArrowMatrixDataset, Batch, write_feature_cache
from pipeline.source import Source
from tests.conftest import SAMPLE_DATA


@pytest.fixture(scope="module")
def credit_loader(tmp_path_factory):
    return make_loader(
        SAMPLE_DATA / "credit.parquet",
        label="default",
        batch_size=250,
        cache_dir=tmp_path_factory.mktemp("cache"),
    )


def test_credit_loader_serves_clean_scaled_stratified_batches(credit_loader, faults):
    info = credit_loader.batchguard
    assert isinstance(credit_loader, torch.utils.data.DataLoader)
    assert info.dropped_features == {"branch_code": "constant"}
    assert "branch_code" not in info.features and "default" not in info.features
    bad = {r for f in faults["credit.parquet"]["faults"] for r in f.get("rows", [])}
    seen = []
    for batch in credit_loader:
        assert isinstance(batch, Batch)
        x, y, row_id = batch
        assert x.dtype == torch.float32 and x.shape[1] == len(info.features)
        assert torch.isfinite(x).all()
        # 4% positives: 10 of every 250 rows, give or take one
        assert abs(int(y.sum()) - 10) <= 1 or len(y) < 250
        seen.append(row_id)
    ids = torch.cat(seen).numpy()
    assert len(ids) == len(set(ids)) == 20_000 - len(bad)
    assert not bad & set(ids.tolist())
    # robust scaling: every feature's median is ~0 on the clean rows
    x_all = torch.cat([b.features for b in credit_loader])
    assert torch.median(x_all, dim=0).values.abs().max() < 0.05


def test_epochs_reshuffle_and_workers_agree(credit_loader):
    sampler = credit_loader.sampler
    first = [b.row_id for b in credit_loader][0]
    sampler.set_epoch(1)
    second = [b.row_id for b in credit_loader][0]
    assert not torch.equal(first, second)
    sampler.set_epoch(0)
    again = [b.row_id for b in credit_loader][0]
    assert torch.equal(first, again)


@pytest.mark.slow  # worker processes start torch (seconds each)
def test_num_workers(tmp_path):
    loader = make_loader(
        SAMPLE_DATA / "clean.parquet",
        label="segment",
        batch_size=512,
        num_workers=2,
        cache_dir=tmp_path,
    )
    ids = torch.cat([b.row_id for b in loader])
    assert sorted(ids.tolist()) == list(range(10_000))


def test_chunked_cache_gives_the_same_rows(tmp_path):
    src = Source(SAMPLE_DATA / "clean.parquet")
    feats = ["age", "monthly_spend", "satisfaction"]
    write_feature_cache(src, feats, "segment", str(tmp_path / "one.arrow"))
    write_feature_cache(
        src,
        feats,
        "segment",
        str(tmp_path / "many.arrow"),
        max_matrix_bytes=1000,
        chunk_bytes=12 * 700,
    )
    one, many = (
        ArrowMatrixDataset(str(tmp_path / "one.arrow")),
        ArrowMatrixDataset(str(tmp_path / "many.arrow")),
    )
    assert len(many._chunks) > 1
    idx = np.random.default_rng(0).integers(0, 10_000, 300)
    a, b = one[idx], many[idx]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    expected = pq.read_table(SAMPLE_DATA / "clean.parquet").column("age").to_numpy()[idx]
    np.testing.assert_array_equal(a.features[:, 0].numpy(), expected.astype(np.float32))


def test_string_and_continuous_labels(tmp_path):
    rng = np.random.default_rng(1)
    n = 3000
    table = pa.table(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "kind": rng.choice(["cat", "dog", "eel"], n),
            "price": rng.gamma(2, size=n),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    loader = make_loader(
        path, label="kind", features=["a", "b"], batch_size=100, cache_dir=tmp_path / "c1"
    )
    assert loader.batchguard.classes == ["cat", "dog", "eel"]
    y = torch.cat([b.label for b in loader])
    assert y.dtype == torch.int64 and set(y.tolist()) == {0, 1, 2}
    reg = make_loader(
        path, label="price", features=["a", "b"], batch_size=100, cache_dir=tmp_path / "c2"
    )
    y = torch.cat([b.label for b in reg])
    assert y.dtype == torch.float32 and len(y) == n


def test_bad_arguments(tmp_path):
    with pytest.raises(UsageError, match="batch_size should be a positive integer value"):
        make_loader(SAMPLE_DATA / "clean.parquet", batch_size=0)
    with pytest.raises(UsageError, match="not numeric"):
        make_loader(SAMPLE_DATA / "clean.parquet", features=["channel"], cache_dir=tmp_path)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(20, 400),
    bad=st.lists(st.integers(0, 399), max_size=20),
    batch_size=st.integers(1, 64),
    stratify=st.booleans(),
)
def test_each_clean_row_once_per_epoch(tmp_path_factory, n, bad, batch_size, stratify):
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    for i in bad:
        if i < n:
            x[i] = np.nan
    table = pa.table({"x": x, "z": rng.normal(size=n), "y": rng.integers(0, 3, n)})
    folder = tmp_path_factory.mktemp("t")
    pq.write_table(table, folder / "t.parquet")
    loader = make_loader(
        folder / "t.parquet",
        label="y",
        batch_size=batch_size,
        stratify=stratify,
        cache_dir=folder / "c",
    )
    expected = sorted(set(range(n)) - {i for i in bad if i < n})
    for epoch in range(2):
        if stratify:
            loader.sampler.set_epoch(epoch)
        ids = torch.cat([b.row_id for b in loader]).tolist() if expected else []
        assert sorted(ids) == expected


def test_nulls_in_features_and_label_are_quarantined(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(
        pa.table({
            "a": pa.array([1.0, None, 3.0, 4.0, 5.0, 6.0]),
            "b": pa.array([1, 2, None, 4, 5, 6]),
            "y": pa.array([0, 1, 0, None, 1, 0]),
        }),
        path,
    )  # fmt: skip
    loader = make_loader(path, label="y", batch_size=2, cache_dir=tmp_path / "c")
    ids = torch.cat([b.row_id for b in loader]).tolist()
    assert sorted(ids) == [0, 4, 5]
    checks = {(f.check, f.column) for f in loader.batchguard.report.findings}
    assert {("null", "a"), ("null", "b"), ("null", "y")} <= checks


# -- one rule for feature columns; the dataset's temporary directory; the sampler --------------
def _mixed_types(path):
    """int, float, bool and decimal128 columns (features), a string label and a string column."""
    import decimal

    rng = np.random.default_rng(7)
    n = 600
    cents = rng.integers(-50_000, 50_000, n)
    table = pa.table(
        {
            "i": pa.array(rng.integers(0, 100, n), pa.int32()),
            "f": rng.normal(size=n),
            "b": rng.random(n) < 0.5,
            "d": pa.array([decimal.Decimal(int(c)).scaleb(-2) for c in cents], pa.decimal128(9, 2)),
            "y": rng.choice(["no", "yes"], n),
            "note": rng.choice(["a", "b"], n),
        }
    )
    pq.write_table(table, path)
    return table


def test_bool_and_decimal_columns_are_features_for_loader_and_scaler(tmp_path):
    from pipeline import guard
    from pipeline.scaler import RobustScaler

    path = tmp_path / "mixed.parquet"
    table = _mixed_types(path)
    loader = make_loader(path, label="y", batch_size=64, cache_dir=tmp_path / "c")
    scaler = RobustScaler().fit(path)
    assert loader.batchguard.features == list(scaler.feature_names_in_) == ["i", "f", "b", "d"]
    # Decimals as float64 (the cast both use), booleans as 0 and 1.
    raw = np.column_stack(
        [table.column(c).cast(pa.float64()).to_numpy() for c in ("i", "f", "b", "d")]
    )
    np.testing.assert_array_equal(scaler.center_, np.median(raw, axis=0))
    q25, q75 = np.percentile(raw, [25, 75], axis=0)
    np.testing.assert_array_equal(scaler.scale_, q75 - q25)
    fitted = loader.batchguard.scaler
    np.testing.assert_array_equal(fitted.center_, scaler.center_)
    np.testing.assert_array_equal(fitted.scale_, scaler.scale_)
    batches = list(guard(loader))
    ids = torch.cat([b.row_id for b in batches]).numpy()
    x = torch.cat([b.features for b in batches]).numpy()
    assert sorted(ids.tolist()) == list(range(table.num_rows))  # nothing set aside
    expected = ((raw[ids] - scaler.center_) / scaler.scale_).astype(np.float32)
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6)
    assert set(np.unique(raw[ids, 2])) == {0.0, 1.0}  # booleans as 0 and 1 before scaling


def test_the_dataset_owns_its_temporary_directory(tmp_path):
    import gc
    import pickle
    from pathlib import Path

    loader = make_loader(SAMPLE_DATA / "clean.parquet", label="segment", batch_size=512)
    folder = Path(loader.batchguard.cache_path).parent
    copy = pickle.loads(pickle.dumps(loader.dataset))  # what a worker process gets
    del copy
    gc.collect()
    assert folder.is_dir()  # a copy never removes the files
    del loader
    gc.collect()
    assert not folder.exists()


def test_the_loaders_sampler_serves_the_stratified_batches_as_arrays(credit_loader):
    import copy

    from pipeline.sampler import StratifiedBatchSampler

    sampler = credit_loader.sampler
    assert isinstance(sampler.stratified, StratifiedBatchSampler)
    sampler.set_epoch(3)
    arrays = list(sampler)
    assert all(isinstance(b, np.ndarray) and b.dtype == np.int64 for b in arrays)
    assert [b.tolist() for b in arrays] == list(sampler.stratified)
    assert len(sampler) == len(arrays) == len(credit_loader)
    assert sampler.state_dict() == sampler.stratified.state_dict()
    assert sampler.epoch == 3 and list(sampler.classes) == [0, 1]  # attributes pass through
    twin = copy.copy(sampler)  # iterates on its own, as a copied sampler did
    assert twin.stratified is not sampler.stratified
    assert [b.tolist() for b in twin] == [b.tolist() for b in arrays]
    sampler.set_epoch(0)
    assert twin.epoch == 3
