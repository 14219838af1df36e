from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from pipeline.errors import SourceError
from pipeline.source import DEFAULT_BATCH_SIZE, ROW_ID, Source, open_source, parquet_file


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


@pytest.mark.parametrize(
    ("text", "columns"),
    [
        ("a;b;c\n1;2;x\n3;4;y\n", ["a", "b", "c"]),  # European exports
        ("a|b|c\n1|2|x\n3|4|y\n", ["a", "b", "c"]),  # database dumps
        ("a\tb\tc\n1\t2\tx\n3\t4\ty\n", ["a", "b", "c"]),  # a tab-separated .csv
        ("a,b;c\n1,2;x\n", ["a", "b;c"]),  # a comma in the header: commas
        ("only\n1\n2\n", ["only"]),  # one column
    ],
)
def test_a_csv_file_s_delimiter_comes_from_its_header(tmp_path, text, columns):
    (tmp_path / "t.csv").write_text(text)
    table = _read(Source(tmp_path / "t.csv"))
    assert table.column_names == [*columns, ROW_ID]


@pytest.mark.parametrize("compression", ["gzip", "bz2", "zstd", "lz4"])
def test_compressed_csv_files_read_as_the_plain_file(tmp_path, dirty_table, compression):
    small = dirty_table.slice(0, 50).drop_columns(["cat"])
    pcsv.write_csv(small, tmp_path / "t.csv")
    suffix = {"gzip": ".gz", "zstd": ".zst"}.get(compression, "." + compression)
    for base in ("t.csv", "t.tsv"):
        options = pcsv.WriteOptions(delimiter="\t" if base.endswith(".tsv") else ",")
        with pa.CompressedOutputStream(str(tmp_path / (base + suffix)), compression) as out:
            pcsv.write_csv(small, out, write_options=options)
        got = _read(Source(tmp_path / (base + suffix), batch_size=9))
        assert got.equals(_read(Source(tmp_path / "t.csv", batch_size=9))), base + suffix


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


# -- the asked batch size ------------------------------------------------------------------------
def test_open_source_applies_the_asked_batch_size_to_a_source(dirty_parquet):
    src = Source(dirty_parquet, batch_size=1000, prefetch=0)
    assert open_source(src) is src
    assert open_source(src, batch_size=1000) is src
    smaller = open_source(src, batch_size=64)
    assert smaller.batch_size == 64 and src.batch_size == 1000
    assert smaller.prefetch == 0 and smaller.schema == src.schema
    assert {b.num_rows for b in smaller.iter_batches()} <= set(range(1, 65))
    np.testing.assert_equal(_read(smaller).to_pydict(), _read(src).to_pydict())
    assert open_source(dirty_parquet).batch_size == DEFAULT_BATCH_SIZE
    with pytest.raises(SourceError, match="batch_size should be a positive integer"):
        src.with_batch_size(0)


def test_validate_reads_a_source_at_the_asked_batch_size(dirty_parquet):
    """validate(Source(p), batch_size=N) used to read at the Source's own batch size."""
    from pipeline.validation import validate

    seen: list[int] = []
    report = validate(
        Source(dirty_parquet, batch_size=100_000), batch_size=128, progress=seen.append
    )
    assert report.rows == 2000
    assert seen and max(seen) <= 128


# -- view layouts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_view_columns_are_read_in_the_layouts_kernels_take(tmp_path, suffix):
    """string_view/binary_view (as polars writes them) have no take or filter in pyarrow."""
    n = 10
    table = pa.table(
        {
            "s": pa.array([str(k % 3) if k != 4 else None for k in range(n)], pa.string_view()),
            "b": pa.array([bytes([k]) for k in range(n)], pa.binary_view()),
            "nested": pa.array(
                [{"v": str(k)} for k in range(n)], pa.struct([("v", pa.string_view())])
            ),
            "x": np.arange(n, dtype=np.float64),
        }
    )
    path = tmp_path / f"views{suffix}"
    (pq.write_table if suffix == ".parquet" else feather.write_feather)(table, path)
    src = Source(path, batch_size=4)
    assert src.schema.field("s").type == pa.large_string()
    assert src.schema.field("b").type == pa.large_binary()
    assert src.schema.field("nested").type == pa.struct([("v", pa.large_string())])
    got = _read(src)
    assert got.schema.remove(got.schema.get_field_index(ROW_ID)) == src.schema
    assert got.column("s").to_pylist() == table.column("s").to_pylist()
    assert got.take([1, 4]).column("b").to_pylist() == [b"\x01", b"\x04"]


def test_public_names_resolve_and_the_old_private_name_stays():
    import pipeline.source

    assert set(pipeline.source.__all__) == {
        "CSV_SUFFIXES", "DEFAULT_BATCH_SIZE", "IPC_SUFFIXES", "PARQUET_SUFFIXES", "ROW_ID",
        "Chunk", "Source", "open_source", "parquet_file",
    }  # fmt: skip
    for name in pipeline.source.__all__:
        assert getattr(pipeline.source, name) is not None
    assert pipeline.source._parquet_file is parquet_file
