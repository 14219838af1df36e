"""``make_loader``: from a dataset file to a clean, scaled, stratified DataLoader.

The steps, each streamed and memory-bounded:

1. validate the dataset, writing its clean rows to an Arrow IPC file (bad rows
   go to quarantine, with their reasons, if asked);
2. leave out degenerate features (constant, near-constant, zero IQR), saying so;
3. fit the :class:`~pipeline.scaler.RobustScaler` on the clean rows (exact,
   streamed);
4. write the scaled features as one ``fixed_size_list<float32>`` column to a
   second Arrow IPC file, which is memory-mapped: its body *is* a row-major
   float32 matrix, so a batch is one ``numpy.take`` of its rows, and worker
   processes share the pages instead of copying the data;
5. wrap it in a real :class:`torch.utils.data.DataLoader` whose sampler yields
   whole batches of indices (``batch_size=None``; numpy arrays when stratified),
   so the dataset gathers a batch at a time instead of row by row.

Features are the columns that :func:`pipeline.profiling.is_feature_type` accepts
(integers, floats, decimals, booleans), the same rule :class:`~pipeline.scaler.RobustScaler`
follows; each becomes a float32 feature (booleans 0 or 1).

Each batch is a :class:`Batch` named tuple ``(features, label, row_id)``:
``x, y, row_id = batch``; ``row_id`` holds the dataset row ids for provenance.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from ._atomic import StagedFile
from .errors import UsageError
from .findings import Finding
from .profiling import is_feature_type
from .sampler import StratifiedBatchSampler
from .source import ROW_ID, Source, open_source

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report
    from .scaler import RobustScaler

__all__ = [
    "DEGENERATE",
    "FEATURES",
    "LABEL",
    "ArrowMatrixDataset",
    "Batch",
    "LoaderInfo",
    "make_loader",
    "write_feature_cache",
]

log = logging.getLogger("batchguard")

FEATURES = "features"
LABEL = "label"
DEGENERATE = ("constant", "near_constant", "zero_iqr")
#: rows per record batch of a cache that is too large to keep as one matrix
_CHUNK_BYTES = 64 << 20


class Batch(NamedTuple):
    """One training batch: ``x, y, row_id = batch``."""

    features: torch.Tensor
    label: torch.Tensor | None
    row_id: torch.Tensor


@dataclass
class LoaderInfo:
    """What :func:`make_loader` decided, kept on the loader as ``loader.batchguard``.

    Attributes
    ----------
    features : list of str
        The feature columns, in the order of the feature tensor's columns.
    dropped_features : dict of str to str
        Degenerate features left out, with the check that found them.
    label : str or None
    classes : list or None
        The label's classes in code order (``None`` for a regression target).
    report : Report
        The validation run over the source.
    scaler : RobustScaler or None
        The scaler fitted on the clean rows and applied to the features.
    cache_path : str
        The memory-mapped feature cache.
    findings : list of Finding
        The degenerate-feature findings of ``report``.
    """

    features: list[str]
    dropped_features: dict[str, str]
    label: str | None
    classes: list[Any] | None
    report: Report
    scaler: RobustScaler | None
    cache_path: str
    findings: list[Finding] = field(default_factory=list)


class ArrowMatrixDataset(Dataset[Batch]):
    """Rows of a memory-mapped feature cache, fetched a whole batch at a time.

    ``dataset[indices]`` (a sequence of row positions) returns a :class:`Batch`.
    The file is opened lazily in each process, so the dataset pickles small
    and worker processes share the page cache.

    Parameters
    ----------
    path : str
        Arrow IPC file written by :func:`write_feature_cache`.
    temporary_dir : tempfile.TemporaryDirectory, optional
        The temporary directory that holds ``path``, owned by the dataset: it is
        removed once the dataset is (worker processes get the path only).
    """

    def __init__(self, path: str, *, temporary_dir: tempfile.TemporaryDirectory[str] | None = None):
        self.path = path
        self._temporary_dir = temporary_dir
        self._open()

    def _open(self) -> None:
        reader = pa.ipc.open_file(pa.memory_map(self.path, "r"))
        self._chunks: list[np.ndarray] = []
        labels, ids = [], []
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            feats = batch.column(FEATURES)
            width = feats.type.list_size
            # Zero-copy: the values buffer of a fixed-size list is the row-major matrix.
            self._chunks.append(feats.values.to_numpy().reshape(-1, width))
            ids.append(batch.column(ROW_ID).to_numpy())
            if LABEL in batch.schema.names:
                labels.append(batch.column(LABEL).to_numpy())
        sizes = [c.shape[0] for c in self._chunks]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        row_ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        # Label and row id side by side in one record per row: a batch gathers both with one
        # random access per row instead of two (``labels``/``row_ids`` are views of it).
        fields = [(LABEL, np.result_type(*labels))] if labels else []
        self._meta = np.empty(row_ids.size, np.dtype([*fields, (ROW_ID, np.int64)], align=True))
        self._meta[ROW_ID] = row_ids
        if labels:
            np.concatenate(labels, out=self._meta[LABEL])
        self.row_ids: np.ndarray = self._meta[ROW_ID]
        self.labels: np.ndarray | None = self._meta[LABEL] if labels else None
        self.num_features = self._chunks[0].shape[1] if self._chunks else 0

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._temporary_dir = None  # a copy never removes the original's files
        self._open()

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, indices: Any) -> Batch:
        idx = np.asarray(indices, dtype=np.int64)
        if len(self._chunks) == 1:
            x = self._chunks[0].take(idx, axis=0)
        else:
            x = self._gather_chunked(idx)
        meta = self._meta.take(idx)
        y = None if self.labels is None else torch.from_numpy(np.ascontiguousarray(meta[LABEL]))
        return Batch(torch.from_numpy(x), y, torch.from_numpy(np.ascontiguousarray(meta[ROW_ID])))

    def _gather_chunked(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((idx.size, self.num_features), dtype=np.float32)
        which = np.searchsorted(self._starts, idx, side="right") - 1
        for chunk in np.unique(which):
            sel = which == chunk
            out[sel] = np.take(self._chunks[chunk], idx[sel] - self._starts[chunk], axis=0)
        return out


def write_feature_cache(
    src: Source,
    features: Sequence[str],
    label: str | None,
    path: str,
    *,
    scaler: RobustScaler | None = None,
    classes: list[Any] | None = None,
    max_matrix_bytes: int = 4 << 30,
    chunk_bytes: int = _CHUNK_BYTES,
) -> None:
    """Write the (scaled) feature matrix, label and row ids of ``src`` to an Arrow IPC file.

    Up to ``max_matrix_bytes`` the features go into one record batch, so the
    memory-mapped file is a single contiguous matrix; beyond it, into record
    batches of ``chunk_bytes`` (64 MiB), so building the cache never holds the
    whole dataset.
    String labels are written as their position in ``classes``. The file appears
    under ``path`` only when complete (written under a hidden temporary name first).
    """
    width = len(features)
    row_bytes = 4 * max(width, 1)
    n = src.num_rows
    fits = n is not None and n * row_bytes <= max_matrix_bytes
    capacity = max(1, n if fits and n else chunk_bytes // row_bytes)
    buffer = _CacheBuffer(capacity, width, label is not None)
    writer = None
    # Not durable: the cache is rebuilt by every make_loader call, and flushing it to disk
    # would cost as much again as writing it.
    staged = StagedFile(path, durable=False)
    try:
        columns = [*features] + ([label] if label else [])
        for batch in src.iter_batches(columns=columns):
            start = 0
            while start < batch.num_rows:
                start += buffer.fill(batch.slice(start), features, label, classes)
                if buffer.full:
                    writer = buffer.flush(writer, str(staged.temp), scaler)
        if buffer.rows or writer is None:
            writer = buffer.flush(writer, str(staged.temp), scaler)
        writer.close()
        staged.commit()
    except BaseException:
        if writer is not None:
            writer.close()
        staged.discard()
        raise


class _CacheBuffer:
    """Preallocated rows of the feature cache, filled batch by batch, written when full."""

    def __init__(self, capacity: int, width: int, with_label: bool):
        self.x = np.empty((capacity, width), dtype=np.float32)
        self.ids = np.empty(capacity, dtype=np.int64)
        self.y: np.ndarray | None = None
        self.with_label = with_label
        self.rows = 0

    @property
    def full(self) -> bool:
        return self.rows == self.x.shape[0]

    def fill(
        self,
        batch: pa.RecordBatch,
        features: Sequence[str],
        label: str | None,
        classes: list[Any] | None,
    ) -> int:
        """Copy as many rows of ``batch`` as fit; returns how many."""
        n = min(batch.num_rows, self.x.shape[0] - self.rows)
        rows = slice(self.rows, self.rows + n)
        for j, name in enumerate(features):
            self.x[rows, j] = _feature_values(batch.column(name).slice(0, n))
        self.ids[rows] = batch.column(ROW_ID).slice(0, n).to_numpy(zero_copy_only=False)
        if label is not None:
            y = _label_values(batch.column(label).slice(0, n), classes)
            if self.y is None:
                self.y = np.empty(self.x.shape[0], dtype=y.dtype)
            self.y[rows] = y
        self.rows += n
        return n

    def flush(self, writer: Any, tmp: str, scaler: RobustScaler | None) -> Any:
        """Write the filled rows as one record batch (opening the file first if needed)."""
        x = self.x[: self.rows]
        if scaler is not None:
            with warnings.catch_warnings():
                # Fitted on named columns, applied to the matrix of those same columns.
                warnings.filterwarnings("ignore", message="X does not have valid feature names")
                x = np.asarray(scaler.transform(x), dtype=np.float32)
        arrays = [pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), self.x.shape[1])]
        names = [FEATURES]
        if self.with_label:
            y = self.y[: self.rows] if self.y is not None else np.empty(0, np.int64)
            arrays.append(pa.array(y))
            names.append(LABEL)
        arrays.append(pa.array(self.ids[: self.rows]))
        names.append(ROW_ID)
        batch = pa.RecordBatch.from_arrays(arrays, names=names)
        if writer is None:
            writer = pa.ipc.new_file(tmp, batch.schema)
        writer.write_batch(batch)
        self.rows = 0
        return writer


def _feature_values(values: pa.Array) -> np.ndarray:
    """A feature column as numpy, ready to be stored as float32 (booleans as 0 and 1).

    Integers, floats and booleans convert as numpy does; decimals go through float64
    (numpy would get Python ``Decimal`` objects) and dictionaries are decoded first.
    """
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_decimal(values.type):
        values = values.cast(pa.float64(), safe=False)
    return values.to_numpy(zero_copy_only=False)


def _label_values(y: pa.Array, classes: list[Any] | None) -> np.ndarray:
    """Labels as numpy: class codes for strings, float32 for regression targets."""
    if pa.types.is_floating(y.type):
        return y.to_numpy(zero_copy_only=False).astype(np.float32)
    if pa.types.is_integer(y.type) or pa.types.is_boolean(y.type):
        return y.to_numpy(zero_copy_only=False).astype(np.int64)
    import pyarrow.compute as pc

    codes = pc.index_in(y, value_set=pa.array(classes, y.type))
    return codes.to_numpy(zero_copy_only=False).astype(np.int64)


def _select_features(src: Source, features: Sequence[str] | None, label: str | None) -> list[str]:
    if features is not None:
        missing = [f for f in features if f not in src.columns]
        if missing:
            raise UsageError(
                f"{src.path}: no feature column {missing[0]!r}; columns are "
                f"{', '.join(src.columns)}"
            )
        bad = [f for f in features if not is_feature_type(src.schema.field(f).type)]
        if bad:
            typ = src.schema.field(bad[0]).type
            raise UsageError(
                f"feature {bad[0]!r} of {src.path} is {typ}, "
                "not numeric; encode it first or leave it out of features"
            )
        return list(features)
    return [f.name for f in src.schema if f.name not in (label, ROW_ID) and is_feature_type(f.type)]


def make_loader(
    source: str | os.PathLike[str] | Source,
    *,
    features: Sequence[str] | None = None,
    label: str | None = None,
    batch_size: int = 256,
    schema: Any = None,
    scaler: str | RobustScaler | None = "robust",
    stratify: bool = True,
    drop_degenerate: bool = True,
    shuffle: bool = True,
    drop_last: bool = False,
    seed: int = 0,
    bins: int | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    num_replicas: int | None = None,
    rank: int | None = None,
    quarantine: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    **validate_options: Any,
) -> DataLoader[Batch]:
    """A DataLoader over the clean rows of a dataset, robust-scaled and stratified.

    Parameters
    ----------
    source : str, os.PathLike or Source
        The dataset (parquet, CSV, Arrow IPC, or a directory of parquet files).
    features : sequence of str, optional
        Feature columns; default: every numeric or boolean column but the label
        (:func:`pipeline.profiling.is_feature_type`).
    label : str, optional
        Label column. Integer or string labels are classes (strings are coded
        ``0..k-1`` in sorted order, see ``loader.batchguard.classes``); float
        labels are regression targets, stratified by quantile ``bins``.
    batch_size : int, default 256
    schema : optional
        Passed to :func:`pipeline.validate`.
    scaler : "robust", RobustScaler or None, default "robust"
        Fit on the clean rows and applied when the cache is written; pass a
        configured :class:`~pipeline.scaler.RobustScaler` (e.g. with ``clip``).
    stratify : bool, default True
        With a label: every batch holds the classes in dataset proportions
        (``loader.sampler`` serves the batches of a
        :class:`~pipeline.sampler.StratifiedBatchSampler`, ``loader.sampler.stratified``,
        as int64 numpy arrays rather than lists, and passes on its ``set_epoch``,
        ``state_dict``, ``load_state_dict`` and attributes).
    drop_degenerate : bool, default True
        Leave out constant, near-constant and zero-IQR features.
    shuffle, drop_last, seed : optional
        Order of batches when not stratified; the stratified sampler is always
        shuffled with ``seed`` (call ``loader.sampler.set_epoch(epoch)``).
    bins : int, optional
        Quantile bins for stratifying a continuous label (default 10 for floats).
    num_workers, pin_memory : optional
        As for :class:`torch.utils.data.DataLoader`.
    num_replicas, rank : int, optional
        Distributed training: each rank gets disjoint rows and the same number of batches.
    quarantine : path, optional
        Also write the quarantined rows here.
    cache_dir : path, optional
        Where the clean-row and feature caches go (default: a temporary
        directory removed with the loader's dataset).
    **validate_options
        Passed to :func:`pipeline.validate` (``max_bad_rows``, ``outlier_threshold``, ...).

    Returns
    -------
    torch.utils.data.DataLoader
        Yields :class:`Batch` ``(features, label, row_id)``. ``loader.batchguard``
        (:class:`LoaderInfo`) holds the features used, those dropped and why, the
        validation report and the fitted scaler.

    Examples
    --------
    >>> loader = make_loader("train.parquet", label="y", batch_size=512)  # doctest: +SKIP
    >>> for x, y, row_id in loader:  # doctest: +SKIP
    ...     loss = criterion(model(x), y)
    """
    from .validation import validate

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise UsageError(
            f"batch_size should be a positive integer value, but got batch_size={batch_size!r}"
        )
    tmpdir = None
    if cache_dir is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="batchguard-")
        cache_dir = tmpdir.name
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    clean_path = str(cache / "clean.arrow")
    # Nulls in the columns the model sees would become NaN features or bogus labels:
    # quarantine them too, schema or not.
    wanted = _select_features(open_source(source), features, label)
    validate_options.setdefault("not_null", tuple(wanted) + ((label,) if label else ()))
    report = validate(
        source, schema, label=label, clean=clean_path, quarantine=quarantine, **validate_options
    )
    if report.errors:
        log.warning(
            "batchguard: %s; training on the %s clean rows",
            report.verdict(),
            f"{report.rows_clean:,}",
        )
    clean = Source(clean_path)
    chosen = _select_features(clean, features, label)
    dropped: dict[str, str] = {}
    if drop_degenerate:
        for f in report.findings:
            if f.check in DEGENERATE and f.column in chosen and f.column not in dropped:
                dropped[f.column] = f.check
        if dropped:
            log.warning(
                "batchguard: leaving out degenerate features %s",
                ", ".join(f"{k} ({v})" for k, v in dropped.items()),
            )
        chosen = [c for c in chosen if c not in dropped]
    if not chosen:
        raise UsageError(f"{report.dataset}: no usable numeric feature columns left")

    fitted = _fit_scaler(scaler, clean, chosen)
    classes = _label_classes(report, label, clean)
    feature_path = str(cache / "features.arrow")
    write_feature_cache(clean, chosen, label, feature_path, scaler=fitted, classes=classes)
    dataset = ArrowMatrixDataset(feature_path, temporary_dir=tmpdir)

    sampler = _batch_sampler(
        dataset,
        batch_size,
        label,
        stratify,
        shuffle,
        drop_last,
        seed,
        bins,
        num_replicas,
        rank,
        classes is not None,
    )
    loader: DataLoader[Batch] = DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        collate_fn=_as_is,
    )
    loader.batchguard = LoaderInfo(
        features=chosen,
        dropped_features=dropped,
        label=label,
        classes=classes,
        report=report,
        scaler=fitted,
        cache_path=feature_path,
        findings=[f for f in report.findings if f.check in DEGENERATE],
    )
    return loader


def _as_is(batch: Any) -> Any:
    """The loader's ``collate_fn``: the dataset already returns a batch of tensors.

    (The default, ``default_convert``, would only rebuild the named tuple: ~3 µs a batch.)
    """
    return batch


class _ArrayBatches(Sampler[np.ndarray]):
    """The sampler of a stratified :func:`make_loader` loader (``loader.sampler``).

    Iterates :meth:`StratifiedBatchSampler.iter_arrays`: the same batches, in the same
    order, each as an int64 numpy array instead of a list of ints, so the dataset gathers
    with the array as it is, which saves building and converting a Python list of
    ``batch_size`` ints per batch (~10 µs of ~40 µs at batch size 256). Everything else
    (``set_epoch``, ``state_dict``, ``load_state_dict``, ``classes``, ...) is the
    stratified sampler's, which :attr:`stratified` holds.
    """

    def __init__(self, stratified: StratifiedBatchSampler) -> None:
        self.stratified = stratified

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.stratified.iter_arrays()

    def __len__(self) -> int:
        return len(self.stratified)

    # Spelled out, not left to __getattr__: checkpointing code tests for them with
    # isinstance against a runtime protocol (torchdata's Stateful), which looks attributes
    # up statically from Python 3.12 on.
    def set_epoch(self, epoch: int) -> None:
        """:meth:`StratifiedBatchSampler.set_epoch`."""
        self.stratified.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """:meth:`StratifiedBatchSampler.state_dict`."""
        return self.stratified.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """:meth:`StratifiedBatchSampler.load_state_dict`."""
        self.stratified.load_state_dict(state)

    def __copy__(self) -> _ArrayBatches:
        # A copy iterates on its own, as a copy of the stratified sampler itself would.
        return _ArrayBatches(copy.copy(self.stratified))

    def __getattr__(self, name: str) -> Any:
        # Only for names the adapter lacks. Private names are not passed on, which also keeps
        # a half-built copy (while unpickling, before `stratified` is set) from recursing.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.stratified, name)


def _fit_scaler(
    scaler: str | RobustScaler | None, clean: Source, features: list[str]
) -> RobustScaler | None:
    if scaler is None:
        return None
    from .scaler import RobustScaler

    if isinstance(scaler, str):
        if scaler != "robust":
            raise UsageError(f"scaler should be 'robust', a RobustScaler or None, got {scaler!r}")
        scaler = RobustScaler()
    return scaler.fit(clean, columns=features)


def _label_classes(report: Report, label: str | None, clean: Source) -> list[Any] | None:
    """The sorted classes of a categorical label; ``None`` for a regression target."""
    if label is None or pa.types.is_floating(clean.schema.field(label).type):
        return None
    counts = report.profile.label_counts(label)
    if counts is None:
        raise UsageError(
            f"label {label!r} has too many distinct values to be classes; "
            "cast it to float to treat it as a regression target"
        )
    return sorted(counts)


def _batch_sampler(
    dataset: ArrowMatrixDataset,
    batch_size: int,
    label: str | None,
    stratify: bool,
    shuffle: bool,
    drop_last: bool,
    seed: int,
    bins: int | None,
    num_replicas: int | None,
    rank: int | None,
    categorical: bool,
) -> Any:
    if label is not None and stratify:
        assert dataset.labels is not None
        return _ArrayBatches(
            StratifiedBatchSampler(
                dataset.labels,
                batch_size,
                drop_last=drop_last,
                seed=seed,
                num_replicas=num_replicas,
                rank=rank,
                bins=None if categorical else (bins or 10),
            )
        )
    if num_replicas is not None and num_replicas > 1:
        from torch.utils.data.distributed import DistributedSampler

        base: Any = DistributedSampler(
            dataset,
            num_replicas=num_replicas,
            rank=rank or 0,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
    elif shuffle:
        base = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        base = SequentialSampler(dataset)
    return BatchSampler(base, batch_size, drop_last)
