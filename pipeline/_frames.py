"""In-memory datasets as Arrow: what :class:`~pipeline.source.Source` reads when given an object.

- a pyarrow ``Table`` or ``RecordBatch``: as it is (zero-copy);
- a polars ``DataFrame``: ``to_arrow()`` (zero-copy; its ``string_view`` columns are
  read as ``large_string`` by the source, like polars-written files);
- a Hugging Face ``datasets.Dataset``: its Arrow table (zero-copy, memory-mapped
  when the dataset is on disk; a dataset with an indices mapping, after
  ``select`` or ``shuffle``, is gathered in its order);
- a pandas ``DataFrame``: ``pyarrow.Table.from_pandas`` without the index (a copy,
  except for columns already held in Arrow); NaN in a numpy float column stays NaN
  (from_pandas would make it null), so the ``nan`` check sees it;
- a pyarrow ``RecordBatchReader`` (or any object with ``__arrow_c_stream__`` that is
  not one of the above): a stream that can be read once only, so it is written to
  a temporary Arrow IPC file on local disk, batch by batch (memory stays bounded;
  the disk holds the data once), which every pass then memory-maps.

Row ids are row positions, 0 to n-1 (the pandas index is not kept; a ``_row_id``
column, as in a quarantine output read back, is kept).
"""

from __future__ import annotations

import os
import tempfile
import weakref
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .errors import SourceError

__all__ = ["Frame", "as_arrow", "identity_key", "is_frame"]


@dataclass
class Frame:
    """An in-memory dataset in Arrow terms: a table, or a spooled stream's file."""

    #: the kind, shown where a path would be ("<pandas.DataFrame>")
    name: str
    table: pa.Table | None = None
    #: a spooled stream: the temporary folder (removed with this object) and the file in it
    spool: tempfile.TemporaryDirectory[str] | None = None
    path: str = ""


def _kind(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__.split('.')[0]}.{cls.__name__}"


_KINDS = (
    "pandas.DataFrame", "polars.DataFrame", "datasets.Dataset", "pyarrow.Table",
    "pyarrow.RecordBatch", "pyarrow.RecordBatchReader",
)  # fmt: skip


def is_frame(obj: Any) -> bool:
    """Whether ``obj`` is an in-memory dataset :func:`as_arrow` takes.

    Parameters
    ----------
    obj : object

    Returns
    -------
    bool
    """
    return _kind(obj) in _KINDS or hasattr(obj, "__arrow_c_stream__")


def as_arrow(obj: Any) -> Frame:
    """``obj`` as an Arrow table (or, for a one-pass stream, a spooled Arrow file).

    Parameters
    ----------
    obj : pandas.DataFrame, polars.DataFrame, pyarrow.Table, pyarrow.RecordBatch,
        pyarrow.RecordBatchReader or datasets.Dataset

    Returns
    -------
    Frame

    Raises
    ------
    SourceError
        When ``obj`` is none of these, or pandas cannot convert a column to Arrow.
    """
    kind = _kind(obj)
    name = f"<{kind}>"
    if isinstance(obj, pa.Table):
        return Frame(name, table=obj)
    if isinstance(obj, pa.RecordBatch):
        return Frame(name, table=pa.Table.from_batches([obj]))
    if kind == "polars.DataFrame":
        return Frame(name, table=obj.to_arrow())
    if kind == "datasets.Dataset":
        return Frame(name, table=obj.with_format("arrow")[:])
    if kind == "datasets.DatasetDict":
        first = next(iter(obj), "train")
        raise SourceError(f"{name}: pick one split, e.g. dataset[{first!r}]")
    if kind == "pandas.DataFrame":
        return Frame(name, table=_from_pandas(obj, name))
    if isinstance(obj, pa.RecordBatchReader) or hasattr(obj, "__arrow_c_stream__"):
        reader = (
            obj if isinstance(obj, pa.RecordBatchReader) else pa.RecordBatchReader.from_stream(obj)
        )
        return _spool(reader, name)
    raise SourceError(
        f"cannot read a {kind} as a dataset; pass a path or URL, a pandas or polars "
        "DataFrame, a pyarrow Table or RecordBatchReader, or a datasets.Dataset"
    )


def _from_pandas(df: Any, name: str) -> pa.Table:
    import numpy as np

    twice = df.columns[df.columns.duplicated()]
    if len(twice):  # pandas allows it; Arrow's conversion refuses with a bare ValueError
        raise SourceError(
            f"{name}: column {str(twice[0])!r} appears more than once; give every column a "
            "unique name"
        )
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        detail = str(exc).splitlines()[0]
        raise SourceError(
            f"{name}: a column cannot be converted to Arrow ({detail}); give each column "
            "one type (e.g. df[col].astype(float) or .astype('string'))"
        ) from exc
    # from_pandas turns NaN in numpy float columns into nulls, which would hide them from
    # the nan check (to torch a NaN feature is a NaN): those columns are taken as they
    # are, zero-copy.
    for i, (_, col) in enumerate(df.items()):
        if isinstance(col.dtype, np.dtype) and col.dtype.kind == "f":
            field = table.schema.field(i)
            table = table.set_column(i, field, pa.array(col.to_numpy(), field.type))
    return table


#: the readers spooled so far: read again, they would give no rows, not an error
_READ: weakref.WeakSet[pa.RecordBatchReader] = weakref.WeakSet()


def _spool(reader: pa.RecordBatchReader, name: str) -> Frame:
    """Write a one-pass stream to a temporary Arrow IPC file, one batch in memory at a time."""
    if reader in _READ:
        raise SourceError(
            f"{name}: this reader was already read (a RecordBatchReader can be read once); "
            "pass a new reader, or a pyarrow Table to read it more than once"
        )
    _READ.add(reader)
    folder = tempfile.TemporaryDirectory(prefix="batchguard-stream-")
    path = os.path.join(folder.name, "stream.arrow")
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
    except (pa.ArrowException, OSError) as exc:
        folder.cleanup()
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SourceError(f"{name}: cannot read the stream ({detail})") from exc
    return Frame(name, spool=folder, path=path)


class _Identity:
    """A key equal only to another key of the very same object, while it lives."""

    __slots__ = ("_ref", "_id")

    def __init__(self, obj: Any) -> None:
        self._id = id(obj)
        try:
            self._ref: Any = weakref.ref(obj)
        except TypeError:  # no weak references: hold it (the key lives as long as a fit)
            self._ref = lambda: obj

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Identity):
            return False
        mine = self._ref()
        return mine is not None and mine is other._ref()

    def __hash__(self) -> int:
        return self._id


def identity_key(obj: Any) -> object:
    """A key for "this very object": equal to another only for the same, still living object.

    An in-memory dataset has no path to compare; its identity is what tells a
    fitted dataset from another (an id alone could be reused once it is freed).

    Parameters
    ----------
    obj : object

    Returns
    -------
    object
    """
    return _Identity(obj)
