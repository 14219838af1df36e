"""Atomic outputs: written under a hidden temporary name beside the target, then renamed.

Every file batchguard writes goes through here, so that a reader (or the next run)
sees either the previous output or the whole new one, never a part of it, and an
interrupted run leaves at most a hidden ``.<name>.<pid>.<token>.tmp`` beside it:

- :func:`write_text`: a small text file (reports, schemas, a saved scaler);
- :class:`StagedFile`: a file that a writer streams into (parquet, Arrow IPC);
  a context manager, or two steps (:meth:`~StagedFile.sync` every file first, then
  :meth:`~StagedFile.publish` them) when several outputs must appear together;
- :func:`staging_dir` and :func:`publish_dir`: a folder of part files written by
  several processes, renamed as a whole;
- :func:`check_distinct`: no two outputs of a run, and no output and input, share a file;
- :func:`staged`: a :class:`StagedFile`, or for a URL (``s3://bucket/out.parquet``) a
  :class:`pipeline._stores.StagedObject`, written under a hidden temporary key and
  moved to the final key when complete.

The data is flushed to disk (``fsync``) before the rename: a rename that reached the
disk before the data would expose an empty or short file after a crash. Special files
(``/dev/null``, ``/dev/stdout``, a fifo) are written in place: renaming over them would
replace the device.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._staged import Staged


def _temporary_name(target: Path) -> Path:
    # Hidden, so that globs and listings of outputs pass it by; the pid and a random token
    # keep processes and threads writing the same target from sharing one temporary file.
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') written data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedFile(Staged):
    """One output file, written under a temporary name and renamed when complete.

    Write to :attr:`temp` (any writer that takes a path), then either leave the
    ``with`` block (renamed on success, removed on an exception) or call
    :meth:`sync` and :meth:`publish` (or :meth:`discard`) yourself.

    Parameters
    ----------
    path : str or os.PathLike
        The final name.
    durable : bool, default True
        Flush the data to disk before the rename. Only for files that are rebuilt
        whenever they are needed (caches): they still appear whole or not at all,
        but a crash may leave them short.

    Attributes
    ----------
    path : pathlib.Path
        The final name.
    temp : pathlib.Path
        Where to write: a hidden name beside ``path``, or ``path`` itself when it is
        a special file such as ``/dev/null``.

    Examples
    --------
    >>> with StagedFile("out.bin") as staged:  # doctest: +SKIP
    ...     staged.temp.write_bytes(b"complete or absent")
    """

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        self._in_place = self.path.exists() and not self.path.is_file()
        self.temp = self.path if self._in_place else _temporary_name(self.path)

    def sink(self) -> str:
        """Where a writer writes: :attr:`temp` as a string (a URL output gives a stream)."""
        return str(self.temp)

    def sync(self) -> None:
        """Flush the finished temporary file to disk (it keeps its temporary name)."""
        if self.durable and not self._in_place:
            _fsync(self.temp)

    def publish(self) -> None:
        """Move the finished temporary file to its final name, replacing what was there."""
        if not self._in_place:
            os.replace(self.temp, self.path)

    def discard(self) -> None:
        """Remove the temporary file (a special file written in place is left alone)."""
        if not self._in_place:
            self.temp.unlink(missing_ok=True)


def staged(path: str | os.PathLike[str], *, durable: bool = True) -> Any:
    """A :class:`StagedFile` for a local path, a ``StagedObject`` for a URL.

    Both have ``sink()`` (a path or stream to write to), ``sync``, ``publish``,
    ``commit``, ``discard`` and the context-manager form.

    Parameters
    ----------
    path : str or os.PathLike
        A local path, or a URL such as ``s3://bucket/out.parquet``.
    durable : bool, default True
        See :class:`StagedFile` (a store's object is durable once written).

    Returns
    -------
    StagedFile or pipeline._stores.StagedObject
    """
    from ._stores import is_url

    if is_url(path):
        from ._stores import StagedObject

        return StagedObject(str(path))
    return StagedFile(path, durable=durable)


def remove_file(path: str | os.PathLike[str]) -> None:
    """Delete a file that may be gone already (a cache whose owner is collected).

    Parameters
    ----------
    path : str or os.PathLike
    """
    try:
        os.remove(path)
    except OSError:
        pass


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the whole new one.

    Parameters
    ----------
    path : str or os.PathLike
        A local path, or a URL (written to a temporary key, then moved).
    text : str
    """
    from ._stores import is_url

    if is_url(path):
        with staged(path) as obj:
            obj.sink().write(text.encode("utf-8"))
        return
    with StagedFile(path) as file, open(file.temp, "w", encoding="utf-8") as fh:
        fh.write(text)


def check_distinct(
    outputs: Mapping[str, str | os.PathLike[str] | None],
    inputs: Mapping[str, str | os.PathLike[str] | None] | None = None,
) -> None:
    """Refuse two outputs that name one file, or an output that names an input file.

    Parameters
    ----------
    outputs, inputs : mapping of str to path or None
        Each path by the name the user gave it (``--clean``, ``-o``, ``the input``);
        ``None`` is an output or input not asked for. Special files (``/dev/null``)
        may be shared.

    Raises
    ------
    UsageError
        Naming both options and the path.
    """
    from ._stores import is_url, redact
    from .errors import UsageError

    def key(path: str | os.PathLike[str]) -> str | None:
        if is_url(path):
            return str(path)
        local = Path(path)
        if local.exists() and not (local.is_file() or local.is_dir()):
            return None
        return str(local.resolve())

    seen: dict[str, str] = {}
    for name, path in (inputs or {}).items():
        if path is not None and (k := key(path)) is not None:
            seen.setdefault(k, name)
    for name, path in outputs.items():
        if path is None or (k := key(path)) is None:
            continue
        other = seen.setdefault(k, name)
        if other == name:
            continue
        shown = redact(os.fspath(path))  # no credentials of a URL in the message
        if inputs and other in inputs:
            raise UsageError(f"{name} {shown} would overwrite {other}; choose another path")
        raise UsageError(f"{other} and {name} both name {shown}; give each its own path")


def staging_dir(target: str | os.PathLike[str]) -> Path:
    """The hidden folder beside ``target`` in which its parts are written (not created).

    Parameters
    ----------
    target : str or os.PathLike
        The output folder, published with :func:`publish_dir`.

    Returns
    -------
    pathlib.Path
    """
    return _temporary_name(Path(target))


def publish_dir(staging: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Move a finished staging folder to ``target``, replacing an earlier output.

    Hidden files left in the folder (temporary files of writers that failed and were
    retried) are removed; every part and then the folder itself are flushed to disk
    before the rename. An earlier ``target`` is moved aside first and removed only
    once the new folder carries the name.

    Parameters
    ----------
    staging : str or os.PathLike
        From :func:`staging_dir`, holding the complete parts.
    target : str or os.PathLike
    """
    staging, target = Path(staging), Path(target)
    for stray in staging.glob(".*"):
        stray.unlink()
    for part in staging.iterdir():
        _fsync(part)
    _fsync(staging)
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    os.replace(target, old)
    os.replace(staging, target)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()
