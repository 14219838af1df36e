"""Rows kept in pass 1 that may fail a row rule, so that pass 2 need not read the file again.

Which rows fail a fence or a sentinel rule is known only once the whole profile
is merged. Pass 1 therefore keeps, per column, every value that *could* fail
one: NaN, inf, null, and anything outside a candidate band set from the first
batch that has finite values (:func:`_band`: inside the final fences for the
usual shapes and methods, outside nearly every value). A batch whose summary
already shows no such value costs nothing more. When the run ends, the band
covers the final rules if every column's fences and sentinels lie at or
beyond it; the row rules then run on the kept values alone and give exactly
what a second read would. Otherwise, or when the kept values outgrow
:data:`CANDIDATE_LIMIT`, pass 2 re-reads as before.

Used for runs that write no output (an output needs whole rows) and whose
schema has no row checks of its own (:func:`kept_columns`): by the local engine
over the whole pass, and by the Ray engine in each pass-1 task, whose kept
values the driver gathers (:class:`CandidateParts`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..checks import row_ids
from ..profiling import STAT_KINDS, BatchSummary, column_kind, values_view
from ..quarantine import bad_row_mask
from ..source import ROW_ID
from ._run import RowRules, RowTally, Run

#: kept values (over all columns) beyond which pass 1 gives up and pass 2 re-reads:
#: 64 MiB of ids and values at most, whatever the file's size
CANDIDATE_LIMIT = 1 << 22
#: the band's reach beyond the 1st/99th percentiles, in units of their distance to the median
#: (the ``auto`` fences stand at 3)
_BAND = 1.5


@dataclass
class _Kept:
    """One column's kept values and their row ids, in row order."""

    kind: str
    band: tuple[float, float] | None = None
    values: list[pa.Array] = field(default_factory=list)
    ids: list[np.ndarray] = field(default_factory=list)


class CandidateRows:
    """Per column, the values of pass 1 that could fail a row rule.

    Parameters
    ----------
    kinds : dict of str to str
        The columns to keep values of, with their :func:`~pipeline.profiling.column_kind`.
    limit : int, optional
        Kept values beyond which nothing is kept (:data:`CANDIDATE_LIMIT` by default).
    """

    def __init__(self, kinds: dict[str, str], limit: int | None = None) -> None:
        self._columns = {name: _Kept(kind) for name, kind in kinds.items()}
        self._size = 0
        self._limit = CANDIDATE_LIMIT if limit is None else limit
        #: True once the kept values passed the limit (nothing is kept then)
        self.overflowed = False

    def add(self, batch: pa.RecordBatch, summaries: dict[str, BatchSummary]) -> None:
        """Keep the values of ``batch`` that could fail a rule."""
        if self.overflowed:
            return
        ids: np.ndarray | None = None
        for name, kept in self._columns.items():
            summary = summaries.get(name)
            if summary is None:
                continue
            if kept.band is None and summary.min is not None:
                kept.band = _band(batch.column(name), kept.kind)
            if not summary.bad and _inside(summary, kept.band):
                continue  # the usual case: the batch's range lies inside the band
            arr = batch.column(name)
            where = np.flatnonzero(_outside(arr, kept.kind, kept.band, summary))
            if not where.size:
                continue
            if ids is None:
                ids = row_ids(batch)
            kept.values.append(arr.take(pa.array(where)))
            kept.ids.append(ids[where])
            self._size += where.size
            if self._size > self._limit:
                self._give_up()
                return

    def covers(self, rules: RowRules) -> bool:
        """Whether every value that fails ``rules`` was kept (then :meth:`tally` is exact)."""
        if self.overflowed:
            return False
        for name, (low, high) in rules.bounds.items():
            kept = self._columns.get(name)
            if kept is None:
                return False
            if kept.band is None:
                continue  # no finite value at all: every row was kept
            # A failing value x < low lies below the band when low does not lie above it.
            if low > kept.band[0] or high < kept.band[1]:
                return False
        return True

    def tally(self, rules: RowRules) -> RowTally:
        """The row failures of the kept values: what pass 2 would count on the whole file.

        Each column's kept values are checked on their own; a row failing in several
        columns is quarantined once (its ids are united across columns).
        """
        tally = RowTally()
        quarantined = []
        for name, kept in self._columns.items():
            if not kept.ids:
                continue
            values = pa.concat_arrays(kept.values)
            ids = np.concatenate(kept.ids)
            batch = pa.RecordBatch.from_arrays([values, pa.array(ids, pa.int64())], [name, ROW_ID])
            failures = rules.failures(batch)
            if failures:
                tally.add(batch, failures)
                quarantined.append(ids[bad_row_mask(batch.num_rows, failures)])
        tally.quarantined = int(np.unique(np.concatenate(quarantined)).size) if quarantined else 0
        return tally

    @property
    def size(self) -> int:
        """How many values are kept."""
        return self._size

    def to_bytes(self) -> bytes:
        """The kept values as Arrow IPC, for another process (empty once overflowed).

        One row: per column with kept values, a list of them and a list of their row
        ids; the kinds, bands and size ride in the schema's metadata.
        """
        if self.overflowed:
            return b""
        fields: dict[str, pa.Array] = {}
        for i, kept in enumerate(self._columns.values()):
            if kept.values:
                values = pa.concat_arrays(kept.values)
                fields[f"v{i}"] = pa.ListArray.from_arrays([0, len(values)], values)
                ids = pa.array(np.concatenate(kept.ids), pa.int64())
                fields[f"i{i}"] = pa.ListArray.from_arrays([0, len(ids)], ids)
        state = {
            "columns": [[name, kept.kind, kept.band] for name, kept in self._columns.items()],
            "size": self._size,
            "limit": self._limit,
        }
        table = pa.table(fields).replace_schema_metadata({"candidates": json.dumps(state)})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> CandidateRows:
        """The :class:`CandidateRows` that :meth:`to_bytes` wrote."""
        table = pa.ipc.open_stream(data).read_all()
        state = json.loads(table.schema.metadata[b"candidates"])
        out = cls({}, limit=state["limit"])
        for i, (name, kind, band) in enumerate(state["columns"]):
            kept = out._columns[name] = _Kept(kind, None if band is None else tuple(band))
            if f"v{i}" in table.column_names:
                kept.values.append(table.column(f"v{i}").chunk(0).values)
                kept.ids.append(table.column(f"i{i}").chunk(0).values.to_numpy())
        out._size = state["size"]
        return out

    def _give_up(self) -> None:
        self.overflowed = True
        self._columns.clear()  # free the memory at once


