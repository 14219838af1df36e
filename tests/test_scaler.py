"""RobustScaler: scikit-learn parity, exact streamed quantiles, findings, torch, persistence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sklearn.preprocessing as skp
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

import pipeline._quantiles as quantiles_module
from pipeline._quantiles import exact_quantiles
from pipeline.errors import UsageError
from pipeline.scaler import RobustScaler, _source_reader
from pipeline.source import Source

torch = pytest.importorskip("torch")


def _data(n_rows: int, n_cols: int, seed: int) -> np.ndarray:
    """Features with NaN, a constant column, outliers and heavy ties."""
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=3.0, scale=2.0, size=(n_rows, n_cols))
    X[rng.random(X.shape) < 0.1] = np.nan
    if n_cols > 1:
        X[:, 1] = 7.0  # constant: zero IQR
    if n_cols > 2:
        X[:, 2] = np.round(X[:, 2])  # ties
        X[rng.random(n_rows) < 0.02, 2] = 1e9  # outliers
    if n_cols > 3:
        X[:, 3] = rng.exponential(size=n_rows) * 1e-4
    return X


def _sk_and_ours(X: np.ndarray, **params: Any) -> tuple[skp.RobustScaler, RobustScaler]:
    sk_params = {k: v for k, v in params.items() if k != "clip"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns, as in sklearn
        return skp.RobustScaler(**sk_params).fit(X), RobustScaler(**params).fit(X)


def _close(actual: Any, expected: Any, rtol: float, atol: float = 0.0) -> None:
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


# -- parity with scikit-learn ---------------------------------------------------------------------
# unit_variance with (0, 100) is rejected (infinite normal quantiles): see the parameter tests.
_RANGES = [
    (quantile_range, unit_variance)
    for quantile_range in [(25.0, 75.0), (10.0, 90.0), (0.0, 100.0), (5.0, 50.0)]
    for unit_variance in (False, True)
    if not (unit_variance and quantile_range == (0.0, 100.0))
]


@pytest.mark.parametrize("shape", [(1, 3), (2, 2), (7, 4), (50, 3), (201, 5), (1000, 4)])
@pytest.mark.parametrize(("quantile_range", "unit_variance"), _RANGES)
def test_matches_sklearn(
    shape: tuple[int, int], quantile_range: tuple[float, float], unit_variance: bool
) -> None:
    X = _data(*shape, seed=shape[0])
    sk, ours = _sk_and_ours(X, quantile_range=quantile_range, unit_variance=unit_variance)
    _close(ours.center_, sk.center_, 1e-6)
    _close(ours.scale_, sk.scale_, 1e-6)
    _close(ours.transform(X), sk.transform(X), 1e-6)
    _close(ours.inverse_transform(ours.transform(X)), X, 1e-6, atol=1e-9)


@pytest.mark.parametrize("with_centering", [True, False])
@pytest.mark.parametrize("with_scaling", [True, False])
def test_matches_sklearn_without_centering_or_scaling(
    with_centering: bool, with_scaling: bool
) -> None:
    X = _data(300, 4, seed=1)
    sk, ours = _sk_and_ours(X, with_centering=with_centering, with_scaling=with_scaling)
    assert (ours.center_ is None) == (sk.center_ is None)
    assert (ours.scale_ is None) == (sk.scale_ is None)
    _close(ours.transform(X), sk.transform(X), 1e-6)
    if not with_scaling:
        assert ours.findings_ == [] and ours.zero_iqr_features_.size == 0


def test_float32_stays_float32_like_sklearn() -> None:
    X = _data(100, 3, seed=2).astype(np.float32)
    sk, ours = _sk_and_ours(X)
    assert ours.transform(X).dtype == sk.transform(X).dtype == np.float32
    _close(ours.transform(X), sk.transform(X), 1e-6)


def test_dataframe_keeps_feature_names() -> None:
    df = pd.DataFrame(_data(60, 3, seed=3), columns=["age", "flat", "fare"])
    ours = RobustScaler().fit(df)
    assert list(ours.feature_names_in_) == ["age", "flat", "fare"]
    assert list(ours.get_feature_names_out()) == ["age", "flat", "fare"]
    assert [f.column for f in ours.findings_] == ["flat"]
    _close(ours.transform(df), skp.RobustScaler().fit(df).transform(df), 1e-6)


@parametrize_with_checks(
    [RobustScaler(), RobustScaler(with_centering=False, unit_variance=True, clip=3.0)]
)
def test_sklearn_estimator_checks(estimator: RobustScaler, check: Any) -> None:
    check(estimator)


# -- zero IQR, clipping, errors -------------------------------------------------------------------
def test_zero_iqr_column_gets_scale_one_and_one_finding() -> None:
    rng = np.random.default_rng(4)
    X = np.column_stack([rng.normal(size=200), np.where(rng.random(200) < 0.9, 5.0, 9.0)])
    scaler = RobustScaler().fit(X)
    assert scaler.scale_ is not None and scaler.scale_[1] == 1.0
    assert scaler.zero_iqr_features_.tolist() == [1]
    [finding] = scaler.findings_
    assert (finding.check, finding.column, finding.severity) == ("zero_iqr", "x1", "warning")
    assert finding.count == 1 and finding.fraction == 0.0
    assert "'x1'" in finding.message and "q25 = q75 = 5" in finding.message
    assert "scale was set to 1" in finding.message
    assert finding.to_dict()["check"] == "zero_iqr"


def test_clip_bounds_values_and_keeps_nan() -> None:
    X = np.array([[0.0], [1.0], [2.0], [3.0], [100.0], [-100.0], [np.nan]])
    plain = RobustScaler().fit(X).transform(X)
    clipped = RobustScaler(clip=2.5).fit(X).transform(X)
    _close(clipped, np.clip(plain, -2.5, 2.5), 0)
    assert np.isnan(clipped[-1, 0]) and np.nanmax(np.abs(clipped)) == 2.5


def test_nan_ignored_in_fit_and_kept_in_transform() -> None:
    X = np.array([[1.0, np.nan], [2.0, 4.0], [np.nan, 6.0], [4.0, 8.0]])
    scaler = RobustScaler().fit(X)
    assert scaler.center_.tolist() == [2.0, 6.0]
    out = scaler.transform(X)
    assert np.isnan(out[0, 1]) and np.isnan(out[2, 0]) and not np.isnan(out[1]).any()


def test_inf_is_rejected_with_column_and_advice() -> None:
    X = np.array([[1.0, 2.0], [3.0, np.inf], [np.nan, 1.0]])
    with pytest.raises(ValueError, match=r"column 'x1' contains \+inf or -inf.*validate"):
        RobustScaler().fit(X)
    scaler = RobustScaler().fit(X[[0, 2]])
    with pytest.raises(ValueError, match="'x1'"):
        scaler.transform(X)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"quantile_range": (80, 20)}, "quantile_range should be a pair"),
        ({"quantile_range": (-1, 50)}, "quantile_range should be a pair"),
        ({"quantile_range": (25,)}, "quantile_range should be a pair"),
        ({"quantile_range": (0, 100), "unit_variance": True}, "unit_variance=True needs 0 <"),
        ({"clip": 0}, "clip should be None or a positive number, but got clip=0"),
        ({"clip": "3"}, "clip should be None or a positive number"),
        ({"with_centering": "yes"}, "with_centering should be True or False"),
    ],
)
def test_bad_parameters_raise_at_fit(params: dict, message: str) -> None:
    scaler = RobustScaler(**params)  # __init__ only stores them
    with pytest.raises(UsageError, match=message):
        scaler.fit(np.ones((3, 1)))


def test_transform_requires_fit() -> None:
    with pytest.raises(NotFittedError):
        RobustScaler().transform(np.ones((2, 2)))


def test_columns_keyword_is_for_sources_only() -> None:
    with pytest.raises(UsageError, match="columns= applies to a dataset source"):
        RobustScaler().fit(np.ones((3, 2)), columns=["a"])


# -- streamed, exact fitting from a source --------------------------------------------------------
@pytest.fixture(scope="module")
def table() -> pa.Table:
    rng = np.random.default_rng(5)
    n = 1500
    data = _data(n, 4, seed=5)
    nullable = pa.array(
        rng.integers(-50, 50, n), mask=rng.random(n) < 0.1, type=pa.int64()
    )  # nulls count as NaN
    return pa.table(
        {
            "normal": data[:, 0],
            "constant": data[:, 1],
            "ties_outliers": data[:, 2],
            "tiny": data[:, 3],
            "f32": rng.standard_t(2, size=n).astype(np.float32),
            "ints": nullable,
            "name": pa.array([f"r{i}" for i in range(n)]),  # not numeric: left out
            "all_nan": np.full(n, np.nan),
        }
    )


@pytest.fixture(scope="module")
def parquet_path(table: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("scaler") / "train.parquet")
    pq.write_table(table, path, row_group_size=400)
    return path


def _in_memory(table: pa.Table, columns: list[str]) -> np.ndarray:
    return np.column_stack(
        [table.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False) for c in columns]
    )


@pytest.mark.parametrize("batch_size", [1, 7, 1000, 100_000])
@pytest.mark.parametrize("params", [{}, {"quantile_range": (5.0, 95.0), "unit_variance": True}])
def test_source_fit_equals_in_memory_sklearn(
    parquet_path: str, table: pa.Table, batch_size: int, params: dict
) -> None:
    numeric = ["normal", "constant", "ties_outliers", "tiny", "f32", "ints", "all_nan"]
    with pytest.warns(RuntimeWarning, match="'all_nan' has no non-NaN values"):
        ours = RobustScaler(**params).fit(Source(parquet_path, batch_size=batch_size))
    assert list(ours.feature_names_in_) == numeric and ours.n_features_in_ == len(numeric)
    sk, _ = _sk_and_ours(_in_memory(table, numeric), **params)
    _close(ours.center_, sk.center_, 1e-9)
    _close(ours.scale_, sk.scale_, 1e-9)
    assert [f.column for f in ours.findings_] == ["constant"]
    frame = table.select(numeric).to_pandas()
    _close(ours.transform(frame), sk.transform(frame.to_numpy(np.float64)), 1e-9)


def test_source_fit_by_path_and_columns(parquet_path: str, table: pa.Table) -> None:
    ours = RobustScaler().fit(parquet_path, columns=["tiny", "normal"])
    sk, _ = _sk_and_ours(_in_memory(table, ["tiny", "normal"]))
    assert list(ours.feature_names_in_) == ["tiny", "normal"]
    _close(ours.center_, sk.center_, 1e-9)
    _close(ours.scale_, sk.scale_, 1e-9)


@pytest.mark.parametrize("budget", [0, 5])
def test_source_refinement_passes_stay_exact(
    parquet_path: str, table: pa.Table, budget: int
) -> None:
    # A tiny budget forces every bin to be narrowed, down to single keys.
    columns = ["normal", "ties_outliers", "ints"]
    read = _source_reader(Source(parquet_path, batch_size=333), columns)
    med, pct, counts = exact_quantiles(read, columns, [25.0, 75.0], budget=budget)
    X = _in_memory(table, columns)
    np.testing.assert_array_equal(med, np.nanmedian(X, axis=0))
    np.testing.assert_array_equal(pct, np.nanpercentile(X, [25.0, 75.0], axis=0))
    assert counts.tolist() == np.sum(~np.isnan(X), axis=0).tolist()


def test_source_fit_streams(parquet_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the whole table was read")

    monkeypatch.setattr(pq, "read_table", forbidden)
    monkeypatch.setattr(pq.ParquetFile, "read", forbidden)
    seen: list[int] = []
    original = Source.iter_batches

    def spy(self: Source, **kwargs: Any) -> Iterator[pa.RecordBatch]:
        for batch in original(self, **kwargs):
            seen.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(Source, "iter_batches", spy)
    RobustScaler().fit(Source(parquet_path, batch_size=100), columns=["normal"])
    # Batch by batch, and (data in no particular order) in one single pass.
    assert max(seen) <= 100 and sum(seen) == 1500


def test_decimal_bool_and_dictionary_columns_are_scaled_as_float64(tmp_path: Path) -> None:
    import decimal

    rng = np.random.default_rng(8)
    n = 999
    cents = rng.integers(-10_000, 10_000, n)
    table = pa.table(
        {
            "d": pa.array([decimal.Decimal(int(c)).scaleb(-2) for c in cents], pa.decimal128(7, 2)),
            "b": pa.array(rng.random(n) < 0.3, mask=rng.random(n) < 0.1),  # nulls count as NaN
            "k": pa.array(rng.integers(0, 9, n)).dictionary_encode(),
            "s": pa.array(rng.choice(["x", "y"], n)),  # not a feature
        }
    )
    path = str(tmp_path / "types.parquet")
    pq.write_table(table, path)
    ours = RobustScaler(quantile_range=(10.0, 90.0)).fit(path)
    assert list(ours.feature_names_in_) == ["d", "b", "k"]
    X = np.column_stack(
        [table.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False) for c in "dbk"]
    )
    np.testing.assert_array_equal(ours.center_, np.nanmedian(X, axis=0))
    q = np.nanpercentile(X, [10.0, 90.0], axis=0)
    np.testing.assert_array_equal(ours.scale_, q[1] - q[0])


def test_source_errors(tmp_path: Path, parquet_path: str) -> None:
    path = str(tmp_path / "inf.parquet")
    pq.write_table(pa.table({"ok": [1.0, 2.0, 3.0], "bad": [1.0, -np.inf, 2.0]}), path)
    with pytest.raises(ValueError, match=r"inf.parquet: column 'bad' contains \+inf or -inf"):
        RobustScaler().fit(path)
    with pytest.raises(UsageError, match="column 'name' is string, not numeric"):
        RobustScaler().fit(parquet_path, columns=["name"])
    with pytest.raises(UsageError, match="no column named 'nope'"):
        RobustScaler().fit(parquet_path, columns=["nope"])


_PERCENTILES = [0.0, 5.0, 25.0, 50.0, 75.0, 99.0, 100.0]


def test_float32_columns_stay_float32_and_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(15)
    n = 20_000
    f32 = (rng.normal(1e4, 1e-1, n)).astype(np.float32)  # few distinct float32 values
    f32[rng.random(n) < 0.05] = np.nan
    table = pa.table(
        {
            "f32": f32,
            "f32_nulls": pa.array(rng.normal(size=n).astype(np.float32), mask=rng.random(n) < 0.1),
            "f64": rng.normal(size=n),
            "i64": rng.integers(-5, 5, n),
        }
    )
    path = str(tmp_path / "f32.parquet")
    pq.write_table(table, path, row_group_size=3_000)
    names = ["f32", "f32_nulls", "f64", "i64"]
    dtypes: dict[int, set[str]] = {}
    feed = quantiles_module._BracketPass._feed

    def spy(self: Any, j: int, x: np.ndarray) -> None:
        dtypes.setdefault(j, set()).add(x.dtype.name)
        feed(self, j, x)

    monkeypatch.setattr(quantiles_module._BracketPass, "_feed", spy)
    read = _source_reader(Source(path, batch_size=1_000), names)
    med, pct, _ = exact_quantiles(read, names, _PERCENTILES, guess_after=512)
    assert dtypes == {0: {"float32"}, 1: {"float32"}, 2: {"float64"}, 3: {"float64"}}
    X = _in_memory(table, names)  # as float64
    np.testing.assert_array_equal(med, np.nanmedian(X, axis=0))
    np.testing.assert_array_equal(pct, np.nanpercentile(X, _PERCENTILES, axis=0))
    ours = RobustScaler(quantile_range=(10.0, 90.0)).fit(path, columns=names)
    np.testing.assert_array_equal(ours.center_, np.nanmedian(X, axis=0))
    q = np.nanpercentile(X, [10.0, 90.0], axis=0)
    np.testing.assert_array_equal(ours.scale_, q[1] - q[0])


# -- torch -----------------------------------------------------------------------------------------
def test_to_torch_matches_numpy_transform() -> None:
    X = _data(500, 4, seed=6)
    scaler = RobustScaler(clip=4.0).fit(X)
    module = scaler.to_torch()
    assert set(dict(module.named_buffers())) == {"center", "scale"}
    assert module.center.dtype == module.scale.dtype == torch.float32
    out = module(torch.from_numpy(X.astype(np.float32))).numpy()
    np.testing.assert_allclose(out, scaler.transform(X), rtol=1e-5, atol=1e-5, equal_nan=True)
    assert module.to(torch.float64).center.dtype == torch.float64  # buffers follow .to()


def test_to_torch_without_centering_or_scaling() -> None:
    X = _data(50, 2, seed=7)
    module = RobustScaler(with_centering=False, with_scaling=False).fit(X).to_torch()
    x = torch.tensor([[1.5, -2.0]])
    assert torch.equal(module(x), x)


def test_torch_is_imported_lazily() -> None:
    code = "import sys, pipeline.scaler; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    from pipeline.scaler import TorchRobustScaler

    assert isinstance(RobustScaler().fit(np.eye(3)).to_torch(), TorchRobustScaler)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_to_torch_on_gpu() -> None:
    X = _data(256, 4, seed=8)
    scaler = RobustScaler(clip=5.0).fit(X)
    module = scaler.to_torch().to("cuda")
    assert module.center.is_cuda and module.scale.is_cuda
    out = module(torch.from_numpy(X.astype(np.float32)).cuda()).cpu().numpy()
    np.testing.assert_allclose(out, scaler.transform(X), rtol=1e-5, atol=1e-5, equal_nan=True)


# -- persistence -----------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path: Path) -> None:
    df = pd.DataFrame(_data(120, 3, seed=9), columns=["a", "b", "c"])
    df["d"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scaler = RobustScaler(quantile_range=(10.0, 90.0), clip=6.0).fit(df)
    path = tmp_path / "scaler.json"
    scaler.save(path)
    assert json.loads(path.read_text())["format"] == "batchguard.RobustScaler"
    assert os.listdir(tmp_path) == ["scaler.json"]  # no temporary file left behind
    loaded = RobustScaler.load(path)
    assert loaded.get_params() == scaler.get_params()
    np.testing.assert_array_equal(loaded.center_, scaler.center_)
    np.testing.assert_array_equal(loaded.scale_, scaler.scale_)
    assert list(loaded.feature_names_in_) == ["a", "b", "c", "d"]
    assert loaded.findings_ == scaler.findings_
    assert loaded.zero_iqr_features_.tolist() == scaler.zero_iqr_features_.tolist() == [1]
    np.testing.assert_array_equal(loaded.transform(df), scaler.transform(df))


def test_load_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(UsageError, match="not a saved RobustScaler"):
        RobustScaler.load(path)
    with pytest.raises(UsageError, match="cannot read a saved RobustScaler"):
        RobustScaler.load(tmp_path / "missing.json")
