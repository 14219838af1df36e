"""What both engines share: the run, its row rules, and what the passes hand over.

:class:`Run` is what both passes work from; :class:`ChunkNotes` is what pass 1
saw per chunk (so pass 2 re-reads only chunks that can fail); :class:`RowRules`
are pass 2's rules, fixed once the profile is merged; :class:`RowTally` adds up
pass 2's failures. Tallies and notes cross the Ray boundary as JSON with named
fields, read back by ``from_state``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..checks import RowFailure, RowRule, row_ids
from ..fences import Fences
from ..findings import REASONS, Finding, Severities
from ..joint import JointModel
from ..options import ValidationOptions
from ..profiling import BatchSummary
from ..quarantine import SCORES_SCHEMA, bad_row_mask
from ..sentinels import Sentinel
from ..source import ROW_ID, Chunk, Source

if TYPE_CHECKING:
    from ..report.examples import Example
    from ..schema import SchemaPlan

#: row ids shown per finding in reports
SAMPLE_ROWS = 5

Progress = Callable[[int], None]


@dataclass
class Run:
    """What both passes of one run work from, whichever engine runs them."""

    src: Source
    opts: ValidationOptions
    plan: SchemaPlan | None
    #: output kind ("quarantine", "clean") -> path, checked by the engine
    outputs: dict[str, str]
    tick: Progress


@dataclass
class ChunkNotes:
    """What pass 1 saw in each chunk: enough to decide what pass 2 must re-read.

    Per numeric column and chunk: whether it held NaN, inf or null, and its range.
    """

    starts: np.ndarray
    bad: dict[str, np.ndarray] = field(default_factory=dict)
    low: dict[str, np.ndarray] = field(default_factory=dict)
    high: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def for_chunks(cls, chunks: list[Chunk], columns: Iterable[str]) -> ChunkNotes:
        """Empty notes for ``chunks`` (each with a ``row_offset``) and ``columns``."""
        notes = cls(np.array([c.row_offset for c in chunks], dtype=np.int64))
        for name in columns:
            notes.bad[name] = np.zeros(len(chunks), dtype=bool)
            notes.low[name] = np.full(len(chunks), np.inf)
            notes.high[name] = np.full(len(chunks), -np.inf)
        return notes

    def add(self, position: int, num_rows: int, summaries: dict[str, BatchSummary]) -> None:
        """Note the summaries of the ``num_rows`` rows starting at row ``position``."""
        first = int(np.searchsorted(self.starts, position, side="right")) - 1
        last = int(np.searchsorted(self.starts, position + max(num_rows, 1) - 1, side="right"))
        span = slice(first, last)
        for name, s in summaries.items():
            if s.bad:
                self.bad[name][span] = True
            if s.min is not None and s.max is not None:
                self.low[name][span] = np.minimum(self.low[name][span], s.min)
                self.high[name][span] = np.maximum(self.high[name][span], s.max)

    def suspect(self, bounds: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
        """Per column, the chunks where it can fail a row rule.

        ``bounds`` maps a column to the range its values may span without
        failing one (:attr:`RowRules.bounds`); NaN, inf and null fail anywhere.
        """
        suspect = {name: bad.copy() for name, bad in self.bad.items()}
        for name, (low, high) in bounds.items():
            suspect[name] |= (self.low[name] < low) | (self.high[name] > high)
        return suspect

    def needing_recheck(self, bounds: dict[str, tuple[float, float]]) -> np.ndarray:
        """Per chunk, whether any column can fail a row rule there."""
        need = np.zeros(len(self.starts), dtype=bool)
        for mask in self.suspect(bounds).values():
            need |= mask
        return need


def summary_state(s: BatchSummary) -> dict[str, Any]:
    """A batch summary as JSON-ready named fields (read back by :func:`summary_from_state`)."""
    return {"bad": s.bad, "min": s.min, "max": s.max}


def summary_from_state(state: dict[str, Any]) -> BatchSummary:
    """The batch summary :func:`summary_state` wrote."""
    return BatchSummary(bad=state["bad"], min=state["min"], max=state["max"])


@dataclass
class RowRules:
    """The row rules of pass 2, fixed once the profile is merged.

    Closures over numbers, the schema plan and the joint model, all of which
    pickle (with cloudpickle), so the Ray engine ships the rules to its tasks as
    they are. ``joint`` is set only when pass 2 reads every row in full: each
    row's joint score is then computed, reported (``joint_outlier``) and
    written to the scores output.
    """

    rules: list[RowRule]
    options: ValidationOptions
    fences: dict[str, Fences]
    sentinels: dict[str, list[Sentinel]] = field(default_factory=dict)
    joint: JointModel | None = None
    kinds: dict[str, str] = field(default_factory=dict)

    @property
    def bounds(self) -> dict[str, tuple[float, float]]:
        """Per column, the range of values that fails no fence or sentinel rule."""
        out = {name: (f.low, f.high) for name, f in self.fences.items()}
        for name, found in self.sentinels.items():
            low, high = out.get(name, (-np.inf, np.inf))
            for s in found:  # a sentinel lies beyond its column's other values
                if s.side == "low":
                    low = max(low, float(np.nextafter(s.value, np.inf)))
                else:
                    high = min(high, float(np.nextafter(s.value, -np.inf)))
            out[name] = (low, high)
        return out

    def evaluate(self, batch: pa.RecordBatch) -> tuple[list[RowFailure], pa.RecordBatch]:
        """The batch's row failures, and its rows' joint scores.

        Without a joint model (fewer than two numeric columns to combine) every
        row still gets its line in the scores, with a null score and column.
        """
        failures = self.failures(batch)
        model = self.joint
        if model is None:
            nulls = [pa.nulls(batch.num_rows, pa.float64()), pa.nulls(batch.num_rows, pa.string())]
            scores = pa.RecordBatch.from_arrays(
                [batch.column(ROW_ID).cast(pa.int64()), *nulls], schema=SCORES_SCHEMA
            )
            return failures, scores
        z = model.standardise(batch, self.kinds)
        score = model.score(z)
        # The second tier: rows the first (quarantine) tier has not already taken.
        above = (score > model.threshold) & ~bad_row_mask(batch.num_rows, failures)
        if above.any() and self.options.severity("joint_outlier") is not None:
            failures.append(
                RowFailure(
                    "joint_outlier", None, above, pa.array(score[above]),
                    f"score > {model.threshold:g}", score[above],
                    quarantine=self.options.quarantine_outliers == "joint",
                )
            )  # fmt: skip
        scores = pa.RecordBatch.from_arrays(
            [batch.column(ROW_ID), pa.array(score, pa.float64()), model.columns_of(z, score)],
            schema=SCORES_SCHEMA,
        )
        return failures, scores

    def failures(self, batch: pa.RecordBatch) -> list[RowFailure]:
        """Every row failure of ``batch`` whose check is not switched off."""
        failures: dict[tuple[str, str | None, str | None], RowFailure] = {}
        for rule in self.rules:
            for f in rule(batch):
                # One failure per (check, column): a column asked non-null twice counts once.
                key = (f.check, f.column, f.schema_check)
                if key not in failures and self.options.severity(f.check) is not None:
                    failures[key] = f
        return list(failures.values())


#: (check, column, schema check): what a row-level finding is about
RowKey = tuple[str, str | None, str | None]


@dataclass
class RowTally:
    """Counts and example row ids of each row-level failure, and the quarantined rows.

    Tallies of consecutive parts of a dataset merge (:meth:`merge`, in row
    order) into the tally of the whole, so the Ray engine's tasks each keep
    one and the driver adds them up. ``examples`` holds a few quarantined rows
    for the HTML report, chosen by the engine from the rows it quarantined.
    """

    counts: dict[RowKey, int] = field(default_factory=dict)
    samples: dict[RowKey, list[int]] = field(default_factory=dict)
    thresholds: dict[RowKey, str | None] = field(default_factory=dict)
    quarantined: int = 0
    examples: list[Example] = field(default_factory=list)

    def add(self, batch: pa.RecordBatch, failures: list[RowFailure]) -> None:
        """Count the ``failures`` of one batch."""
        if not failures:
            return
        ids = row_ids(batch)
        for f in failures:
            key = (f.check, f.column, f.schema_check)
            n = int(f.mask.sum())
            self.counts[key] = self.counts.get(key, 0) + n
            self.thresholds.setdefault(key, f.threshold)
            shown = self.samples.setdefault(key, [])
            if len(shown) < SAMPLE_ROWS:
                shown.extend(ids[f.mask][: SAMPLE_ROWS - len(shown)].tolist())
        self.quarantined += int(bad_row_mask(batch.num_rows, failures).sum())

    def merge(self, other: RowTally) -> RowTally:
        """Add the tally of the rows that follow this one's; the example ids stay the first."""
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
            self.thresholds.setdefault(key, other.thresholds[key])
            shown = self.samples.setdefault(key, [])
            shown.extend(other.samples[key][: SAMPLE_ROWS - len(shown)])
        self.quarantined += other.quarantined
        return self

    def to_state(self) -> dict[str, Any]:
        """JSON-ready form, read back by :meth:`from_state` (examples stay behind)."""
        return {
            "quarantined": self.quarantined,
            "failures": [
                {
                    "check": check,
                    "column": column,
                    "schema_check": schema_check,
                    "threshold": self.thresholds[key],
                    "count": n,
                    "sample": self.samples[key],
                }
                for key, n in self.counts.items()
                for check, column, schema_check in [key]
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RowTally:
        """The tally :meth:`to_state` wrote."""
        tally = cls(quarantined=state["quarantined"])
        for failure in state["failures"]:
            key = (failure["check"], failure["column"], failure["schema_check"])
            tally.counts[key] = failure["count"]
            tally.thresholds[key] = failure["threshold"]
            tally.samples[key] = failure["sample"]
        return tally

    def findings(self, rows: int, dataset: str, severities: Severities) -> list[Finding]:
        """One finding per (check, column, schema check), with the run's severities."""
        out = []
        for key, n in self.counts.items():
            check, column, schema_check = key
            level = severities.of(check, column, schema_check)
            if level is None:
                continue
            message = row_message(
                check, column, schema_check, n, self.samples[key], self.thresholds[key], dataset
            )
            out.append(
                Finding(
                    check, column, level, count=n, fraction=n / rows if rows else 0.0,
                    message=message, sample_rows=sorted(self.samples[key]),
                    schema_check=schema_check,
                )
            )  # fmt: skip
        return out


def row_message(
    check: str,
    column: str | None,
    schema_check: str | None,
    n: int,
    sample: list[int],
    threshold: str | None,
    dataset: str,
) -> str:
    """The message of a row-level finding: where, how many, which rows, what to do."""
    reason = REASONS.get(check)
    noun = reason.noun if reason is not None and reason.noun else f"rows failing '{check}'"
    what = noun.format(detail=threshold or schema_check)
    where = f"column '{column}' of {dataset}" if column else dataset
    rows = ", ".join(str(r) for r in sorted(sample))
    more = ", ..." if n > len(sample) else ""
    advice = reason.advice if reason is not None else ""
    return f"{where} has {n:,} {what} (rows {rows}{more}); {advice}".rstrip("; ")


def batch_schema(src: Source) -> pa.Schema:
    """The schema of the source's batches: its columns, then ``_row_id`` (int64)."""
    schema = src.schema
    if src.has_own_row_ids:
        schema = schema.remove(schema.get_field_index(ROW_ID))
    return schema.append(pa.field(ROW_ID, pa.int64()))
