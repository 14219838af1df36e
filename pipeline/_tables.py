"""Delta Lake and Iceberg tables as the parquet data files of one version.

A table format keeps, beside its parquet files, a log or metadata that says
which files make up each version. A folder read as plain parquet would also
read files that a later version removed, so :class:`~pipeline.source.Source`
recognises a table folder (``_delta_log/``; ``metadata/*.metadata.json``) and
reads the files of its current version instead, through the format's own
library (``deltalake``; ``pyiceberg``), and records the version read
(:attr:`Source.version <pipeline.source.Source.version>`, the JSON report's
``source_version``). A ``deltalake.DeltaTable`` or ``pyiceberg`` table object,
at whatever version it was opened, is read the same way.

Row ids count the rows of the data files in path order: the same version gives
the same ids. The files are read as any parquet files are (row groups, range
requests in a store, Ray tasks per row group). Not read, with a message saying
so: Delta deletion vectors and column mapping, Iceberg delete files (rows deleted
by merge-on-read); compacting the table first removes them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import SourceError

__all__ = ["Opened", "folder_kind", "is_table", "open_folder", "open_table"]


@dataclass
class Opened:
    """A table's data files, with what reads them and the version they belong to."""

    name: str
    #: (path as ``io`` reads it, hive-style partition values)
    files: list[tuple[str, dict[str, str | None]]]
    version: dict[str, Any]
    #: the store the files are in; ``None`` for the local disk
    io: Any = None
    notes: list[str] = field(default_factory=list)


def folder_kind(entries: Iterable[str], inside: Callable[[str], Iterable[str]]) -> str | None:
    """``"delta"`` or ``"iceberg"`` for a table folder, else ``None``.

    Parameters
    ----------
    entries : iterable of str
        The names directly in the folder.
    inside : callable
        The names in one of its sub-folders.

    Returns
    -------
    str or None
    """
    names = set(entries)
    if "_delta_log" in names:
        return "delta"
    if "metadata" in names and any(n.endswith(".metadata.json") for n in inside("metadata")):
        return "iceberg"
    return None


def is_table(obj: Any) -> bool:
    """Whether ``obj`` is a ``deltalake.DeltaTable`` or a ``pyiceberg`` table."""
    return _object_kind(obj) is not None


def _object_kind(obj: Any) -> str | None:
    for cls in type(obj).__mro__:
        if cls.__module__.startswith("deltalake") and cls.__name__ == "DeltaTable":
            return "delta"
        if cls.__module__.startswith("pyiceberg.table") and cls.__name__ == "Table":
            return "iceberg"
    return None


def open_table(obj: Any) -> Opened:
    """The data files of a ``DeltaTable`` or ``pyiceberg`` table object, at its version."""
    if _object_kind(obj) == "delta":
        return _delta(obj, f"<deltalake.DeltaTable {_shown(obj.table_uri)}>")
    return _iceberg(obj, f"<pyiceberg table {'.'.join(obj.name())}>")


def open_folder(kind: str, given: str, shown: str, io: Any) -> Opened:
    """The data files of the current version of the table folder at ``given``.

    Parameters
    ----------
    kind : {"delta", "iceberg"}
    given : str
        The path or URL as the user gave it.
    shown : str
        The same without credentials, for messages.
    io : object
        What the folder was found with (the local disk or a store); the data
        files are read with it too.
    """
    if kind == "delta":
        deltalake = _need("deltalake", "delta", shown)
        try:
            table = deltalake.DeltaTable(given)
        except Exception as exc:  # noqa: BLE001 - delta-rs raises its own error types
            raise SourceError(f"{shown}: cannot open the Delta table ({_first(exc)})") from exc
        return _delta(table, shown, io)
    _need("pyiceberg", "iceberg", shown)
    from pyiceberg.table import StaticTable

    location = _latest_metadata(given, io)
    try:
        table = StaticTable.from_metadata(location)
    except Exception as exc:  # noqa: BLE001 - pyiceberg raises many error types
        raise SourceError(f"{shown}: cannot open the Iceberg table ({_first(exc)})") from exc
    return _iceberg(table, shown, io)


