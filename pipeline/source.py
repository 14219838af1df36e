"""Read a dataset as a memory-bounded stream of Arrow record batches.

Every batch carries a global, stable row id in the int64 column ``_row_id``:
the row's position in the dataset, counting files in sorted path order. The
same file always gives the same ids, whatever the batch size, so findings and
quarantine records can be traced back to the input row. A dataset that already
has a ``_row_id`` column (a clean or quarantine output of an earlier run) keeps
its ids, so provenance survives a second pass.

Supported inputs: a parquet file, a directory of parquet files (hive
``key=value`` partition folders become columns), CSV, and Arrow IPC
(``.arrow``/``.feather``/``.ipc``) files; each on local disk or by URL in an
object store or remote file system (``s3://``, ``gs://``, ``abfs://``, ``hf://``,
any fsspec URL; :mod:`pipeline._stores`), or inside a file system object passed
as ``filesystem=``. A Delta Lake table folder and an Iceberg table (folder or
``pyiceberg`` table) are read as the data files of one version or snapshot,
recorded in :attr:`Source.version`. In memory: pandas and polars DataFrames,
pyarrow Tables and RecordBatchReaders, and Hugging Face ``datasets.Dataset``
(:mod:`pipeline._frames`), whose row ids are their row positions.

Peak memory is bounded by the batch size, not the file size: parquet files are
opened with ``pre_buffer=False`` (pyarrow's default buffers about a whole row
group set up front), and IPC files are memory-mapped. In a store, a file is read
with range requests, a column chunk at a time, never downloaded whole.

Columns stored in Arrow's view layouts (``string_view``, ``binary_view``, as
polars writes them) are read as ``large_string`` and ``large_binary``: the same
values, in the layout every pyarrow compute kernel takes (there is no take or
filter for the view layouts).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import SourceError
from .options import DEFAULT_BATCH_SIZE

__all__ = [
    "CSV_SUFFIXES",
    "DEFAULT_BATCH_SIZE",
    "IPC_SUFFIXES",
    "PARQUET_SUFFIXES",
    "ROW_ID",
    "Chunk",
    "Source",
    "open_source",
    "parquet_file",
]

ROW_ID = "_row_id"

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
#: compressions a CSV file may carry, by suffix; pyarrow decompresses them as it reads
_CSV_COMPRESSIONS = ("", ".gz", ".bz2", ".zst", ".lz4")
CSV_SUFFIXES = tuple(base + c for base in (".csv", ".tsv") for c in _CSV_COMPRESSIONS)
IPC_SUFFIXES = (".arrow", ".feather", ".ipc")

# What pyarrow raises on damaged files: its own errors, I/O errors, and ValueErrors
# (UnicodeDecodeError among them) from metadata it cannot decode.
_READ_ERRORS = (pa.ArrowException, OSError, ValueError)

_TIP_FORMATS = (
    "pass a .parquet, .csv (or .csv.gz), .arrow/.feather file or a directory of parquet files"
)
#: delimiters a .csv file's header line is checked for when it holds no comma
_CSV_DELIMITERS = (";", "\t", "|")

#: rows per chunk of an in-memory table (what pass 2 re-reads, or a Ray task takes, at least)
_TABLE_CHUNK_ROWS = 1 << 16


@dataclass(frozen=True)
class Chunk:
    """The smallest piece of a dataset that can be read on its own.

    A parquet row group, an Arrow IPC record batch, a slice of an in-memory table,
    or a whole CSV file. ``row_offset`` is the global row id of its first row;
    ``None`` for CSV files after the first, whose offsets are only known once the
    earlier ones are read. ``num_bytes`` is a parquet row group's uncompressed size
    (from the footer; ``None`` otherwise).
    """

    index: int
    path: str
    part: int | None
    row_offset: int | None
    num_rows: int | None
    num_bytes: int | None = None


@dataclass
class _File:
    path: str
    kind: str
    #: hive partition values, in key order whatever the folders' order: the order of the
    #: partition columns in the schema and in every batch
    partition: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.partition = dict(sorted(self.partition.items()))


def _kind_of(path: str) -> str | None:
    lower = path.lower()
    for kind, suffixes in (
        ("parquet", PARQUET_SUFFIXES),
        ("csv", CSV_SUFFIXES),
        ("ipc", IPC_SUFFIXES),
    ):
        if lower.endswith(suffixes):
            return kind
    return None


def _discover(root: Path) -> list[_File]:
    """List the data files below ``root`` in sorted order, with their hive partitions."""
    files: list[_File] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden and underscore entries are writer metadata (_SUCCESS, .crc, _delta_log).
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        for name in sorted(filenames):
            if name.startswith((".", "_")):
                continue
            path = os.path.join(dirpath, name)
            kind = _kind_of(name)
            if kind is None:
                continue
            rel_dirs = Path(os.path.relpath(dirpath, root)).parts
            files.append(_File(path, kind, _partition_of(rel_dirs)))
    files.sort(key=lambda f: f.path)
    return files


def parquet_file(path: str, *, filesystem: Any = None) -> pa.parquet.ParquetFile:
    """Open a parquet file the way :class:`Source` reads it, with memory bounded by a batch.

    Parameters
    ----------
    path : str
    filesystem : pyarrow.fs.FileSystem, optional
        The file system ``path`` is in (local disk by default).

    Returns
    -------
    pyarrow.parquet.ParquetFile
    """
    import pyarrow.parquet as pq

    # pre_buffer=True (pyarrow's default) reads whole row groups ahead and keeps
    # them; with it peak memory grows with the file.
    return pq.ParquetFile(path, pre_buffer=False, memory_map=False, filesystem=filesystem)


# The former private name, kept until its importers switch.
_parquet_file = parquet_file


def _without_views(typ: pa.DataType) -> pa.DataType:
    """``typ`` with ``string_view``/``binary_view`` read as their large layouts, at any depth."""
    if pa.types.is_string_view(typ):
        return pa.large_string()
    if pa.types.is_binary_view(typ):
        return pa.large_binary()
    if pa.types.is_dictionary(typ):
        return pa.dictionary(typ.index_type, _without_views(typ.value_type), typ.ordered)
    if pa.types.is_map(typ):
        return pa.map_(
            typ.key_field.with_type(_without_views(typ.key_type)),
            typ.item_field.with_type(_without_views(typ.item_type)),
            typ.keys_sorted,
        )
    if pa.types.is_struct(typ):
        return pa.struct([f.with_type(_without_views(f.type)) for f in typ])
    if pa.types.is_fixed_size_list(typ):
        return pa.list_(typ.value_field.with_type(_without_views(typ.value_type)), typ.list_size)
    if pa.types.is_list(typ) or pa.types.is_list_view(typ):
        return pa.list_(typ.value_field.with_type(_without_views(typ.value_type)))
    if pa.types.is_large_list(typ) or pa.types.is_large_list_view(typ):
        return pa.large_list(typ.value_field.with_type(_without_views(typ.value_type)))
    return typ


def _view_casts(schema: pa.Schema) -> dict[str, pa.DataType]:
    """The columns of ``schema`` held in a view layout, with the type each is read as."""
    casts = {}
    for f in schema:
        plain = _without_views(f.type)
        if plain.equals(f.type):
            continue
        try:  # a layout Arrow cannot cast is left as it is
            pa.array([], f.type).cast(plain)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            continue
        casts[f.name] = plain
    return casts


def _check_batch_size(batch_size: object) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise SourceError(
            f"batch_size should be a positive integer value, but got batch_size={batch_size!r}"
        )


def _sniff(head: bytes) -> str | None:
    """Recognise a file by its magic bytes when the suffix says nothing."""
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:6] == b"ARROW1" or head[:4] == b"\xff\xff\xff\xff":
        return "ipc"
    return None


def _delimiter_of(head: bytes) -> str:
    """A .csv file's delimiter: a comma, unless its header line holds none.

    Then the candidate the header holds most of (``;`` in many European exports,
    ``|`` in database dumps, a tab): read with commas such a file is one column
    of whole lines, and every check would pass on it.
    """
    header = head.split(b"\n", 1)[0]
    if b"," in header:
        return ","
    counts = {d: header.count(d.encode()) for d in _CSV_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class _Disk:
    """Files on the local disk, named by their paths; IPC files are memory-mapped."""

    def url(self, path: str) -> str:
        return path

    def parquet(self, path: str) -> pa.parquet.ParquetFile:
        return parquet_file(path)

    def ipc_file(self, path: str) -> pa.ipc.RecordBatchFileReader:
        return pa.ipc.open_file(pa.memory_map(path, "r"))

    def ipc_stream(self, path: str) -> pa.ipc.RecordBatchStreamReader:
        return pa.ipc.open_stream(pa.memory_map(path, "r"))

    def csv_input(self, path: str) -> Any:
        return path

    def error(self, path: str, kind: str, exc: Exception) -> SourceError:
        size = os.path.getsize(path) if os.path.exists(path) else -1
        if size == 0:
            return SourceError(f"{path}: empty file (0 bytes); {_TIP_FORMATS}")
        return _format_error(path, kind, exc)


_DISK = _Disk()


def _format_error(shown: str, kind: str, exc: Exception) -> SourceError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return SourceError(
        f"{shown}: cannot read as {kind} ({detail}); check that the file is complete "
        f"and really {kind}, or {_TIP_FORMATS}"
    )


def _store_error(store: Any, path: str, kind: str, exc: Exception) -> SourceError:
    """A store's failure (unreachable, denied, vanished) or a damaged file, in one line."""
    from ._stores import classify

    found = classify(store.url(path), exc) if isinstance(exc, OSError) else None
    return found or _format_error(store.url(path), kind, exc)


