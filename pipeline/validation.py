"""``validate()``: options, pass 1, column checks, pass 2, report.

Pass 1 streams every batch into the mergeable :class:`~pipeline.profiling.Profile`
and notes, per readable chunk (parquet row group), whether it held non-finite
or null values and its numeric range. Column checks then run on the merged
profile, which also fixes the outlier fences. Pass 2 applies the row rules and
writes the clean and quarantine outputs; it re-reads only the chunks that can
hold a failing row, unless every row must be written (``clean=``) or checked
(schema row checks, or a source without independent chunks such as CSV).

The passes run in an engine (:mod:`pipeline.engines`: this process, or Ray
Data tasks); everything between and around them is decided here, once, which
is what keeps the two engines' findings equal. The :class:`~pipeline.report.Report`
carries what the run decided (fences, checks run, example rows), so no
renderer works it out again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .checks import checks_run, column_findings, non_finite_rule, null_rule, outlier_rule
from .engines import ChunkNotes, Engine, Progress, RowRules, RowTally, Run, get_engine
from .errors import UsageError
from .fences import Fences, outlier_fences
from .findings import Finding, Severities, order_of
from .options import ValidationOptions
from .profiling import Profile
from .report import Report
from .source import Chunk, Source, open_source

if TYPE_CHECKING:
    from .schema import SchemaPlan


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
    runner = get_engine(engine, ray_address)
    run = _prepare(source, schema, options, runner, quarantine, clean, progress)
    findings: list[Finding] = []
    if run.plan is not None:
        findings.extend(run.plan.structure_findings(run.src, run.opts))

    prof, notes = runner.profile_pass(run)
    column_level, rules = _check_columns(run, prof)
    findings.extend(column_level)
    tally = runner.row_pass(run, rules, _chunks_to_recheck(run, notes, rules.fences))

    report = _report(run, prof, findings, tally, rules.fences, exit_zero=exit_zero)
    report.elapsed = time.perf_counter() - started
    return report


def _prepare(
    source: str | os.PathLike[str] | Source,
    schema: Any,
    options: dict[str, Any],
    runner: Engine,
    quarantine: str | os.PathLike[str] | None,
    clean: str | os.PathLike[str] | None,
    progress: Progress | None,
) -> Run:
    """Options, schema plan, source and output paths, all checked before any data is read."""
    plan = _schema_plan(schema)
    label_from = "--label"
    if plan is not None:
        if "label" in plan.options and "label" not in options:
            label_from = f"{plan.name or 'the schema'}: label"
        options = {**plan.options, **options}
    opts = ValidationOptions.from_kwargs(**options)
    # A Source keeps its own batch size unless one was asked for.
    src = open_source(source, batch_size=options.get("batch_size"))
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
    return Run(src, opts, plan, outputs, progress or (lambda n: None))


def _schema_plan(schema: Any) -> SchemaPlan | None:
    if schema is None:
        return None
    from .schema import as_plan

    return as_plan(schema)


def _check_columns(run: Run, prof: Profile) -> tuple[list[Finding], RowRules]:
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
    return column_level, RowRules(rules, opts, fences)


def _chunks_to_recheck(
    run: Run, notes: ChunkNotes | None, fences: dict[str, Fences]
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
    run: Run,
    prof: Profile,
    findings: list[Finding],
    tally: RowTally,
    fences: dict[str, Fences],
    *,
    exit_zero: bool,
) -> Report:
    """Add the row findings and the gate, and build the report with the run's decisions."""
    opts, plan = run.opts, run.plan
    share = tally.quarantined / prof.rows if prof.rows else 0.0
    tolerated = opts.max_bad_rows is not None and prof.rows > 0 and share <= opts.max_bad_rows
    severities = Severities(
        opts.severities,
        warn_only=frozenset() if plan is None else plan.warning_checks(),
        rows_tolerated=tolerated,
    )
    findings = _order(findings + tally.findings(prof.rows, run.src.path, severities), run.src)
    findings.extend(_gate(tally.quarantined, prof.rows, opts))
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
        fences=fences,
        checks_run=checks_run(prof, opts, fences, findings),
        examples=tally.examples,
    )


def _order(findings: list[Finding], src: Source) -> list[Finding]:
    """Column-level findings first, then row-level; within each, in column order.

    Ties break on the reason code's place in the reason table and the schema
    check's name, never on discovery order, which depends on the batch size.
    """
    position = {name: i for i, name in enumerate(src.columns)}
    return sorted(
        findings,
        key=lambda f: (
            f.row_level,
            position.get(f.column or "", -1),
            order_of(f.check),
            f.schema_check or "",
        ),
    )


def _gate(quarantined: int, rows: int, opts: ValidationOptions) -> list[Finding]:
    """``bad_rows`` when more rows were quarantined than ``max_bad_rows`` allows."""
    if opts.max_bad_rows is None or rows == 0:
        return []
    share = quarantined / rows
    level = opts.severity("bad_rows")
    if share <= opts.max_bad_rows or level is None:
        return []
    return [
        Finding(
            "bad_rows", None, level, count=quarantined, fraction=share,
            message=f"{quarantined:,} of {rows:,} rows ({share:.2%}) were quarantined, more "
            f"than max_bad_rows={opts.max_bad_rows:.2%} allows; fix the data upstream or raise "
            "the allowance",
        )
    ]  # fmt: skip


def _notes(prof: Profile) -> list[str]:
    skipped = [name for name, c in prof.columns.items() if c.kind == "other"]
    if not skipped:
        return []
    return [f"columns of nested, binary, interval or null type are only counted, not checked: {', '.join(skipped)}"]