def _need(module: str, extra: str, shown: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SourceError(
            f"{shown}: a {extra} table; reading it needs {module}: "
            f"pip install 'batchguard[{extra}]'"
        ) from exc


def _delta(table: Any, name: str, io: Any = None) -> Opened:
    import pyarrow as pa

    protocol = table.protocol()
    features = set(protocol.reader_features or ())
    unsupported = sorted(features & {"deletionVectors", "columnMapping"})
    if unsupported:
        raise SourceError(
            f"{name}: the Delta table uses {', '.join(unsupported)}, which batchguard does not "
            "read; compact it (OPTIMIZE / REORG ... APPLY (PURGE)) or validate an export"
        )
    actions = pa.table(table.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    keys = [c for c in actions.column_names if c.startswith("partition.")]
    values = {k[len("partition.") :]: actions.column(k).to_pylist() for k in keys}
    root = table.table_uri
    io, base = _io_for(root, io)
    files = []
    for i, rel in enumerate(paths):
        part = {k: None if v[i] is None else str(v[i]) for k, v in values.items()}
        files.append((_join(base, unquote(rel)), part))
    files.sort(key=lambda f: f[0])
    return Opened(name, files, {"format": "delta", "version": int(table.version())}, io)


def _iceberg(table: Any, name: str, io: Any = None) -> Opened:
    snapshot = table.current_snapshot()
    version = {
        "format": "iceberg",
        "snapshot_id": None if snapshot is None else int(snapshot.snapshot_id),
        "metadata": _shown(table.metadata_location),
    }
    if snapshot is None:
        raise SourceError(f"{name}: the Iceberg table has no snapshot (no data written yet)")
    tasks = list(table.scan().plan_files())
    if any(t.delete_files for t in tasks):
        raise SourceError(
            f"{name}: the Iceberg snapshot has delete files (rows deleted by merge-on-read), "
            "which batchguard does not apply; rewrite the data files (compaction) first"
        )
    uris = sorted(t.file.file_path for t in tasks)
    if not uris:
        return Opened(name, [], version, io)
    io, _ = _io_for(uris[0], io)
    return Opened(name, [(_inner(u), {}) for u in uris], version, io)


def _io_for(uri: str, io: Any) -> tuple[Any, str]:
    """What reads ``uri`` (``io`` when given, else the disk or the URL's store), and its path."""
    scheme = urlsplit(uri).scheme.lower()
    local = scheme in ("", "file") or re.match(r"^[A-Za-z]:[\\/]", uri) is not None
    if io is None and not local:  # None: the local disk
        from ._stores import open_store

        io, _ = open_store(uri)
    return io, _inner(uri) if not local else _local_path(uri)


def _inner(uri: str) -> str:
    """A data file's URI as its store's path (``s3://b/k`` -> ``b/k``; ``file:///p`` -> ``/p``)."""
    parts = urlsplit(uri)
    if parts.scheme.lower() in ("", "file"):
        return _local_path(uri)
    return f"{parts.netloc}{parts.path}" if parts.netloc else parts.path.lstrip("/")


def _local_path(uri: str) -> str:
    if uri.startswith("file://"):
        return unquote(urlsplit(uri).path)
    return uri


def _join(base: str, rel: str) -> str:
    return os.path.join(base, rel) if "://" not in base else f"{base.rstrip('/')}/{rel}"


def _latest_metadata(given: str, io: Any) -> str:
    """The newest ``metadata/*.metadata.json`` of an Iceberg table folder (by version number)."""
    from ._stores import is_url

    folder = f"{given.rstrip('/')}/metadata"
    if is_url(given):
        from ._stores import open_store

        store, inner = open_store(folder)
        names = [rel for _, rel, _ in store.listing(inner)]
    else:
        names = os.listdir(folder)
    found = [n for n in names if n.endswith(".metadata.json") and "/" not in n]

    def number(name: str) -> int:
        digits = re.match(r"^v?(\d+)", name)
        return int(digits.group(1)) if digits else -1

    newest = max(found, key=lambda n: (number(n), n))
    return f"{folder}/{newest}"


def _shown(uri: str) -> str:
    from ._stores import redact

    return redact(uri)


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
