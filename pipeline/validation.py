"""Validation's two passes, and the local engine that runs them (the default).

Pass 1 streams every batch into the mergeable :class:`~pipeline.profiling.Profile`
and notes, per readable chunk (parquet row group), whether it held non-finite
or null values and its numeric range. Column checks then run on the merged
profile, which also fixes the outlier fences. Pass 2 applies the row rules and
writes the clean and quarantine outputs; it re-reads only the chunks that can
hold a failing row, unless every row must be written (``clean=``) or checked
(schema row checks, or a source without independent chunks such as CSV).

Everything between and around the passes (options, column checks, the row
rules, the tally of row failures, the report) is shared with the Ray engine
(:mod:`pipeline.engines`), which runs the same two passes as Ray Data tasks;
that is what keeps the two engines' findings equal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .checks import (
    Fences,
    RowFailure,
    RowRule,
    column_findings,
    non_finite_rule,
    null_rule,
    outlier_fences,
    outlier_rule,
    row_ids,
    severity,
)
from .errors import UsageError
from .findings import REASONS, Finding
from .options import ValidationOptions
from .profiling import BatchSummary, Profile
from .quarantine import OutputSplitter, bad_row_mask, check_output_path
from .report import Report
from .source import Chunk, Source, open_source

if TYPE_CHECKING:
    from .engines import Engine
    from .schema import SchemaPlan

#: row ids shown per finding in reports
SAMPLE_ROWS = 5

Progress = Callable[[int], None]


@dataclass
class _ChunkNotes:
    """What pass 1 saw in each chunk: enough to decide what pass 2 must re-read.

    Per numeric column and chunk: whether it held NaN, inf or null, and its range.
    """

    starts: np.ndarray
    bad: dict[str, np.ndarray] = field(default_factory=dict)
    low: dict[str, np.ndarray] = field(default_factory=dict)
    high: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def for_chunks(cls, chunks: list[Chunk], columns: Iterable[str]) -> _ChunkNotes:
        notes = cls(np.array([c.row_offset for c in chunks], dtype=np.int64))
        for name in columns:
            notes.bad[name] = np.zeros(len(chunks), dtype=bool)
            notes.low[name] = np.full(len(chunks), np.inf)
            notes.high[name] = np.full(len(chunks), -np.inf)
        return notes

    def add(self, position: int, num_rows: int, summaries: dict[str, BatchSummary]) -> None:
        first = int(np.searchsorted(self.starts, position, side="right")) - 1
        last = int(np.searchsorted(self.starts, position + max(num_rows, 1) - 1, side="right"))
        span = slice(first, last)
        for name, s in summaries.items():
            if s.bad:
                self.bad[name][span] = True
            if s.min is not None and s.max is not None:
                self.low[name][span] = np.minimum(self.low[name][span], s.min)
                self.high[name][span] = np.maximum(self.high[name][span], s.max)

    def suspect(self, fences: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per column, the chunks where it can fail a row rule."""
        suspect = {name: bad.copy() for name, bad in self.bad.items()}
        for name, fence in fences.items():
            suspect[name] |= (self.low[name] < fence.low) | (self.high[name] > fence.high)
        return suspect

    def needing_recheck(self, fences: dict[str, Any]) -> np.ndarray:
        need = np.zeros(len(self.starts), dtype=bool)
        for mask in self.suspect(fences).values():
            need |= mask
        return need


#: (check, column, schema check): what a row-level finding is about
_RowKey = tuple[str, str | None, str | None]


