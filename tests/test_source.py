from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from pipeline.errors import SourceError
from pipeline.source import ROW_ID, Source


def _read(src: Source, **kw) -> pa.Table:
    return pa.Table.from_batches(list(src.iter_batches(**kw)))


@pytest.mark.parametrize("batch_size", [1, 7, 300, 100_000])
def test_parquet_batches_concatenate_to_the_file_with_stable_ids(dirty_parquet, batch_size):
    src = Source(dirty_parquet, batch_size=batch_size)
    table = _read(src)
    expected = pq.read_table(dirty_parquet)
    np.testing.assert_equal(table.drop_columns([ROW_ID]).to_pydict(), expected.to_pydict())
    assert table.column(ROW_ID).to_pylist() == list(range(expected.num_rows))
    assert all(b.num_rows <= batch_size for b in src.iter_batches())
    assert src.num_rows == expected.num_rows


def test_chunks_read_alone_match_the_full_stream(dirty_parquet):
    src = Source(dirty_parquet, batch_size=128)
    chunks = src.chunks()
    assert len(chunks) == 7  # 2,000 rows in row groups of 300
    picked = _read(src, chunks=[chunks[2], chunks[5]])
    full = _read(src)
    ids = picked.column(ROW_ID).to_numpy()
    assert ids.tolist() == list(range(600, 900)) + list(range(1500, 1800))
    np.testing.assert_equal(picked.to_pydict(), full.take(ids).to_pydict())


def test_directory_with_hive_partitions(tmp_path):
    for part, values in (("a", [1.0, 2.0]), ("b", [3.0])):
        folder = tmp_path / "ds" / f"split={part}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"x": values}), folder / "part-0.parquet")
    (tmp_path / "ds" / "_SUCCESS").write_text("")
    table = _read(Source(tmp_path / "ds"))
    assert table.column("x").to_pylist() == [1.0, 2.0, 3.0]
    assert table.column("split").to_pylist() == ["a", "a", "b"]
    assert table.column(ROW_ID).to_pylist() == [0, 1, 2]


def test_csv_and_ipc_give_the_same_rows(tmp_path, dirty_table):
    small = dirty_table.slice(0, 50).drop_columns(["cat"])
    pcsv.write_csv(small, tmp_path / "t.csv")
    feather.write_feather(small, tmp_path / "t.feather", chunksize=16)
    for name in ("t.csv", "t.feather"):
        got = _read(Source(tmp_path / name, batch_size=9))
        assert got.column(ROW_ID).to_pylist() == list(range(50))
        np.testing.assert_array_equal(got.column("y").to_numpy(), small.column("y").to_numpy())


def test_existing_row_ids_are_kept(tmp_path):
    pq.write_table(pa.table({"x": [1.0, 2.0], ROW_ID: [10, 77]}), tmp_path / "c.parquet")
    table = _read(Source(tmp_path / "c.parquet"))
    assert table.column(ROW_ID).to_pylist() == [10, 77]
    assert table.column_names == ["x", ROW_ID]


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("hello, not parquet"), "cannot read as parquet"),
    ],
)
def test_unreadable_inputs_raise_one_clear_error(tmp_path, setup, expected):
    path = tmp_path / "data.parquet"
    setup(path)
    with pytest.raises(SourceError, match=expected) as info:
        Source(path)
    assert str(path) in str(info.value)


def test_directory_files_with_different_types(tmp_path):
    (tmp_path / "d").mkdir()
    pq.write_table(pa.table({"x": [1.0]}), tmp_path / "d" / "a.parquet")
    pq.write_table(pa.table({"x": ["s"]}), tmp_path / "d" / "b.parquet")
    with pytest.raises(SourceError, match="column 'x' is double in .*a.parquet but string"):
        Source(tmp_path / "d")


def test_bad_batch_size():
    with pytest.raises(SourceError, match="batch_size should be a positive integer value"):
        Source(os.devnull, batch_size=0)
