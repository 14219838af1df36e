"""Datasets and outputs in object stores and remote file systems, by URL.

``s3://``, ``gs://``, ``abfs://`` and ``hdfs://`` URLs go to pyarrow's own file
systems (:mod:`pyarrow.fs`); any other scheme fsspec knows (``hf://``,
``memory://``, ``az://``, ``sftp://``...) goes through fsspec, wrapped in
:class:`pyarrow.fs.PyFileSystem`. Credentials come from where those libraries
look for them (``AWS_*`` variables and ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_*``, ``HF_TOKEN``...), or from a file system object passed in; a
URL's ``user:password@`` and secret query parameters are never shown
(:func:`redact`).

Reads are range requests: a parquet file is read a column chunk at a time,
never as a whole object. Transient failures are retried by the store's client
(pyarrow's S3 client: 3 attempts with backoff); what still fails becomes one
:class:`~pipeline.errors.SourceError` line naming the URL and what to do
(:func:`describe`).

Outputs by URL (:class:`StagedObject`) are written under a hidden temporary key
beside the final one, then moved (S3: a server-side copy, then the temporary
key is deleted), so the final key holds the whole object or nothing.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa

from ._staged import Staged
from .errors import SourceError, UsageError

__all__ = [
    "Store",
    "StagedObject",
    "check_output_url",
    "classify",
    "describe",
    "is_url",
    "missing_bucket",
    "open_store",
    "redact",
]

# "C:\data" is a path, not a URL: a scheme has at least two letters.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")

#: query parameters whose value is a secret (pyarrow's S3 and Azure URL options, SAS tokens)
_SECRET_PARAMS = ("secret", "key", "token", "password", "sig", "credential")


def is_url(path: object) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path.

    ``file://`` URLs count as URLs; :func:`open_store` reads them from the local disk.

    Parameters
    ----------
    path : object

    Returns
    -------
    bool
    """
    return isinstance(path, str) and bool(_URL.match(path))