@dataclass
class _RowTally:
    """Counts and example row ids of each row-level failure, and the quarantined rows.

    Tallies of consecutive parts of a dataset merge (:meth:`merge`, in row
    order) into the tally of the whole, so the Ray engine's tasks each keep
    one and the driver adds them up.
    """

    counts: dict[_RowKey, int] = field(default_factory=dict)
    samples: dict[_RowKey, list[int]] = field(default_factory=dict)
    thresholds: dict[_RowKey, str | None] = field(default_factory=dict)
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

    def merge(self, other: _RowTally) -> _RowTally:
        """Add the tally of the rows that follow this one's; the example ids stay the first."""
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
            self.thresholds.setdefault(key, other.thresholds[key])
            shown = self.samples.setdefault(key, [])
            shown.extend(other.samples[key][: SAMPLE_ROWS - len(shown)])
        self.quarantined += other.quarantined
        return self

    def to_state(self) -> dict[str, Any]:
        """JSON-ready form, read back by :meth:`from_state`."""
        return {
            "quarantined": self.quarantined,
            "failures": [
                [*key, self.thresholds[key], n, self.samples[key]] for key, n in self.counts.items()
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _RowTally:
        tally = cls(quarantined=state["quarantined"])
        for check, column, schema_check, threshold, n, sample in state["failures"]:
            key = (check, column, schema_check)
            tally.counts[key] = n
            tally.thresholds[key] = threshold
            tally.samples[key] = sample
        return tally

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


@dataclass
class _Run:
    """What both passes of one run work from, whichever engine runs them."""

    src: Source
    opts: ValidationOptions
    plan: SchemaPlan | None
    #: output kind ("quarantine", "clean") -> path, checked by the engine
    outputs: dict[str, str]
    tick: Progress
    #: what the profile pass saw per chunk (None when chunks cannot be read alone)
    notes: _ChunkNotes | None = None


@dataclass
class _RowRules:
    """The row rules of pass 2, fixed once the profile is merged.

    Closures over numbers and the schema plan, all of which pickle (with
    cloudpickle), so the Ray engine ships the rules to its tasks as they are.
    """

    rules: list[RowRule]
    options: ValidationOptions
    fences: dict[str, Fences]

    def failures(self, batch: pa.RecordBatch) -> list[RowFailure]:
        """Every row failure of ``batch`` whose check is not switched off."""
        failures: dict[tuple[str, str | None, str | None], RowFailure] = {}
        for rule in self.rules:
            for f in rule(batch):
                # One failure per (check, column): a column asked non-null twice counts once.
                key = (f.check, f.column, f.schema_check)
                if key not in failures and severity(f.check, self.options) != "off":
                    failures[key] = f
        return list(failures.values())


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
    engine: str = "local",
    ray_address: str | None = None,
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
        Write rows with row-level findings (with ``_reasons``) / all other rows here:
        a file with the local engine, a directory of parquet parts with Ray.
    exit_zero : bool, default False
        The report's exit code is 0 even when the gate fails.
    progress : callable, optional
        Called with the number of rows of each batch read (both passes).
    engine : {"local", "ray"}, default "local"
        Where the passes run: this process, or Ray Data tasks (needs the
        ``ray`` extra; see :mod:`pipeline.engines`). Findings are the same.
    ray_address : str, optional
        The Ray cluster to use (``ray.init(address=...)``); without it Ray
        uses ``RAY_ADDRESS`` or starts on this machine. Only with ``engine="ray"``.
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
        An option is invalid, or ``engine="ray"`` without the ``ray`` extra.

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
    runner = _engine(engine, ray_address)
    run = _prepare(source, schema, options, runner, quarantine, clean, progress)
    findings: list[Finding] = []
    if run.plan is not None:
        findings.extend(run.plan.structure_findings(run.src, run.opts))

    prof, notes = runner.profile_pass(run)
    run.notes = notes
    column_level, rules = _check_columns(run, prof)
    findings.extend(column_level)
    tally = runner.row_pass(run, rules, _chunks_to_recheck(run, notes, rules.fences))

    report = _report(run, prof, findings, tally, exit_zero=exit_zero)
    runner.finish(report)
    report.elapsed = time.perf_counter() - started
    return report


def _engine(name: str, ray_address: str | None) -> Engine:
    if name == "local":
        if ray_address is not None:
            raise UsageError("--ray-address ADDRESS needs --engine ray; add it or drop the address")
        return _LocalEngine()
    if name == "ray":
        from .engines import ray_engine

        return ray_engine(ray_address)
    raise UsageError(f"engine should be 'local' or 'ray', but got engine={name!r}")


def _prepare(
    source: str | os.PathLike[str] | Source,
    schema: Any,
    options: dict[str, Any],
    runner: Engine,
    quarantine: str | os.PathLike[str] | None,
    clean: str | os.PathLike[str] | None,
    progress: Progress | None,
) -> _Run:
    """Options, schema plan, source and output paths, all checked before any data is read."""
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
    if quarantine is not None and clean is not None:
        if Path(quarantine).resolve() == Path(clean).resolve():
            raise UsageError(
                f"--quarantine and --clean both name {quarantine}; give each its own path"
            )
    outputs = {
        name: str(runner.check_output(path, [src.path], name))
        for name, path in (("quarantine", quarantine), ("clean", clean))
        if path is not None
    }
    return _Run(src, opts, plan, outputs, progress or (lambda n: None))


def _check_columns(run: _Run, prof: Profile) -> tuple[list[Finding], _RowRules]:
    """Column findings on the merged profile, and the row rules it fixes (outlier fences)."""
    src, opts, plan = run.src, run.opts, run.plan
    column_level = column_findings(prof, opts)
    if plan is not None:  # the schema's column checks run on the merged profile
        column_level = plan.profile_findings(prof, opts, column_level)
    floats = [f.name for f in src.schema if pa.types.is_floating(f.type) and f.name != "_row_id"]
    fences = outlier_fences(prof, opts, None if plan is None else plan.outlier_overrides(src))
    kinds = {name: c.kind for name, c in prof.columns.items()}
    schema_rules = [] if plan is None else plan.row_rules(src)
    asked = [null_rule(list(opts.not_null))] if opts.not_null else []
    rules = [non_finite_rule(floats), *asked, *schema_rules, outlier_rule(fences, kinds)]
    return column_level, _RowRules(rules, opts, fences)


def _chunks_to_recheck(
    run: _Run, notes: _ChunkNotes | None, fences: dict[str, Fences]
) -> list[Chunk] | None:
    """The chunks pass 2 must read; ``None`` for all of them.

    Pass 2 may skip chunks only when neither the clean output nor the schema needs every row.
    """
    if notes is None or "clean" in run.outputs:
        return None
    if run.plan is not None and run.plan.checks_every_row:
        return None
    if any(name not in notes.bad for name in run.opts.not_null):
        return None  # pass 1 tracks nulls of numeric columns only
    need = notes.needing_recheck(fences)
    return [c for c, n in zip(run.src.chunks(), need, strict=True) if n]


def _report(
    run: _Run, prof: Profile, findings: list[Finding], tally: _RowTally, *, exit_zero: bool
) -> Report:
    """Add the row findings and the gate, and build the report."""
    opts, plan = run.opts, run.plan
    findings = findings + tally.findings(prof.rows, run.src.path, opts)
    if plan is not None:
        plan.apply_check_severities(findings)
    findings = _order(findings, run.src.columns)
    findings.extend(_gate(findings, tally.quarantined, prof.rows, opts))
    return Report(
        dataset=run.src.path,
        rows=prof.rows,
        rows_quarantined=tally.quarantined,
        findings=findings,
        profile=prof,
        options=opts,
        exit_zero=exit_zero,
        outputs=dict(run.outputs),
        schema=None if plan is None else plan.name,
        notes=_notes(prof) + ([] if plan is None else plan.notes),
    )


class _LocalEngine:
    """Both passes in this process, one record batch at a time (the default engine)."""

    def check_output(self, path: str | os.PathLike[str], inputs: list[str], what: str) -> Path:
        if os.path.isdir(path):
            raise UsageError(
                f"--{what} {path} is a directory; the local engine writes one file "
                "(.parquet, .arrow or .feather), --engine ray a directory of parts"
            )
        return check_output_path(path, inputs, what)

    def profile_pass(self, run: _Run) -> tuple[Profile, _ChunkNotes | None]:
        return _profile_pass(run.src, run.opts, run.tick)

    def row_pass(self, run: _Run, rules: _RowRules, chunks: list[Chunk] | None) -> _RowTally:
        tally = _RowTally()
        splitter = OutputSplitter(
            _batch_schema(run.src),
            quarantine=run.outputs.get("quarantine"),
            clean=run.outputs.get("clean"),
        )
        try:
            for batch in _row_pass_batches(run, rules, chunks):
                failures = rules.failures(batch)
                tally.add(batch, failures)
                splitter.write(batch, failures)
                run.tick(batch.num_rows)
            splitter.close()
        except BaseException:
            splitter.abort()
            raise
        return tally

    def finish(self, report: Report) -> None:
        """Nothing to add: the HTML report reads its examples from the quarantine file."""


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


def _row_pass_batches(
    run: _Run, rules: _RowRules, chunks: list[Chunk] | None
) -> Iterator[pa.RecordBatch]:
    """The batches pass 2 checks: every row, or the chunks that can fail.

    With no output to write, a re-read chunk is read only in the columns that can
    fail there (decoding is most of pass 2's cost).
    """
    if chunks is None:
        yield from run.src.iter_batches()
        return
    suspect = None if run.outputs or run.notes is None else run.notes.suspect(rules.fences)
    for chunk in chunks:
        columns = None
        if suspect is not None:
            columns = [name for name, mask in suspect.items() if mask[chunk.index]]
        yield from run.src.iter_batches(columns=columns, chunks=[chunk])


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
