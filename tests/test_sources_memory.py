"""In-memory datasets: the same findings, row ids and profile as the same rows in a file.

pandas and polars DataFrames, pyarrow Tables, RecordBatches and RecordBatchReaders,
and Hugging Face ``datasets.Dataset`` go to ``validate``, ``profile``, ``fit`` and
``make_loader`` as they are; row ids are row positions.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline
from pipeline.errors import SourceError
from pipeline.source import Source


def _table(n: int = 3000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[[5, 77, 1500]] = np.nan
    x[100] = 1e6
    z = rng.normal(size=n)
    z[[9, 2999]] = np.inf
    return pa.table({"x": x, "z": z, "k": rng.integers(0, 50, n), "y": rng.integers(0, 2, n)})


def summary(report: pipeline.Report) -> dict:
    """What must not depend on where the rows came from."""
    out = report.to_dict()
    return {
        "rows": out["rows"],
        "rows_quarantined": out["rows_quarantined"],
        "findings": [
            (f["check"], f["column"], f["count"], f["sample_rows"]) for f in out["findings"]
        ],
        "columns": out["columns"],
        "label": out["label"],
    }


def same(a, b) -> bool:
    """Equal, floats up to rounding (moments merged over other batch boundaries differ in ulps)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=1e-12) or (a != a and b != b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def stats(profile) -> dict:
    """A profile's statistics (its serialised state holds the same rows in other batches)."""
    out = profile.to_dict()
    return {"rows": out["rows"], "columns": out["columns"]}


def quarantined_ids(path) -> list[int]:
    return pq.read_table(path, columns=["_row_id"]).column("_row_id").to_pylist()


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return _table()


@pytest.fixture(scope="module")
def on_disk(table, tmp_path_factory):
    path = tmp_path_factory.mktemp("disk") / "t.parquet"
    pq.write_table(table, path, row_group_size=700)
    return path


@pytest.fixture(scope="module")
def expected(on_disk, tmp_path_factory):
    out = tmp_path_factory.mktemp("expected") / "q.parquet"
    report = pipeline.validate(on_disk, label="y", quarantine=out)
    return summary(report), quarantined_ids(out), stats(pipeline.profile(on_disk))


def _pandas(t):
    return t.to_pandas()


def _polars(t):
    pl = pytest.importorskip("polars")
    return pl.from_arrow(t)


def _hf(t):
    datasets = pytest.importorskip("datasets")
    return datasets.Dataset(t)


KINDS = {
    "pyarrow.Table": lambda t: t,
    "pyarrow.Table of many chunks": lambda t: pa.concat_tables(
        [t.slice(i, 311) for i in range(0, t.num_rows, 311)]
    ),
    "pyarrow.RecordBatch": lambda t: t.combine_chunks().to_batches()[0],
    "pyarrow.RecordBatchReader": lambda t: t.to_reader(max_chunksize=401),
    "pandas.DataFrame": _pandas,
    "polars.DataFrame": _polars,
    "datasets.Dataset": _hf,
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_findings_row_ids_and_profile_equal_the_files(kind, table, expected, tmp_path):
    report_expected, ids_expected, profile_expected = expected
    out = tmp_path / "q.parquet"
    report = pipeline.validate(KINDS[kind](table), label="y", quarantine=out, batch_size=512)
    assert same(summary(report), report_expected)
    assert quarantined_ids(out) == ids_expected
    assert report.dataset.startswith("<") and report.dataset.endswith(">")
    assert same(stats(pipeline.profile(KINDS[kind](table), batch_size=999)), profile_expected)


@pytest.mark.parametrize("kind", ["pandas.DataFrame", "polars.DataFrame", "pyarrow.Table"])
def test_fit_and_make_loader_take_a_frame(kind, table, on_disk):
    from_file = pipeline.fit(on_disk, label="y")
    prep = pipeline.fit(KINDS[kind](table), label="y")
    assert prep.features == from_file.features
    np.testing.assert_array_equal(prep.scaler.center_, from_file.scaler.center_)
    np.testing.assert_array_equal(prep.scaler.scale_, from_file.scaler.scale_)
    frame = KINDS[kind](table)
    loader = pipeline.make_loader(frame, label="y", batch_size=256, shuffle=False)
    rows = np.concatenate([batch[2].numpy() for batch in loader])
    expected = pipeline.make_loader(on_disk, label="y", batch_size=256, shuffle=False)
    np.testing.assert_array_equal(rows, np.concatenate([b[2].numpy() for b in expected]))


def test_the_fitted_frame_serves_its_clean_rows_and_another_frame_is_not_mistaken_for_it(table):
    frame = table.to_pandas()
    prep = pipeline.fit(frame, label="y")
    assert prep._fitted_rows(frame) is not None
    other = table.to_pandas()  # equal rows, another object: not the fitted data
    assert prep._fitted_rows(other) is None
    assert prep._fitted_rows(Source(frame)) is None


def test_pandas_nan_stays_nan_and_the_index_is_not_a_row_id():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0, 4.0]}, index=[10, 20, 30, 40])
    report = pipeline.validate(frame)
    nan = [f for f in report.findings if f.check == "nan"]
    assert nan and nan[0].sample_rows == [1]


def test_a_reader_is_read_once_and_a_second_use_is_a_clear_error(table):
    reader = table.to_reader(max_chunksize=1000)
    assert pipeline.validate(reader, label="y").rows == table.num_rows  # two passes, one read
    with pytest.raises(SourceError, match="already read.*can be read once"):
        pipeline.profile(reader)


def test_a_hugging_face_selection_is_read_in_its_order(table):
    datasets = pytest.importorskip("datasets")
    picked = datasets.Dataset(table).select([1500, 5, 0])
    read = pa.Table.from_batches(list(Source(picked).iter_batches()))
    assert read.column("_row_id").to_pylist() == [0, 1, 2]
    assert read.column("k").to_pylist() == table.column("k").take([1500, 5, 0]).to_pylist()


def test_a_table_is_read_without_copying(table):
    src = Source(table, batch_size=1 << 20)
    batch = next(src.iter_batches())
    original = table.column("x").chunk(0).buffers()[1].address
    assert batch.column("x").buffers()[1].address == original


def test_an_object_that_is_no_dataset_is_one_line():
    with pytest.raises(SourceError, match="cannot read a builtins.dict as a dataset") as info:
        pipeline.validate({"x": [1.0]})
    assert "\n" not in str(info.value)


def test_a_dataset_dict_asks_for_a_split(table):
    datasets = pytest.importorskip("datasets")
    with pytest.raises(SourceError, match=r"pick one split, e.g. dataset\['train'\]"):
        pipeline.validate(datasets.DatasetDict({"train": datasets.Dataset(table)}))


def test_ray_engine_reads_a_table_like_the_local_engine(table, expected):
    pytest.importorskip("ray")
    report = pipeline.validate(table, label="y", engine="ray")
    assert same(summary(report), expected[0])


test_ray_engine_reads_a_table_like_the_local_engine = pytest.mark.ray(
    pytest.mark.slow(test_ray_engine_reads_a_table_like_the_local_engine)
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch_size=st.integers(1, 4000), cut=st.integers(1, 3000))
def test_findings_do_not_depend_on_batching_or_chunking(batch_size, cut, expected):
    t = _table()
    chunked = pa.concat_tables([t.slice(0, cut), t.slice(cut)])
    assert same(summary(pipeline.validate(chunked, label="y", batch_size=batch_size)), expected[0])