def redact(url: str) -> str:
    """``url`` without its credentials: ``user:password@`` and secret query values.

    Parameters
    ----------
    url : str

    Returns
    -------
    str

    Examples
    --------
    >>> redact("s3://AKIA:hunter2@bucket/data/?region=eu-west-1&secret_key=x")
    's3://***@bucket/data/?region=eu-west-1&secret_key=***'
    """
    if not is_url(url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        hidden = [
            (k, "***" if any(s in k.lower() for s in _SECRET_PARAMS) else v) for k, v in pairs
        ]
        query = urlencode(hidden, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass
class Store:
    """A file system and how to name its paths to a person.

    Parameters
    ----------
    fs : pyarrow.fs.FileSystem
    scheme : str
        The URL scheme (``"s3"``), or ``""`` for a file system passed in without one.
    """

    fs: Any
    scheme: str
    #: parquet footers read so far, by path
    footers: dict[str, Any] = field(default_factory=dict, repr=False)

    def url(self, path: str) -> str:
        """``path`` of this store as a URL (redacted)."""
        if not self.scheme:
            return path
        return redact(f"{self.scheme}://{path.lstrip('/')}" if self.scheme != "file" else path)

    def info(self, path: str) -> Any:
        """The :class:`pyarrow.fs.FileInfo` of ``path``."""
        return self.fs.get_file_info(path)

    def listing(self, root: str) -> list[tuple[str, str, int]]:
        """Every file below ``root``: (path, path relative to root, size), in path order."""
        from pyarrow.fs import FileSelector, FileType

        infos = self.fs.get_file_info(FileSelector(root, recursive=True))
        root = root.rstrip("/")
        out = [
            (i.path, i.path[len(root) :].lstrip("/"), i.size)
            for i in infos
            if i.type == FileType.File
        ]
        return sorted(out)

    def open_input(self, path: str) -> pa.NativeFile:
        """A random-access file over ``path`` (reads are range requests)."""
        return self.fs.open_input_file(path)

    def head(self, path: str, n: int) -> bytes:
        """The first ``n`` bytes of ``path``."""
        with self.fs.open_input_file(path) as fh:
            return fh.read(n)

    def parquet(self, path: str) -> Any:
        """``path`` opened as :func:`pipeline.source.parquet_file` does, its footer read once."""
        import pyarrow.parquet as pq

        # Each open would fetch the footer again (a round trip or two per file): keep it.
        footer = self.footers.get(path)
        pf = pq.ParquetFile(
            path, filesystem=self.fs, metadata=footer, pre_buffer=False, memory_map=False
        )
        if footer is None:
            self.footers[path] = pf.metadata
        return pf

    def ipc_file(self, path: str) -> Any:
        """An Arrow IPC file reader over ``path`` (record batches read by range)."""
        return pa.ipc.open_file(self.fs.open_input_file(path))

    def ipc_stream(self, path: str) -> Any:
        """An Arrow IPC stream reader over ``path``."""
        return pa.ipc.open_stream(self.fs.open_input_stream(path))

    def csv_input(self, path: str) -> Any:
        """``path`` as a stream for the CSV reader."""
        return self.fs.open_input_stream(path)


def open_store(path: str, filesystem: Any = None) -> tuple[Store, str]:
    """The store of a URL (or a path inside ``filesystem``) and the path within it.

    Parameters
    ----------
    path : str
        A URL, or with ``filesystem`` a path inside it (``"bucket/prefix"``).
    filesystem : pyarrow.fs.FileSystem or fsspec.AbstractFileSystem, optional

    Returns
    -------
    (Store, str)

    Raises
    ------
    SourceError
        When no file system serves the URL's scheme, or the store cannot be set up.
    """
    if filesystem is not None:
        return Store(_as_arrow_fs(filesystem), _scheme_of(filesystem)), _strip_scheme(path)
    scheme = urlsplit(path).scheme.lower()
    if scheme == "file":
        from pyarrow.fs import LocalFileSystem

        return Store(LocalFileSystem(), "file"), urlsplit(path).path
    from pyarrow.fs import FileSystem

    shown = redact(path)
    try:
        fs, inner = FileSystem.from_uri(path)
        return Store(fs, scheme), inner
    except pa.ArrowInvalid as exc:
        if "nrecognized" not in str(exc) and "not supported" not in str(exc):
            raise SourceError(f"{shown}: {_first_line(exc)}; check the URL") from exc
    except OSError as exc:
        raise describe(shown, exc) from exc
    return _fsspec_store(path, scheme, shown)


def _fsspec_store(path: str, scheme: str, shown: str) -> tuple[Store, str]:
    try:
        import fsspec
    except ImportError as exc:
        raise SourceError(
            f"{shown}: no file system for {scheme}:// URLs; install fsspec and its "
            f"{scheme} implementation (e.g. pip install 'batchguard[s3]' for s3fs)"
        ) from exc
    try:
        fs, inner = fsspec.core.url_to_fs(path)
    except (ImportError, ValueError) as exc:
        raise SourceError(
            f"{shown}: no file system for {scheme}:// URLs ({_first_line(exc)}); install the "
            "fsspec implementation it names, or pass a local path"
        ) from exc
    return Store(_as_arrow_fs(fs), scheme), inner


def _as_arrow_fs(filesystem: Any) -> Any:
    import pyarrow.fs as pafs

    if isinstance(filesystem, pafs.FileSystem):
        return filesystem
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))


def _scheme_of(filesystem: Any) -> str:
    name = getattr(filesystem, "type_name", None)  # pyarrow: "s3", "gcs", "local"...
    if name is None:  # fsspec: protocol is a str or a tuple of aliases
        proto = getattr(filesystem, "protocol", "")
        name = proto[0] if isinstance(proto, (tuple, list)) else proto
    return {"local": "", "gcs": "gs", "abfs": "abfs", "file": ""}.get(name, name or "")


def _strip_scheme(path: str) -> str:
    return path.split("://", 1)[1] if is_url(path) else path


