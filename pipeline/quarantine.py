"""Split batches into clean and quarantined rows, and write both safely.

A row with at least one row-level failure goes to the quarantine output with
all its original columns, its ``_row_id`` and ``_reasons``: a list of structs
(check, column, observed value, threshold, schema check name, outlier score).
Every other row goes to the clean output, in input order. Nothing is dropped:
``rows_in == rows_clean + rows_quarantined``.

Outputs are written to a hidden temporary file beside the target and renamed
over it only when complete (:mod:`pipeline._atomic`), so an interrupted run never
leaves a file with the final name that looks complete.

The guard's quarantine (:class:`QuarantineParts`) uses the same reasons: rows that
fail a check during training are written as parquet part files, one row per bad
training row with its features, label and ``_reasons`` (see :func:`reason_records`).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ._atomic import StagedFile, staged
from .checks import RowFailure
from .errors import UsageError
from .source import ROW_ID

__all__ = [
    "FLUSH_ROWS",
    "GUARD_SCHEMA",
    "REASONS",
    "REASON_TYPE",
    "SCORES_SCHEMA",
    "AtomicWriter",
    "OutputSplitter",
    "QuarantineParts",
    "bad_row_mask",
    "check_output_path",
    "reason_records",
    "reasons_array",
]

REASONS = "_reasons"
#: the ``--scores`` output: every row's joint score and the column adding most to it
SCORES_SCHEMA = pa.schema(
    [("_row_id", pa.int64()), ("score", pa.float64()), ("column", pa.string())]
)
REASON_TYPE = pa.struct(
    [
        ("check", pa.string()),
        ("column", pa.string()),
        ("value", pa.string()),
        ("threshold", pa.string()),
        ("schema_check", pa.string()),
        ("score", pa.float64()),
    ]
)


def bad_row_mask(num_rows: int, failures: Sequence[RowFailure]) -> np.ndarray:
    """Rows of the batch with at least one failure that quarantines rows."""
    mask = np.zeros(num_rows, dtype=bool)
    for failure in failures:
        if failure.quarantine:
            mask |= failure.mask
    return mask


def reasons_array(failures: Sequence[RowFailure]) -> tuple[np.ndarray, pa.Array]:
    """The failing rows' positions and one list of reasons per failing row.

    Returns
    -------
    positions : numpy.ndarray
        Sorted positions (within the batch) of rows with a failure.
    reasons : pyarrow.ListArray
        ``reasons[i]`` lists every failure of row ``positions[i]``, in rule order.
    """
    if not failures:
        return np.empty(0, np.int64), pa.array([], pa.list_(REASON_TYPE))
    rows: list[np.ndarray] = []
    fields: dict[str, list[Any]] = {name: [] for name in REASON_TYPE.names}
    for f in failures:
        idx = np.flatnonzero(f.mask)
        n = idx.size
        rows.append(idx)
        fields["check"].append(pa.array([f.check] * n, pa.string()))
        fields["column"].append(pa.array([f.column] * n, pa.string()))
        value = f.observed.cast(pa.string()) if f.observed is not None else pa.nulls(n, pa.string())
        fields["value"].append(value)
        fields["threshold"].append(pa.array([f.threshold] * n, pa.string()))
        fields["schema_check"].append(pa.array([f.schema_check] * n, pa.string()))
        score = f.score if f.score is not None else np.full(n, np.nan)
        fields["score"].append(pa.array(score, pa.float64(), mask=np.isnan(score)))
    all_rows = np.concatenate(rows)
    # Stable sort keeps each row's reasons in rule order.
    order = np.argsort(all_rows, kind="stable")
    structs = pa.StructArray.from_arrays(
        [pa.concat_arrays(fields[name]).take(order) for name in REASON_TYPE.names],
        fields=list(REASON_TYPE),
    )
    positions, counts = np.unique(all_rows[order], return_counts=True)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return positions, pa.ListArray.from_arrays(pa.array(offsets), structs)


class AtomicWriter:
    """A parquet or Arrow IPC file written under a temporary name, renamed when closed.

    Parameters
    ----------
    path : str or os.PathLike
        Final path; ``.parquet`` or ``.arrow``/``.feather``/``.ipc``.
    schema : pyarrow.Schema
    """

    def __init__(self, path: str | os.PathLike[str], schema: pa.Schema):
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        suffix = self.path.suffix.lower()
        self._file = staged(path)  # a URL is written to a temporary key, then moved
        try:
            if suffix in (".arrow", ".feather", ".ipc"):
                self._writer: Any = pa.ipc.new_file(self._file.sink(), schema)
            else:
                import pyarrow.parquet as pq

                # Dictionary pages pay off for strings only: on floats parquet first
                # builds a dictionary, then falls back, at 4x the cost of plain pages.
                strings = [f.name for f in schema if _dictionary_worthy(f.type)]
                self._writer = pq.ParquetWriter(
                    self._file.sink(), schema, compression="zstd", use_dictionary=strings
                )
        except pa.ArrowNotImplementedError as exc:  # a type the format cannot store
            self._file.discard()
            raise UsageError(
                f"{path}: {exc}; write an .arrow file instead, or drop the column"
            ) from exc
        except BaseException:
            self._file.discard()
            raise

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._writer.write_batch(batch)
            self.rows += batch.num_rows

    def finish(self) -> None:
        """Complete the temporary file and flush it to disk (it keeps its temporary name)."""
        self._writer.close()
        self._file.sync()

    def publish(self) -> None:
        """Move the finished file to its final name."""
        self._file.publish()

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        self.finish()
        self.publish()

    def abort(self) -> None:
        """Drop the partial file."""
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - the file is dropped anyway
            pass
        self._file.discard()


def _dictionary_worthy(typ: pa.DataType) -> bool:
    if pa.types.is_dictionary(typ):
        return True
    return pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_binary(typ)


def check_output_path(path: str | os.PathLike[str], inputs: Sequence[str], what: str) -> Path:
    """Refuse an output path that would overwrite the input or land nowhere.

    Raises
    ------
    UsageError
        When ``path`` is the input (or inside an input directory), its folder
        does not exist, or its suffix is not a supported output format.
    """
    out = Path(path)
    if out.suffix.lower() not in (".parquet", ".arrow", ".feather", ".ipc"):
        raise UsageError(f"--{what} {out}: use a .parquet, .arrow or .feather file name")
    if not out.parent.exists():
        raise UsageError(f"--{what} {out}: folder {out.parent} does not exist; create it first")
    if not os.access(out.parent, os.W_OK):
        raise UsageError(f"--{what} {out}: folder {out.parent} is not writable; choose another")
    resolved = out.resolve()
    for src in inputs:
        src_path = Path(src).resolve()
        if resolved == src_path or src_path in resolved.parents:
            raise UsageError(
                f"--{what} {out} would overwrite the input {src}; choose another output path"
            )
    return out


class OutputSplitter:
    """Route each batch's rows to the clean and quarantine writers (and its scores).

    Parameters
    ----------
    schema : pyarrow.Schema
        The input batches' schema (data columns and ``_row_id``).
    quarantine, clean, scores : path, optional
        Where to write each part; ``None`` skips it. ``scores`` takes one row
        per input row (:data:`SCORES_SCHEMA`).
    """

    def __init__(
        self,
        schema: pa.Schema,
        *,
        quarantine: str | os.PathLike[str] | None = None,
        clean: str | os.PathLike[str] | None = None,
        scores: str | os.PathLike[str] | None = None,
    ):
        self._writers: list[AtomicWriter] = []
        self.quarantine = self.clean = self.scores = None
        try:
            if scores is not None:
                self.scores = AtomicWriter(scores, SCORES_SCHEMA)
                self._writers.append(self.scores)
            if quarantine is not None:
                qschema = schema.append(pa.field(REASONS, pa.list_(REASON_TYPE)))
                self.quarantine = AtomicWriter(quarantine, qschema)
                self._writers.append(self.quarantine)
            if clean is not None:
                self.clean = AtomicWriter(clean, schema)
                self._writers.append(self.clean)
        except BaseException:
            self.abort()
            raise

    def write(
        self,
        batch: pa.RecordBatch,
        failures: Sequence[RowFailure],
        scores: pa.RecordBatch | None = None,
    ) -> pa.RecordBatch | None:
        """Write the batch's rows to their outputs; return the quarantined ones, if written.

        The returned batch holds the failing rows with ``_reasons``, as the
        quarantine output got them (``None`` without failures or a quarantine output).
        ``scores`` (one row per row of ``batch``) goes to the scores output.
        """
        if self.scores is not None and scores is not None:
            self.scores.write(scores)
        quarantined = None
        failures = [f for f in failures if f.quarantine]
        if self.quarantine is not None and failures:
            positions, reasons = reasons_array(failures)
            bad = batch.take(pa.array(positions))
            quarantined = pa.RecordBatch.from_arrays(
                [*bad.columns, reasons], schema=self.quarantine.schema
            )
            self.quarantine.write(quarantined)
        if self.clean is not None:
            if failures:
                keep = ~bad_row_mask(batch.num_rows, failures)
                batch = batch.filter(pa.array(keep))
            self.clean.write(batch)
        return quarantined

    def close(self) -> None:
        # Finish every file before the first rename, so a failing writer cannot
        # leave one output under its final name without the other.
        for w in self._writers:
            w.finish()
        for w in self._writers:
            w.publish()

    def abort(self) -> None:
        for w in self._writers:
            w.abort()


# -- the guard's quarantine ----------------------------------------------------------------------
#: Columns of the guard's quarantine part files: the dataset row id (null when the batch
#: carries none), where the row was in the training run, its features and label as served,
#: and its reasons.
GUARD_SCHEMA = pa.schema(
    [
        (ROW_ID, pa.int64()),
        ("batch", pa.int64()),
        ("position", pa.int64()),
        ("features", pa.list_(pa.float32())),
        ("label", pa.float64()),
        (REASONS, pa.list_(REASON_TYPE)),
    ]
)
#: the guard writes a part file once this many records are buffered
FLUSH_ROWS = 4096


def reason_records(
    batch: int,
    positions: Sequence[int],
    features: np.ndarray,
    labels: Sequence[float | None],
    row_ids: Sequence[int | None],
    checks: Sequence[tuple[str, np.ndarray, str]],
    loss: float | None = None,
) -> list[dict[str, Any]]:
    """One :data:`GUARD_SCHEMA` record per bad row of a training batch, with its reasons.

    Parameters
    ----------
    batch : int
        The batch's index in the run.
    positions : sequence of int
        The bad rows' positions in the batch.
    features : numpy.ndarray of shape (len(positions), n_features)
        Their features, as served.
    labels, row_ids : sequence
        Their label and dataset row id (``None`` where the batch has none).
    checks : sequence of (check, mask, threshold)
        Each row-level check that failed somewhere in the batch: ``mask[k]`` says
        whether it fails for ``positions[k]``; ``threshold`` as in ``_reasons``.
    loss : float, optional
        A loss spike: every row also gets a ``loss_spike`` reason with this value.

    Returns
    -------
    list of dict
        Reasons in ``checks`` order, then ``loss_spike``.
    """
    out = []
    for k, pos in enumerate(positions):
        reasons = [_reason(check, threshold=t) for check, mask, t in checks if mask[k]]
        if loss is not None:
            reasons.append(_reason("loss_spike", value=repr(loss)))
        out.append(
            {
                ROW_ID: row_ids[k],
                "batch": batch,
                "position": pos,
                "features": features[k].tolist(),
                "label": labels[k],
                REASONS: reasons,
            }
        )
    return out


def _reason(
    check: str, *, value: str | None = None, threshold: str | None = None
) -> dict[str, Any]:
    """A ``_reasons`` entry of a training row (the guard checks whole rows: no column)."""
    return {
        "check": check,
        "column": None,
        "value": value,
        "threshold": threshold,
        "schema_check": None,
        "score": None,
    }


class QuarantineParts:
    """The guard's quarantine: records buffered, then written as whole parquet part files.

    Each flush writes one file of :data:`GUARD_SCHEMA` rows atomically (hidden temporary
    name, fsync, rename). File names carry the process id and a token of this writer, so
    worker processes, and later runs into the same directory, write side by side
    without replacing each other's parts.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if missing.
    flush_rows : int, default 4096
        Records buffered before :meth:`add` writes a part.
    """

    def __init__(self, directory: str | os.PathLike[str], *, flush_rows: int = FLUSH_ROWS):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.flush_rows = flush_rows
        self._rows: list[dict[str, Any]] = []
        self._seq = itertools.count()
        self._run = uuid.uuid4().hex[:8]

    def add(self, records: list[dict[str, Any]]) -> None:
        """Buffer records from :func:`reason_records`; write a part once enough are held."""
        self._rows.extend(records)
        if len(self._rows) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records as one part file (nothing when none are buffered)."""
        if not self._rows:
            return
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self._rows, schema=GUARD_SCHEMA)
        name = f"part-{os.getpid()}-{self._run}-{next(self._seq):05d}.parquet"
        with StagedFile(self.directory / name) as staged:
            pq.write_table(table, staged.temp)
        self._rows = []  # only once they are safely on disk