def _is_hidden(rel: str) -> bool:
    # Hidden and underscore entries are writer metadata (_SUCCESS, .crc, _delta_log).
    return any(part.startswith((".", "_")) for part in rel.split("/"))


#: the value hive writers (Spark, Hive, pyarrow) give a folder for a null partition value
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def _partition_of(folders: Sequence[str]) -> dict[str, str | None]:
    """The hive partition of a file from its folders' ``key=value`` names.

    Values are URL-decoded (writers escape ``/``, ``=``, spaces and ``%`` in them), and
    :data:`_HIVE_NULL` is a null, as pyarrow's hive partitioning reads them.
    """
    from urllib.parse import unquote

    pairs = (folder.split("=", 1) for folder in folders if "=" in folder)
    return {key: None if value == _HIVE_NULL else unquote(value) for key, value in pairs}


class Source:
    """A dataset opened for streaming.

    Parameters
    ----------
    path : str, os.PathLike or an in-memory dataset
        A parquet, CSV or Arrow IPC file, or a directory of parquet files (a Delta
        Lake or Iceberg table folder is read as its table), on local disk or by URL
        (``s3://bucket/prefix/``, ``gs://``, ``abfs://``, ``hf://``, any fsspec URL).
        Or an object: a pandas or polars DataFrame, a pyarrow Table, RecordBatch or
        RecordBatchReader, a ``datasets.Dataset``, a ``deltalake.DeltaTable`` or a
        ``pyiceberg`` table. A RecordBatchReader can be read once only: it is
        written to a temporary Arrow file on local disk first (memory stays bounded),
        so that the passes of :func:`~pipeline.validate` can read it again.
    batch_size : int, default 65536
        Most rows per record batch; bounds the memory a batch takes.
    prefetch : int, default 2
        Batches decoded ahead in a background thread, so decoding (which
        releases the GIL) overlaps the caller's work on the previous batch;
        0 reads in the caller's thread.
    filesystem : pyarrow.fs.FileSystem or fsspec.AbstractFileSystem, optional
        Read ``path`` inside this file system (e.g.
        ``pyarrow.fs.S3FileSystem(endpoint_override="localhost:9000")`` with
        ``path="bucket/prefix"``) instead of the local disk or the URL's own.

    Attributes
    ----------
    path : str
        The path or URL as given (a URL without its credentials), or for an
        in-memory dataset its kind in angle brackets (``"<pandas.DataFrame>"``).
    format : str
        ``"parquet"``, ``"csv"``, ``"ipc"`` or ``"table"`` (in memory).
    schema : pyarrow.Schema
        The data columns, without ``_row_id``.
    num_rows : int or None
        Row count from file metadata; ``None`` for CSV until read.
    version : dict or None
        For a Delta or Iceberg table, the version read: ``{"format": "delta",
        "version": int}`` or ``{"format": "iceberg", "snapshot_id": int,
        "metadata": str}``; ``None`` otherwise.

    Raises
    ------
    SourceError
        When the path does not exist, cannot be read, is not a supported format,
        or a directory's files disagree on their columns.

    Examples
    --------
    >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.parquet")
    >>> pq.write_table(pa.table({"x": [1.0, 2.0, 3.0]}), path)
    >>> src = Source(path, batch_size=2)
    >>> [b.num_rows for b in src.iter_batches()]
    [2, 1]
    >>> src.iter_batches().__next__().column("_row_id").to_pylist()
    [0, 1]
    >>> [b.num_rows for b in Source(pa.table({"x": [1, 2, 3]}), batch_size=2).iter_batches()]
    [2, 1]
    """

    def __init__(
        self,
        path: Any,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        prefetch: int = 2,
        filesystem: Any = None,
    ):
        _check_batch_size(batch_size)
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.version: dict[str, Any] | None = None
        self._io: Any = _DISK
        self._table: pa.Table | None = None
        self._spool: Any = None  # keeps a spooled reader's temporary folder alive
        self._csv_delimiters: dict[str, str] = {}  # per CSV file, read from its header once
        if isinstance(path, (str, os.PathLike)):
            self._files = self._open_path(os.fspath(path), filesystem)
        else:
            self._files = self._open_object(path)
        self.format = self._files[0].kind
        self.schema, self._file_schemas = self._read_schemas()
        self._casts = _view_casts(self.schema)
        if self._casts:
            fields = [f.with_type(self._casts.get(f.name, f.type)) for f in self.schema]
            self.schema = pa.schema(fields, metadata=self.schema.metadata)
        self._check_schema()
        self._counts = [self._count_rows(f) for f in self._files]
        self.num_rows = None if None in self._counts else sum(c for c in self._counts if c)

    def with_batch_size(self, batch_size: int) -> Source:
        """This dataset, read in batches of at most ``batch_size`` rows.

        Parameters
        ----------
        batch_size : int

        Returns
        -------
        Source
            ``self`` when it already reads at that size; otherwise a new source
            over the same files and options (nothing is opened again).

        Raises
        ------
        SourceError
            When ``batch_size`` is not a positive integer.
        """
        _check_batch_size(batch_size)
        if batch_size == self.batch_size:
            return self
        other = copy.copy(self)
        other.batch_size = batch_size
        return other

    def __getstate__(self) -> dict[str, Any]:
        # The Ray engine ships a source to its tasks; a spooled reader's folder stays
        # with the driver, which outlives them.
        return {**self.__dict__, "_spool": None}

    # -- opening -------------------------------------------------------------------------------
    def _open_path(self, path: str, filesystem: Any) -> list[_File]:
        from ._stores import is_url

        if filesystem is None and not is_url(path):
            self.path = path
            return self._list_files()
        from ._stores import open_store, redact

        store, inner = open_store(path, filesystem)
        self._io = store
        self.path = redact(path) if filesystem is None else store.url(inner)
        return self._list_store_files(store, inner, path)

    def _open_object(self, obj: Any) -> list[_File]:
        from . import _frames, _tables

        if _tables.is_table(obj):
            opened = _tables.open_table(obj)
            self.path, self.version = opened.name, opened.version
            self._io = opened.io or _DISK
            return [_File(p, "parquet", part) for p, part in opened.files]
        frame = _frames.as_arrow(obj)
        self.path = frame.name
        if frame.spool is not None:  # a one-pass stream, now an Arrow file on local disk
            self._spool = frame.spool
            return [_File(frame.path, "ipc")]
        self._table = frame.table
        return [_File(frame.name, "table")]

    def _table_files(self, kind: str, location: str) -> list[_File]:
        """A Delta or Iceberg table folder: the data files of its current version."""
        from . import _tables

        io = None if isinstance(self._io, _Disk) else self._io
        opened = _tables.open_folder(kind, location, self.path, io)
        self.version = opened.version
        self._io = opened.io or _DISK
        if not opened.files:
            raise SourceError(f"{self.path}: the {kind} table holds no data files")
        return [_File(p, "parquet", part) for p, part in opened.files]

    def _list_files(self) -> list[_File]:
        path = self.path
        if not os.path.exists(path):
            raise SourceError(f"{path}: no such file or directory; check the path")
        if not os.access(path, os.R_OK):
            raise SourceError(f"{path}: permission denied; make it readable (chmod +r) or copy it")
        if os.path.isdir(path):
            from . import _tables

            kind = _tables.folder_kind(
                os.listdir(path), lambda d: os.listdir(os.path.join(path, d))
            )
            if kind is not None:
                return self._table_files(kind, path)
            files = _discover(Path(path))
            if not files:
                raise SourceError(f"{path}: directory holds no data files; {_TIP_FORMATS}")
            self._check_kinds(files)
            for f in files:
                if not os.access(f.path, os.R_OK):
                    raise SourceError(f"{f.path}: permission denied; make it readable")
            return files
        if os.path.getsize(path) == 0:
            raise SourceError(f"{path}: empty file (0 bytes); {_TIP_FORMATS}")
        kind = _kind_of(path)
        if kind is None:
            with open(path, "rb") as fh:
                kind = _sniff(fh.read(6))
        if kind is None:
            raise SourceError(f"{path}: unrecognised file type; {_TIP_FORMATS}")
        return [_File(path, kind)]

    def _check_kinds(self, files: list[_File]) -> None:
        kinds = sorted({f.kind for f in files})
        if len(kinds) > 1:
            raise SourceError(
                f"{self.path}: directory mixes file formats ({', '.join(kinds)}); "
                "keep one format per dataset directory"
            )

    def _list_store_files(self, store: Any, root: str, given: str) -> list[_File]:
        """The data files at ``root`` in a store: one object, or every one below a prefix."""
        from pyarrow.fs import FileType

        from ._stores import describe, missing_bucket

        try:
            info = store.info(root)
            if info.type == FileType.NotFound:
                raise missing_bucket(store, root, self.path) or SourceError(
                    f"{self.path}: no such object or prefix; check the URL"
                )
            if info.type == FileType.File:
                if info.size == 0:
                    raise SourceError(f"{self.path}: empty object (0 bytes); {_TIP_FORMATS}")
                kind = _kind_of(root) or _sniff(store.head(root, 6))
                if kind is None:
                    raise SourceError(f"{self.path}: unrecognised file type; {_TIP_FORMATS}")
                return [_File(root, kind)]
            entries = store.listing(root)
        except OSError as exc:
            raise describe(self.path, exc) from exc
        from . import _tables

        top = {rel.split("/", 1)[0] for _, rel, _ in entries}
        kind = _tables.folder_kind(
            top, lambda d: [rel.split("/")[1] for _, rel, _ in entries if rel.startswith(d + "/")]
        )
        if kind is not None:
            return self._table_files(kind, given)
        files = [
            _File(p, k, _partition_of(rel.split("/")[:-1]))
            for p, rel, _ in entries
            if not _is_hidden(rel) and (k := _kind_of(rel)) is not None
        ]
        if not files:
            raise SourceError(f"{self.path}: prefix holds no data files; {_TIP_FORMATS}")
        self._check_kinds(files)
        return files

    def _error(self, f: _File, exc: Exception) -> SourceError:
        if isinstance(self._io, _Disk):
            return self._io.error(f.path, f.kind, exc)
        return _store_error(self._io, f.path, f.kind, exc)

    def _read_schema(self, f: _File) -> pa.Schema:
        if f.kind == "table":
            assert self._table is not None
            return self._table.schema
        try:
            if f.kind == "parquet":
                return self._io.parquet(f.path).schema_arrow
            if f.kind == "ipc":
                try:
                    return self._io.ipc_file(f.path).schema
                except pa.ArrowInvalid:
                    with self._io.ipc_stream(f.path) as reader:
                        return reader.schema
            return self._open_csv(f.path).schema
        except _READ_ERRORS as exc:
            raise self._error(f, exc) from exc

    def _read_schemas(self) -> tuple[pa.Schema, list[pa.Schema]]:
        schemas = [self._read_schema(f) for f in self._files]
        first = schemas[0]
        for f, s in zip(self._files[1:], schemas[1:], strict=True):
            if s.equals(first):
                continue
            a, b = self._io.url(self._files[0].path), self._io.url(f.path)
            names_a, names_b = set(first.names), set(s.names)
            if names_a != names_b:
                only = sorted(names_a ^ names_b)
                raise SourceError(
                    f"{self.path}: files disagree on columns: {a} and {b} differ in {only}; "
                    "give every file of a dataset the same columns"
                )
            for name in first.names:
                ta, tb = first.field(name).type, s.field(name).type
                if ta != tb:
                    raise SourceError(
                        f"{self.path}: column '{name}' is {ta} in {a} but {tb} in {b}; "
                        "write every file of a dataset with the same column types"
                    )
        # A column that may hold nulls in one file may in the dataset (the outputs' schema).
        nullable = {field.name for s in schemas for field in s if field.nullable}
        schema = pa.schema(
            [field.with_nullable(field.name in nullable) for field in first],
            metadata=first.metadata,
        )
        partition_keys = list(self._files[0].partition)
        for f in self._files:
            if list(f.partition) != partition_keys:
                raise SourceError(
                    f"{self.path}: files sit in different partition folders: "
                    f"{self._io.url(self._files[0].path)} has keys {partition_keys or 'none'}, "
                    f"{self._io.url(f.path)} has {list(f.partition) or 'none'}; give every "
                    "file the same key=value folders"
                )
        for key in partition_keys:
            if key in schema.names:
                raise SourceError(
                    f"{self.path}: partition folder key '{key}' is also a column in the files; "
                    "rename one of them"
                )
            values = [v for f in self._files if (v := f.partition[key]) is not None]
            typ = pa.int64() if values and all(_is_int(v) for v in values) else pa.string()
            schema = schema.append(pa.field(key, typ))
        return schema, schemas

    def _check_schema(self) -> None:
        seen: set[str] = set()
        for name in self.schema.names:
            if name in seen:
                raise SourceError(
                    f"{self.path}: column '{name}' appears more than once; "
                    "give every column a unique name"
                )
            seen.add(name)
        if ROW_ID in seen and not pa.types.is_integer(self.schema.field(ROW_ID).type):
            raise SourceError(
                f"{self.path}: column '{ROW_ID}' is reserved for row ids and must be an integer "
                f"column, but it is {self.schema.field(ROW_ID).type}; rename it"
            )

    def _open_csv(self, path: str) -> pa.RecordBatchReader:
        import pyarrow.csv as pcsv

        # Large blocks make type inference see more rows before it commits to a type.
        return pcsv.open_csv(
            self._io.csv_input(path),
            read_options=pcsv.ReadOptions(block_size=16 << 20),
            parse_options=pcsv.ParseOptions(delimiter=self._csv_delimiter(path)),
        )

    def _csv_delimiter(self, path: str) -> str:
        """A CSV file's delimiter: a tab for .tsv, else from the first 64 KiB (decompressed).

        Read once per file: the schema, the row count and each pass open the file again,
        and in an object store each head read is a request.
        """
        if path not in self._csv_delimiters:
            if path.lower().endswith(tuple(".tsv" + c for c in _CSV_COMPRESSIONS)):
                self._csv_delimiters[path] = "\t"
            else:
                data = self._io.csv_input(path)  # a local path, or a store's stream
                if isinstance(data, str):
                    data = pa.input_stream(data, compression="detect")
                with data:
                    self._csv_delimiters[path] = _delimiter_of(bytes(data.read(1 << 16)))
        return self._csv_delimiters[path]

    def _count_rows(self, f: _File) -> int | None:
        if f.kind == "table":
            assert self._table is not None
            return self._table.num_rows
        try:
            if f.kind == "parquet":
                return int(self._io.parquet(f.path).metadata.num_rows)
            if f.kind == "ipc":
                try:
                    reader = self._io.ipc_file(f.path)
                    return sum(
                        reader.get_batch(i).num_rows for i in range(reader.num_record_batches)
                    )
                except pa.ArrowInvalid:
                    return None
        except _READ_ERRORS as exc:
            raise self._error(f, exc) from exc
        return None

    # -- reading -------------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """Names of the data columns (without ``_row_id``)."""
        return [n for n in self.schema.names if n != ROW_ID]

    @property
    def has_own_row_ids(self) -> bool:
        """Whether the data brings its own ``_row_id`` column."""
        return ROW_ID in self.schema.names

    def chunks(self) -> list[Chunk]:
        """The independently readable pieces, in row order.

        Returns
        -------
        list of Chunk
            Parquet row groups, IPC record batches and slices of an in-memory table,
            with their global row offsets; one chunk per CSV or IPC stream file.
        """
        out: list[Chunk] = []
        offset: int | None = 0
        for f, count in zip(self._files, self._counts, strict=True):
            parts: list[tuple[int | None, int | None, int | None]]
            if f.kind == "parquet":
                try:
                    md = self._io.parquet(f.path).metadata
                except _READ_ERRORS as exc:
                    raise self._error(f, exc) from exc
                parts = [
                    (i, md.row_group(i).num_rows, md.row_group(i).total_byte_size)
                    for i in range(md.num_row_groups)
                ]
            elif f.kind == "ipc" and count is not None:
                reader = self._io.ipc_file(f.path)
                parts = [
                    (i, reader.get_batch(i).num_rows, None)
                    for i in range(reader.num_record_batches)
                ]
            elif f.kind == "table" and count:
                parts = [
                    (i, min(_TABLE_CHUNK_ROWS, count - start), None)
                    for i, start in enumerate(range(0, count, _TABLE_CHUNK_ROWS))
                ]
            else:
                parts = [(None, count, None)]
            for part, n, size in parts:
                out.append(Chunk(len(out), f.path, part, offset, n, size))
                offset = None if offset is None or n is None else offset + n
        return out

    def iter_batches(
        self,
        *,
        columns: Sequence[str] | None = None,
        chunks: Sequence[Chunk] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Yield record batches of at most ``batch_size`` rows, each with ``_row_id`` last.

        Parameters
        ----------
        columns : sequence of str, optional
            Read only these data columns (all by default).
        chunks : sequence of Chunk, optional
            Read only these pieces (from :meth:`chunks`); all by default. Chunks
            without a known ``row_offset`` cannot be selected.

        Yields
        ------
        pyarrow.RecordBatch
        """
        wanted = list(self.columns if columns is None else columns)
        names = set(self.schema.names)
        missing = [c for c in wanted if c not in names]
        if missing:
            raise SourceError(
                f"{self.path}: no column named {missing[0]!r}; columns are {self.columns}"
            )
        if chunks is None:
            batches = self._iter_all(wanted)
        else:
            batches = self._iter_chunks(wanted, chunks)
        yield from _prefetch(batches, self.prefetch) if self.prefetch else batches

    def _iter_chunks(self, wanted: list[str], chunks: Sequence[Chunk]) -> Iterator[pa.RecordBatch]:
        by_path = {f.path: f for f in self._files}
        for chunk in chunks:
            if chunk.row_offset is None:
                raise SourceError(
                    f"{self._io.url(chunk.path)}: this chunk cannot be read on its own"
                )
            f = by_path[chunk.path]
            yield from self._with_ids(self._read_file(f, wanted, chunk.part), chunk.row_offset, f)

    def _iter_all(self, wanted: list[str]) -> Iterator[pa.RecordBatch]:
        offset = 0
        for f in self._files:
            for batch in self._with_ids(self._read_file(f, wanted, None), offset, f):
                offset += batch.num_rows
                yield batch

    def _read_file(self, f: _File, wanted: list[str], part: int | None) -> Iterator[pa.RecordBatch]:
        file_cols = [c for c in wanted if c not in f.partition]
        if self.has_own_row_ids:
            file_cols.append(ROW_ID)
        if f.kind == "table":
            yield from self._read_table(file_cols, part)
            return
        try:
            if f.kind == "parquet":
                pf = self._io.parquet(f.path)
                groups = None if part is None else [part]
                yield from pf.iter_batches(
                    batch_size=self.batch_size,
                    row_groups=groups,
                    columns=file_cols,
                    use_threads=True,
                )
            elif f.kind == "ipc":
                yield from self._read_ipc(f.path, file_cols, part)
            else:
                for batch in self._open_csv(f.path):
                    yield from _slices(batch.select(file_cols), self.batch_size)
        except _READ_ERRORS as exc:
            # Damage past the footer (or a store that stops answering) only shows up
            # while decoding pages.
            raise self._error(f, exc) from exc

    def _read_table(self, cols: list[str], part: int | None) -> Iterator[pa.RecordBatch]:
        """Zero-copy slices of the in-memory table (its own chunks, cut at ``batch_size``)."""
        assert self._table is not None
        table = self._table.select(cols)
        if part is not None:
            table = table.slice(part * _TABLE_CHUNK_ROWS, _TABLE_CHUNK_ROWS)
        for batch in table.to_batches(max_chunksize=self.batch_size):
            if batch.num_rows:
                yield batch

    def _read_ipc(self, path: str, cols: list[str], part: int | None) -> Iterator[pa.RecordBatch]:
        try:
            reader = self._io.ipc_file(path)
            batches: Iterator[pa.RecordBatch] = (
                reader.get_batch(i)
                for i in (range(reader.num_record_batches) if part is None else [part])
            )
        except pa.ArrowInvalid:
            batches = iter(self._io.ipc_stream(path))
        for batch in batches:
            yield from _slices(batch.select(cols), self.batch_size)

    def _with_ids(
        self, batches: Iterator[pa.RecordBatch], offset: int, f: _File
    ) -> Iterator[pa.RecordBatch]:
        import numpy as np

        for batch in batches:
            n = batch.num_rows
            arrays = list(batch.columns)
            names = list(batch.schema.names)
            if self._casts:
                arrays = [
                    a.cast(self._casts[name]) if name in self._casts else a
                    for name, a in zip(names, arrays, strict=True)
                ]
            _check_utf8(self._io.url(f.path), names, arrays, offset)
            for key, value in f.partition.items():
                typ = self.schema.field(key).type
                if value is not None and typ == pa.int64():
                    value = int(value)  # type: ignore[assignment]
                arrays.append(pa.array([value] * n, typ))
                names.append(key)
            if self.has_own_row_ids:
                i = names.index(ROW_ID)
                ids = self._own_ids(arrays.pop(i), f, offset)
                names.pop(i)
            else:
                ids = pa.array(np.arange(offset, offset + n, dtype=np.int64))
            offset += n
            yield pa.RecordBatch.from_arrays([*arrays, ids], names=[*names, ROW_ID])

    def _own_ids(self, ids: pa.Array, f: _File, offset: int) -> pa.Array:
        """A batch's own ``_row_id`` values as int64; null or too large ones are refused."""
        where = f"{self._io.url(f.path)}: column '{ROW_ID}'"
        tip = "fix it, or drop the column and batchguard numbers the rows itself"
        if ids.null_count:
            import pyarrow.compute as pc

            first = offset + pc.index(pc.is_null(ids), True).as_py()
            raise SourceError(f"{where} is null in row {first}; {tip}")
        try:
            return ids.cast(pa.int64())
        except pa.ArrowInvalid as exc:
            raise SourceError(f"{where} holds ids beyond int64; {tip}") from exc


def _prefetch(batches: Iterator[pa.RecordBatch], depth: int) -> Iterator[pa.RecordBatch]:
    """Run ``batches`` in a background thread, at most ``depth`` batches ahead.

    Errors are re-raised in the caller's thread, in order; when the caller stops
    early (closes the generator), the reader stops at its next batch.
    """
    import queue
    import threading

    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for batch in batches:
                if not put(("batch", batch)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the caller, who raises it
            put(("error", exc))

    reader = threading.Thread(target=work, name="batchguard-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            kind, item = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def _check_utf8(path: str, names: list[str], arrays: list[pa.Array], offset: int) -> None:
    """Parquet does not validate string bytes; invalid UTF-8 would crash readers later."""
    for name, arr in zip(names, arrays, strict=True):
        typ = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
        if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
            continue
        try:
            arr.validate(full=True)
        except pa.ArrowInvalid as exc:
            raise SourceError(
                f"{path}: column '{name}' holds bytes that are not valid UTF-8 (rows "
                f"{offset}-{offset + len(arr) - 1}); fix the encoding upstream or store the "
                "column as binary"
            ) from exc


def _slices(batch: pa.RecordBatch, size: int) -> Iterator[pa.RecordBatch]:
    for start in range(0, batch.num_rows, size):
        yield batch.slice(start, size)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def open_source(path: Any, *, batch_size: int | None = None, filesystem: Any = None) -> Source:
    """Open ``path`` for streaming; a :class:`Source` is used as it is, at the asked batch size.

    Parameters
    ----------
    path : str, os.PathLike, Source or an in-memory dataset
        A path or URL, or any object :class:`Source` takes (a DataFrame, an Arrow
        table or reader, a ``datasets.Dataset``, a Delta or Iceberg table).
    batch_size : int, optional
        Most rows per batch. By default a path is read in batches of
        :data:`DEFAULT_BATCH_SIZE` rows and a :class:`Source` at its own batch
        size; a batch size that is given applies to either
        (:meth:`Source.with_batch_size`).
    filesystem : pyarrow.fs.FileSystem or fsspec.AbstractFileSystem, optional
        The file system ``path`` is in (see :class:`Source`).

    Returns
    -------
    Source

    Examples
    --------
    >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.parquet")
    >>> pq.write_table(pa.table({"x": [1.0, 2.0, 3.0]}), path)
    >>> open_source(Source(path, batch_size=1), batch_size=2).batch_size
    2
    """
    if isinstance(path, Source):
        return path if batch_size is None else path.with_batch_size(batch_size)
    size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    return Source(path, batch_size=size, filesystem=filesystem)