def _mentions(text: str, tokens: tuple[str, ...]) -> bool:
    """Whether ``text`` holds one of ``tokens``; an HTTP status only as a whole number.

    A bare substring test took the port in ``127.0.0.1:54013`` for a 401.
    """
    return any(re.search(rf"(?<!\d){t}(?!\d)", text) if t.isdigit() else t in text for t in tokens)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_NOT_FOUND = ("NoSuchKey", "NOT_FOUND", "does not exist", "Not Found", "404", "No such file")
_NO_BUCKET = ("NoSuchBucket", "NO_SUCH_BUCKET", "bucket does not exist")
_DENIED = (
    "ACCESS_DENIED", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "Forbidden", "403", "401", "Unauthorized", "INVALID_ACCESS_KEY", "permission",
    "Permission", "ExpiredToken",
)  # fmt: skip
_UNREACHABLE = (
    "NETWORK_CONNECTION", "Could not connect", "Couldn't connect", "connect to server",
    "timed out", "Timeout", "TIMEOUT", "curlCode", "Connection refused", "Could not resolve",
    "REQUEST_TIMEOUT", "SLOW_DOWN", "Service Unavailable", "503",
)  # fmt: skip


def describe(url: str, exc: BaseException, doing: str = "read") -> SourceError:
    """One line for a store error: what went wrong at ``url``, and what to do.

    Parameters
    ----------
    url : str
        Already redacted.
    exc : BaseException
        What the file system raised.
    doing : str, default "read"
        ``"read"`` or ``"write"``.

    Returns
    -------
    SourceError
    """
    return classify(url, exc, doing) or SourceError(
        f"{url}: cannot {doing} ({_first_line(exc)}); check the URL and the credentials"
    )


def classify(url: str, exc: BaseException, doing: str = "read") -> SourceError | None:
    """:func:`describe` for the failures a store has (missing, denied, unreachable), else ``None``.

    ``None`` leaves the error to the caller: a damaged file, say, which the store
    served correctly.
    """
    text = str(exc)
    detail = _first_line(exc)
    if _mentions(text, _NO_BUCKET):
        return SourceError(f"{url}: the bucket does not exist; check the bucket name and endpoint")
    # A transport failure first: its text (ports, byte counts) can hold a status-like number.
    if isinstance(exc, (ConnectionError, TimeoutError)) or _mentions(text, _UNREACHABLE):
        return SourceError(
            f"{url}: the store did not answer ({detail}), also on retry; check the endpoint "
            "(AWS_ENDPOINT_URL) and the network, then run again"
        )
    if isinstance(exc, PermissionError) or _mentions(text, _DENIED):
        return SourceError(
            f"{url}: access denied ({detail}); check the credentials the store's client finds "
            f"(AWS_ACCESS_KEY_ID/AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*, "
            f"HF_TOKEN) and that they may {doing} it"
        )
    if isinstance(exc, FileNotFoundError) or _mentions(text, _NOT_FOUND):
        return SourceError(
            f"{url}: no such object or prefix (it may have been deleted while being read); "
            "check the URL"
        )
    return None


#: schemes whose first path component is a bucket (or container)
_BUCKETED = ("s3", "gs", "gcs", "abfs", "abfss", "az")


def missing_bucket(store: Store, path: str, url: str) -> SourceError | None:
    """The error for ``path`` not found because its bucket is not there, else ``None``."""
    from pyarrow.fs import FileType

    bucket = path.lstrip("/").split("/", 1)[0]
    if store.scheme not in _BUCKETED or bucket == path.strip("/"):
        return None
    if store.info(bucket).type != FileType.NotFound:
        return None
    return SourceError(f"{url}: the bucket does not exist; check the bucket name and endpoint")