@dataclass
class CandidateParts:
    """The kept values of consecutive parts of a dataset (the Ray engine's blocks), in row order.

    Each part has its own candidate band, so the parts cover the rules only if each
    one does; their tallies then merge like the per-block tallies of a second pass.
    """

    parts: list[CandidateRows]

    def covers(self, rules: RowRules) -> bool:
        """Whether every part kept every value of its rows that fails ``rules``."""
        return sum(p.size for p in self.parts) <= CANDIDATE_LIMIT and all(
            p.covers(rules) for p in self.parts
        )

    def tally(self, rules: RowRules) -> RowTally:
        """The row failures of all parts; a row belongs to one part, so their counts add up."""
        tally = RowTally()
        for part in self.parts:
            tally.merge(part.tally(rules))
        return tally


def kept_columns(run: Run) -> dict[str, str] | None:
    """The columns whose candidate values ``run`` keeps, with their kinds; None: it keeps none.

    A run that writes outputs needs whole rows again, and a schema that checks every
    row (a custom check) can fail any value.
    """
    if run.outputs or (run.plan is not None and run.plan.checks_every_row):
        return None
    kinds = {f.name: column_kind(f.type) for f in run.src.schema if f.name != ROW_ID}
    return {name: kind for name, kind in kinds.items() if kind in STAT_KINDS}


def _numbers(arr: pa.Array, kind: str) -> np.ndarray:
    """The column as numpy in the units the rules compare (nulls as 0: masked apart)."""
    view = values_view(arr, kind)
    if arr.null_count:
        view = pc.fill_null(view, 0)
    return view.to_numpy(zero_copy_only=False)


def _band(arr: pa.Array, kind: str) -> tuple[float, float]:
    """The candidate band of a column, from its finite values in this batch.

    The 1st and 99th percentiles widened by ``_BAND`` times their distance to the
    median (the ``auto`` fences' geometry at half their threshold, on the linear
    scale). A side of no width borrows the other's (a 0/1 flag, a count that is
    mostly 0); a batch of one value gets a unit of ``max(|value|, 1)``. A column of
    no negative values may be judged on a log scale, whose fences let every value
    of 0 and more pass, so there only negative values are kept below; above, the
    log scale's fence lies beyond the linear one.
    """
    x = _numbers(pc.drop_null(arr) if arr.null_count else arr, kind).astype(np.float64)
    q01, median, q99 = np.quantile(x[np.isfinite(x)], [0.01, 0.5, 0.99])
    with np.errstate(over="ignore"):  # values near the float64 limits: the band is unbounded
        below, above = median - q01, q99 - median
        unit = max(below, above) or max(abs(median), 1.0)
        low, high = q01 - _BAND * (below or unit), q99 + _BAND * (above or unit)
    if q01 >= 0:
        low = max(low, 0.0)
    return float(low), float(high)


def _inside(summary: BatchSummary, band: tuple[float, float] | None) -> bool:
    """Whether a batch's finite range lies inside the band."""
    if band is None or summary.min is None or summary.max is None:
        return False
    return band[0] <= summary.min and summary.max <= band[1]


def _outside(
    arr: pa.Array, kind: str, band: tuple[float, float] | None, summary: BatchSummary
) -> np.ndarray:
    """Mask of the values that could fail a rule: null, NaN, inf, or beyond the band.

    Without NaN, inf or null in the batch, only the sides its range crosses are compared.
    """
    if band is None:
        return np.ones(len(arr), dtype=bool)
    x = _numbers(arr, kind)
    low, high = band
    if not summary.bad and summary.min is not None and summary.max is not None:
        if summary.min >= low:
            return x > high
        if summary.max <= high:
            return x < low
        return (x < low) | (x > high)
    with np.errstate(invalid="ignore"):
        outside = ~((x >= low) & (x <= high))  # NaN compares false: kept
    if arr.null_count:
        outside |= np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), dtype=bool)
    return outside
