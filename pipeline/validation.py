"""The local engine: profile pass, column checks, row pass, report.

Pass 1 streams every batch into the mergeable :class:`~pipeline.profile.Profile`
and notes, per readable chunk (parquet row group), whether it held non-finite
or null values and its numeric range. Column checks then run on the merged
profile, which also fixes the outlier fences. Pass 2 applies the row rules and
writes the clean and quarantine outputs; it re-reads only the chunks that can
hold a failing row, unless every row must be written (``clean=``) or checked
(schema row checks, or a source without independent chunks such as CSV).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .checks import (
    RowFailure,
    RowRule,
    column_findings,
    non_finite_rule,
    outlier_fences,
    outlier_rule,
    row_ids,
    severity,
)
from .errors import UsageError
from .findings import REASONS, Finding
from .options import ValidationOptions
from .profile import BatchSummary, Profile
from .quarantine import OutputSplitter, bad_row_mask, check_output_path
from .report import Report
from .source import Chunk, Source, open_source

if TYPE_CHECKING:
    from .schema import SchemaPlan

#: row ids shown per finding in reports
SAMPLE_ROWS = 5

Progress = Callable[[int], None]


@dataclass
class _ChunkNotes:
    """What pass 1 saw in each chunk: enough to decide whether pass 2 must re-read it."""

    starts: np.ndarray
    bad: np.ndarray
    low: dict[str, np.ndarray] = field(default_factory=dict)
    high: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def for_chunks(cls, chunks: list[Chunk], columns: Iterable[str]) -> _ChunkNotes:
        starts = np.array([c.row_offset for c in chunks], dtype=np.int64)
        notes = cls(starts, np.zeros(len(chunks), dtype=bool))
        for name in columns:
            notes.low[name] = np.full(len(chunks), np.inf)
            notes.high[name] = np.full(len(chunks), -np.inf)
        return notes

    def add(self, position: int, num_rows: int, summaries: dict[str, BatchSummary]) -> None:
        first = int(np.searchsorted(self.starts, position, side="right")) - 1
        last = int(np.searchsorted(self.starts, position + max(num_rows, 1) - 1, side="right"))
        span = slice(first, last)
        for name, s in summaries.items():
            if s.bad:
                self.bad[span] = True
            if s.min is not None and s.max is not None:
                self.low[name][span] = np.minimum(self.low[name][span], s.min)
                self.high[name][span] = np.maximum(self.high[name][span], s.max)

    def needing_recheck(self, fences: dict[str, Any]) -> np.ndarray:
        need = self.bad.copy()
        for name, fence in fences.items():
            need |= (self.low[name] < fence.low) | (self.high[name] > fence.high)
        return need


@dataclass
class _RowTally:
    """Counts and example row ids of each row-level failure, and the quarantined rows."""

    counts: dict[tuple[str, str | None, str | None], int] = field(default_factory=dict)
    samples: dict[tuple[str, str | None, str | None], list[int]] = field(default_factory=dict)
    thresholds: dict[tuple[str, str | None, str | None], str | None] = field(default_factory=dict)
    quarantined: int = 0

    def add(self, batch: pa.RecordBatch, failures: list[RowFailure]) -> None:
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

    def findings(self, rows: int, dataset: str, options: ValidationOptions) -> list[Finding]:
        out = []
        for key, n in self.counts.items():
            check, column, schema_check = key
            level = severity(check, options)
            if level == "off":
                continue
            out.append(
                Finding(
                    check, column, level, n, n / rows if rows else 0.0,  # type: ignore[arg-type]
                    _row_message(check, column, schema_check, n, self.samples[key],
                                 self.thresholds[key], dataset),
                    sorted(self.samples[key]), schema_check,
                )
            )  # fmt: skip
        return out


_ROW_ADVICE = {
    "nan": "impute or drop them, or let the quarantine hold them",
    "inf": "clip or drop them; check for a division by zero upstream",
    "null": "fill them, or mark the column nullable in the schema",
    "outlier": "check for unit or sentinel errors (e.g. -999, cents vs dollars)",
    "schema": "fix the rows or relax the schema check",
}


def _row_message(
    check: str,
    column: str | None,
    schema_check: str | None,
    n: int,
    sample: list[int],
    threshold: str | None,
    dataset: str,
) -> str:
    what = {
        "nan": "NaN values",
        "inf": "infinite values",
        "null": "null values",
        "outlier": f"outliers outside {threshold}",
        "schema": f"rows failing schema check {threshold or schema_check}",
    }.get(check, f"rows failing '{check}'")
    where = f"column '{column}' of {dataset}" if column else dataset
    rows = ", ".join(str(r) for r in sorted(sample))
    more = ", ..." if n > len(sample) else ""
    return f"{where} has {n:,} {what} (rows {rows}{more}); {_ROW_ADVICE.get(check, '')}".rstrip(
        "; "
    )


def validate(
    source: str | os.PathLike[str] | Source,
    schema: Any = None,
    *,
    quarantine: str | os.PathLike[str] | None = None,
    clean: str | os.PathLike[str] | None = None,
    exit_zero: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> Report:
    """Validate a dataset: profile it, check it, quarantine bad rows, return the report.

    Parameters
    ----------
    source : str, os.PathLike or Source
        A parquet/CSV/Arrow file or a directory of parquet files.
    schema : str, os.PathLike, SchemaPlan or pandera.DataFrameSchema, optional
        Declarative checks; see :func:`pipeline.load_schema`.
    quarantine, clean : str or os.PathLike, optional
        Write rows with row-level findings (with ``_reasons``) / all other rows here.
    exit_zero : bool, default False
        The report's exit code is 0 even when the gate fails.
    progress : callable, optional
        Called with the number of rows of each batch read (both passes).
    **options
        Any field of :class:`~pipeline.options.ValidationOptions`
        (``label``, ``batch_size``, ``max_bad_rows``, ``strict``, ...).

    Returns
    -------
    Report

    Raises
    ------
    SourceError
        The dataset cannot be read.
    SchemaFileError
        The schema is malformed or does not fit the data's structure.
    UsageError
        An option is invalid.

    Examples
    --------
    >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.parquet")
    >>> pq.write_table(pa.table({"x": [1.0, float("nan"), 3.0, 4.0]}), path)
    >>> report = validate(path)
    >>> report.passed, report.rows_quarantined, report.findings[0].check
    (False, 1, 'nan')
    """
    started = time.perf_counter()
    plan = _schema_plan(schema)
    label_from = "--label"
    if plan is not None:
        if "label" in plan.options and "label" not in options:
            label_from = f"{plan.name or 'the schema'}: label"
        options = {**plan.options, **options}
    opts = ValidationOptions.from_kwargs(**options)
    src = open_source(source, batch_size=opts.batch_size)
    if opts.label is not None and opts.label not in src.columns:
        raise UsageError(
            f"{label_from} {opts.label!r}: {src.path} has no such column; columns are "
            f"{', '.join(src.columns)}"
        )
    outputs = {
        name: str(check_output_path(path, [src.path], name))
        for name, path in (("quarantine", quarantine), ("clean", clean))
        if path is not None
    }
    tick = progress or (lambda n: None)

    findings: list[Finding] = []
    rules: list[RowRule] = []
    if plan is not None:
        findings.extend(plan.structure_findings(src, opts))
        rules.extend(plan.row_rules(src))

    prof, notes = _profile_pass(src, opts, tick)
    column_level = column_findings(prof, opts)
    if plan is not None:  # the schema's column checks run on the merged profile
        column_level = plan.profile_findings(prof, opts, column_level)
    findings.extend(column_level)

    floats = [f.name for f in src.schema if pa.types.is_floating(f.type) and f.name != "_row_id"]
    fences = outlier_fences(prof, opts, None if plan is None else plan.outlier_overrides(src))
    kinds = {name: c.kind for name, c in prof.columns.items()}
    rules = [non_finite_rule(floats), *rules, outlier_rule(fences, kinds)]

    # Pass 2 may skip chunks only when neither the clean output nor the schema needs every row.
    chunks: list[Chunk] | None = None
    if notes is not None and clean is None and (plan is None or not plan.checks_every_row):
        all_chunks = src.chunks()
        need = notes.needing_recheck(fences)
        chunks = [c for c, n in zip(all_chunks, need, strict=True) if n]

    tally = _RowTally()
    splitter = OutputSplitter(
        _batch_schema(src), quarantine=outputs.get("quarantine"), clean=outputs.get("clean")
    )
    try:
        for batch in _batches(src, chunks):
            failures = [f for rule in rules for f in rule(batch)]
            failures = [f for f in failures if severity(f.check, opts) != "off"]
            tally.add(batch, failures)
            splitter.write(batch, failures)
            tick(batch.num_rows)
        splitter.close()
    except BaseException:
        splitter.abort()
        raise

    findings.extend(tally.findings(prof.rows, src.path, opts))
    if plan is not None:
        plan.apply_check_severities(findings)
    findings = _order(findings, src.columns)
    findings.extend(_gate(findings, tally.quarantined, prof.rows, opts))
    report = Report(
        dataset=src.path,
        rows=prof.rows,
        rows_quarantined=tally.quarantined,
        findings=findings,
        profile=prof,
        options=opts,
        exit_zero=exit_zero,
        outputs=outputs,
        schema=None if plan is None else plan.name,
        notes=_notes(prof) + ([] if plan is None else plan.notes),
        elapsed=time.perf_counter() - started,
    )
    return report


def _schema_plan(schema: Any) -> SchemaPlan | None:
    if schema is None:
        return None
    from .schema import as_plan

    return as_plan(schema)


def _batch_schema(src: Source) -> pa.Schema:
    return (
        src.schema.remove(src.schema.get_field_index("_row_id")).append(
            pa.field("_row_id", pa.int64())
        )
        if src.has_own_row_ids
        else src.schema.append(pa.field("_row_id", pa.int64()))
    )


def _profile_pass(
    src: Source, opts: ValidationOptions, tick: Progress
) -> tuple[Profile, _ChunkNotes | None]:
    prof = Profile(src.schema, sample_size=opts.sample_size)
    chunks = src.chunks()
    notes = None
    if chunks and all(c.row_offset is not None for c in chunks):
        numeric = [
            n for n, c in prof.columns.items() if c.kind in ("numeric", "boolean", "temporal")
        ]
        notes = _ChunkNotes.for_chunks(chunks, numeric)
    position = 0
    for batch in src.iter_batches():
        summaries = prof.update(batch)
        if notes is not None:
            notes.add(position, batch.num_rows, summaries)
        position += batch.num_rows
        tick(batch.num_rows)
    return prof, notes


def _batches(src: Source, chunks: list[Chunk] | None) -> Iterator[pa.RecordBatch]:
    if chunks is None:
        yield from src.iter_batches()
    elif chunks:
        yield from src.iter_batches(chunks=chunks)


def _order(findings: list[Finding], columns: list[str]) -> list[Finding]:
    """Column-level findings first, then row-level; within each, in column order.

    Ties break on the reason code's place in REASONS and the schema check's name,
    never on discovery order, which depends on the batch size.
    """
    position = {name: i for i, name in enumerate(columns)}
    checks = list(REASONS)
    return sorted(
        findings,
        key=lambda f: (
            f.row_level,
            position.get(f.column or "", -1),
            checks.index(f.check) if f.check in checks else -1,
            f.schema_check or "",
        ),
    )


def _gate(
    findings: list[Finding], quarantined: int, rows: int, opts: ValidationOptions
) -> list[Finding]:
    """Apply ``max_bad_rows``: tolerate row findings within it, add ``bad_rows`` beyond it."""
    if opts.max_bad_rows is None or rows == 0:
        return []
    share = quarantined / rows
    if share <= opts.max_bad_rows:
        for f in findings:
            if f.row_level and f.severity == "error":
                f.severity = "warning"
        return []
    return [
        Finding(
            "bad_rows", None, severity("bad_rows", opts),  # type: ignore[arg-type]
            quarantined, share,
            f"{quarantined:,} of {rows:,} rows ({share:.2%}) were quarantined, more than "
            f"max_bad_rows={opts.max_bad_rows:.2%} allows; fix the data upstream or raise "
            "the allowance",
        )
    ]  # fmt: skip


def _notes(prof: Profile) -> list[str]:
    skipped = [name for name, c in prof.columns.items() if c.kind == "other"]
    if not skipped:
        return []
    return [f"columns of nested or binary type are only counted, not checked: {', '.join(skipped)}"]