def check_output_url(url: str, inputs: list[str], what: str, suffixes: tuple[str, ...]) -> str:
    """Refuse a URL output with the wrong suffix, inside the input, or in a missing bucket.

    Parameters
    ----------
    url : str
    inputs : list of str
        The input's URL (redacted), which the output must not overwrite.
    what : str
        The option's name, for the message (``"quarantine"``).
    suffixes : tuple of str
        The file name endings allowed (any, when empty).

    Returns
    -------
    str
        ``url``, unchanged.

    Raises
    ------
    UsageError
        On a suffix or overlap problem.
    SourceError
        When the store cannot be reached or the bucket does not exist.
    """
    shown = redact(url)
    if urlsplit(url).scheme.lower() in ("http", "https"):
        raise UsageError(
            f"--{what} {shown}: an http(s) URL can be read, not written; write to a path "
            "or an object store (s3://, gs://, abfs://)"
        )
    if suffixes and not urlsplit(url).path.lower().endswith(suffixes):
        raise UsageError(f"--{what} {shown}: use a {suffixes[0]} file name")
    for src in inputs:
        base = src.rstrip("/")
        if shown == base or shown.startswith(base + "/"):
            raise UsageError(
                f"--{what} {shown} would overwrite the input {src}; choose another output URL"
            )
    from pyarrow.fs import FileType

    store, path = open_store(url)
    top = path.lstrip("/").split("/", 1)[0]
    try:
        found = store.info(top).type
    except OSError as exc:
        raise describe(shown, exc, "write") from exc
    if found == FileType.NotFound and store.scheme in ("s3", "gs", "gcs", "abfs", "abfss"):
        raise SourceError(f"{shown}: the bucket does not exist; create it or check the name")
    return url


class StagedObject(Staged):
    """One output object written under a hidden temporary key, moved to its final key when whole.

    The same steps as :class:`pipeline._atomic.StagedFile`: write to :meth:`sink`,
    then :meth:`sync` (the temporary object is complete) and :meth:`publish`
    (moved to the final key), or :meth:`discard`.

    Parameters
    ----------
    url : str
        The final object's URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = url
        self._store, self._key = open_store(url)
        head, _, name = self._key.rpartition("/")
        token = f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        self.temp = f"{head}/{token}" if head else token
        self._stream: pa.NativeFile | None = None

    def sink(self) -> Any:
        """The output stream to write into (opened on the first call).

        A file-like object whose failures (the store gone, access denied) are one
        :class:`~pipeline.errors.SourceError` line naming the URL.
        """
        if self._stream is None:
            try:
                self._stream = self._store.fs.open_output_stream(self.temp)
            except OSError as exc:
                raise describe(redact(self.url), exc, "write") from exc
        return _Guarded(self._stream, redact(self.url))

    def sync(self) -> None:
        """Complete the temporary object (an S3 multipart upload finishes here)."""
        stream, self._stream = self._stream, None
        try:
            if stream is None:  # nothing written: an empty object
                stream = self._store.fs.open_output_stream(self.temp)
            stream.close()
        except OSError as exc:
            raise describe(redact(self.url), exc, "write") from exc

    def publish(self) -> None:
        """Move the complete temporary object to the final key, replacing what was there."""
        try:
            self._store.fs.move(self.temp, self._key)
        except OSError as exc:
            raise describe(redact(self.url), exc, "write") from exc

    def discard(self) -> None:
        """Drop the temporary object; the final key is left as it was."""
        stream, self._stream = self._stream, None
        for step in (
            (lambda: stream.close()) if stream is not None else None,
            lambda: self._store.fs.delete_file(self.temp),
        ):
            if step is None:
                continue
            try:
                step()
            except (OSError, pa.ArrowException):  # the store may be the thing that failed
                pass


class _Guarded:
    """A store's output stream whose I/O errors say which URL failed and what to do."""

    def __init__(self, stream: pa.NativeFile, url: str) -> None:
        self._stream = stream
        self._url = url

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, method)(*args)
        except OSError as exc:
            raise describe(self._url, exc, "write") from exc

    def write(self, data: Any) -> int:
        return int(self._call("write", data))

    def flush(self) -> None:
        self._call("flush")

    def tell(self) -> int:
        return int(self._call("tell"))

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return bool(self._stream.closed)

    def close(self) -> None:
        """Left to :meth:`StagedObject.sync`: closing completes the object."""
