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
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ._atomic import check_distinct
from ._stores import redact
from .checks import (
    checks_run,
    column_findings,
    column_sentinels,
    non_finite_rule,
    null_rule,
    outlier_rule,
    sentinel_rule,
)
from .engines import (
    SAMPLE_ROWS,
    ChunkNotes,
    Engine,
    Progress,
    RowRules,
    RowTally,
    Run,
    get_engine,
    row_message,
)
from .errors import UsageError
from .fences import outlier_fences
from .findings import REASONS, Finding, Severities, order_of
from .joint import MAX_CODE_VALUES, JointModel, JointSummary, fit_joint, joint_summary
from .options import ValidationOptions
from .profiling import EXACT_VALUES, Profile
from .quarantine import REASONS as REASONS_FIELD
from .quarantine import bad_row_mask
from .report import Report
from .source import Chunk, Source, open_source

if TYPE_CHECKING:
    from .drift import Baseline, DriftConfig, DriftResult
    from .schema import SchemaPlan

__all__ = ["validate"]


def validate(
    source: str | os.PathLike[str] | Source,
    schema: Any = None,
    *,
    quarantine: str | os.PathLike[str] | None = None,
    clean: str | os.PathLike[str] | None = None,
    scores: str | os.PathLike[str] | None = None,
    exit_zero: bool = False,
    progress: Progress | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    baseline: Any = None,
    drift: Any = None,
    **options: Any,
) -> Report:
    """Validate a dataset: profile it, check it, quarantine bad rows, return the report.

    Parameters
    ----------
    source : str, os.PathLike, Source or an in-memory dataset
        A parquet/CSV/Arrow file or a directory of parquet files (a Delta or
        Iceberg table folder is read as its table), a path or a URL
        (``s3://bucket/prefix/``, ``gs://``, ``abfs://``, ``hf://``, any fsspec
        URL); or a pandas or polars DataFrame, a pyarrow Table or
        RecordBatchReader, a ``datasets.Dataset``, a ``deltalake.DeltaTable`` or a
        ``pyiceberg`` table (see :class:`~pipeline.source.Source`).
    schema : str, os.PathLike, SchemaPlan or pandera.DataFrameSchema, optional
        Declarative checks; see :func:`pipeline.load_schema`.
    quarantine, clean : str or os.PathLike, optional
        Write rows with row-level findings (with ``_reasons``) / all other rows here:
        a file (or a URL, written to a temporary key and then moved) with the local
        engine, a directory of parquet parts with Ray.
    scores : str or os.PathLike, optional
        Write every row's joint score here: ``_row_id`` (int64), ``score``
        (float64, higher is more unusual; above the threshold a row is a
        ``joint_outlier``) and ``column`` (the column adding most to a joint
        outlier's score, else null). Same at every batch size and on both engines.
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
    baseline : str, os.PathLike, Profile or pipeline.drift.Baseline, optional
        Compare with this baseline (a ``--profile-out`` JSON, a saved
        Preprocessor folder, or a slim ``--baseline-out`` JSON): ``drift``,
        ``label_drift``, ``new_column``, ``missing_column`` and ``dtype``
        findings, and the report's ``drift`` measurements (:mod:`pipeline.drift`).
        The baseline's data is never read.
    drift : mapping or pipeline.drift.DriftConfig, optional
        Drift thresholds in the layout of the schema's ``drift:`` block; they
        replace the schema's.
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
    outputs = {"quarantine": quarantine, "clean": clean, "scores": scores}
    run = _prepare(source, schema, options, runner, outputs, progress)
    reference = _baseline(run, baseline, drift)
    findings: list[Finding] = []
    if run.plan is not None:
        findings.extend(run.plan.structure_findings(run.src, run.opts))

    prof, notes = runner.profile_pass(run)
    column_level, rules = _check_columns(run, prof)
    findings.extend(column_level)
    drifted = None
    if reference is not None:  # from the merged profile: the same on every engine
        drifted = _drift(run, prof, findings, *reference)
        findings.extend(drifted.findings)
    chunks = _chunks_to_recheck(run, prof, notes, rules)
    joint = rules.joint
    if chunks is not None:  # not every row is read again: judge joint outliers on the sample
        rules = replace(rules, joint=None)
    tally = runner.row_pass(run, rules, chunks)

    report = _report(run, prof, findings, tally, rules, joint, exit_zero=exit_zero, drift=drifted)
    report.elapsed = time.perf_counter() - started
    return report


def _prepare(
    source: str | os.PathLike[str] | Source,
    schema: Any,
    options: dict[str, Any],
    runner: Engine,
    outputs: dict[str, str | os.PathLike[str] | None],
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
    label_may_be_null = plan is not None and plan.nullable(src, opts.label)
    if opts.label is not None and opts.label not in opts.not_null and not label_may_be_null:
        # A row without a label cannot be trained on (nor counted in a class), unless the
        # schema says the label may be null.
        opts = replace(opts, not_null=(*opts.not_null, opts.label))
    missing = [name for name in opts.not_null if name not in src.columns]
    if missing:
        raise UsageError(
            f"not_null names {', '.join(map(repr, missing))}, which {src.path} does not have; "
            f"columns are {', '.join(src.columns)}"
        )
    given = {name: path for name, path in outputs.items() if path is not None}
    check_distinct({f"--{name}": path for name, path in given.items()})
    if "quarantine" in given and REASONS_FIELD in src.columns:
        raise UsageError(
            f"{src.path} already has a column '{REASONS_FIELD}' (a quarantine output?), which "
            "--quarantine writes; rename or drop it, or validate without --quarantine"
        )
    checked = {
        name: str(runner.check_output(path, [src.path], name)) for name, path in given.items()
    }
    return Run(src, opts, plan, checked, progress or (lambda n: None))


def _schema_plan(schema: Any) -> SchemaPlan | None:
    if schema is None:
        return None
    from .schema import as_plan

    return as_plan(schema)


def _check_columns(run: Run, prof: Profile) -> tuple[list[Finding], RowRules]:
    """Column findings on the merged profile, and the row rules it fixes.

    The profile fixes each column's sentinels, its outlier fences (computed
    without the sentinels) and the joint model.
    """
    src, opts, plan = run.src, run.opts, run.plan
    column_level = column_findings(prof, opts)
    if plan is not None:  # the schema's column checks run on the merged profile
        column_level = plan.profile_findings(prof, opts, column_level)
    floats = [f.name for f in src.schema if pa.types.is_floating(f.type) and f.name != "_row_id"]
    sentinels = column_sentinels(prof, opts)
    codes = {name: [s.value for s in found] for name, found in sentinels.items()}
    overrides = None if plan is None else plan.outlier_overrides(src)
    fences = outlier_fences(prof, opts, overrides, codes)
    kinds = {name: c.kind for name, c in prof.columns.items()}
    schema_rules = [] if plan is None else plan.row_rules(src)
    covered = set() if plan is None else set(plan.non_null(src))  # the schema's null rule
    must_hold = [name for name in opts.not_null if name not in covered]
    asked = [null_rule(must_hold)] if must_hold else []
    rules = [
        non_finite_rule(floats), *asked, *schema_rules,
        sentinel_rule(sentinels, kinds), outlier_rule(fences, kinds, sentinels),
    ]  # fmt: skip
    joint = None
    if opts.severity("joint_outlier") is not None:
        # Degenerate columns (constant, near-constant) and codes with a handful of values
        # (flags, categories) would let their rare values dominate every distance: those
        # are judged by frequency, on their own; the joint score is for measurements.
        degenerate = {f.column for f in column_level if f.check in ("constant", "near_constant")}
        numeric = [
            n
            for n, c in prof.columns.items()
            if c.kind == "numeric"
            and n != opts.label
            and n not in degenerate
            and (c.values is None or len(c.values) > MAX_CODE_VALUES)
        ]
        joint = fit_joint(prof, numeric, fences, score=opts.joint_score)
    return column_level, RowRules(rules, opts, fences, sentinels, joint, kinds)


def _chunks_to_recheck(
    run: Run, prof: Profile, notes: ChunkNotes | None, rules: RowRules
) -> list[Chunk] | None:
    """The chunks pass 2 must read; ``None`` for all of them, in full.

    Pass 2 may skip chunks only when no output or check needs every row: the
    clean output, the scores, joint outliers sent to quarantine, schema checks
    of every row.
    """
    if notes is None or "clean" in run.outputs or "scores" in run.outputs:
        return None
    if rules.joint is not None and run.opts.quarantine_outliers == "joint":
        return None
    if run.plan is not None and run.plan.checks_every_row:
        return None
    # Pass 1 notes the nulls of numeric columns per chunk only; a string label (a not_null
    # column of another kind) that holds none needs no chunk read again.
    if any(name not in notes.bad and prof.columns[name].null for name in run.opts.not_null):
        return None
    need = notes.needing_recheck(rules.bounds)
    return [c for c, n in zip(run.src.chunks(), need, strict=True) if n]


def _report(
    run: Run,
    prof: Profile,
    findings: list[Finding],
    tally: RowTally,
    rules: RowRules,
    joint: JointModel | None,
    *,
    exit_zero: bool,
    drift: DriftResult | None = None,
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
    row_level = tally.findings(prof.rows, run.src.path, severities)
    summary = None
    if joint is not None:
        summary = joint_summary(
            joint, prof, lambda batch: bad_row_mask(batch.num_rows, rules.failures(batch))
        )
        if rules.joint is None:  # pass 2 did not score every row: the sample stands for them
            row_level += _sampled_joint_finding(joint, summary, prof, run, severities)
    findings = _order(findings + row_level, run.src)
    findings.extend(_gate(tally.quarantined, prof.rows, opts))
    return Report(
        dataset=run.src.path,
        rows=prof.rows,
        rows_quarantined=tally.quarantined,
        findings=findings,
        profile=prof,
        options=opts,
        exit_zero=exit_zero,
        outputs={name: redact(path) for name, path in run.outputs.items()},
        schema=None if plan is None else plan.name,
        notes=_notes(prof, opts.label) + ([] if plan is None else plan.notes),
        fences=rules.fences,
        sentinels=rules.sentinels,
        checks_run=_with_drift_checks(checks_run(prof, opts, rules.fences, findings), drift),
        examples=tally.examples,
        joint=summary,
        drift=drift,
        source_version=run.src.version,
    )


def _baseline(run: Run, baseline: Any, drift: Any) -> tuple[Baseline, DriftConfig] | None:
    """The baseline and the drift settings, read and checked before any data is."""
    if baseline is None:
        if drift is not None:
            raise UsageError("drift= sets drift thresholds, which need a baseline; pass baseline=")
        return None
    from .drift import Baseline, DriftConfig, load_baseline, summarize
    from .profiling import Profile

    if isinstance(baseline, Profile):
        reference = summarize(baseline)
    elif isinstance(baseline, Baseline):
        reference = baseline
    else:
        reference = load_baseline(baseline)
    if isinstance(drift, DriftConfig):
        config = drift
    elif drift is not None:
        config = DriftConfig.from_mapping(drift)
    else:
        config = (run.plan.drift if run.plan is not None else None) or DriftConfig()
    config.check_columns([*reference.columns, *run.src.columns], reference.source)
    return reference, config


def _drift(
    run: Run, prof: Profile, findings: list[Finding], reference: Baseline, config: DriftConfig
) -> DriftResult:
    """Compare the merged profile with the baseline; a fact the schema already reported
    (a missing column, a dtype) is not reported again."""
    from .drift import compare

    result = compare(
        reference, prof, config, label=run.opts.label, dataset=run.src.path,
        severities=Severities(run.opts.severities),
    )  # fmt: skip
    seen = {(f.check, f.column) for f in findings}
    result.findings = [f for f in result.findings if (f.check, f.column) not in seen]
    return result


def _with_drift_checks(
    pairs: list[tuple[str | None, str]], drift: DriftResult | None
) -> list[tuple[str | None, str]]:
    """The checks run, with the baseline comparison's (column, check) pairs added."""
    if drift is None:
        return pairs
    seen = set(pairs)
    return pairs + [p for p in dict.fromkeys(drift.checks) if p not in seen]


def _sampled_joint_finding(
    joint: JointModel, summary: JointSummary, prof: Profile, run: Run, severities: Severities
) -> list[Finding]:
    """The ``joint_outlier`` finding as the row sample shows it (exact when it holds every row)."""
    level = severities.of("joint_outlier")
    sampled = summary.sampled
    if level is None or not summary.above or not sampled:
        return []
    threshold = f"score > {joint.threshold:g}"
    if sampled >= prof.rows:  # the sample holds every row: the count is exact
        count, shown = summary.above, summary.first[:SAMPLE_ROWS]
        message = row_message("joint_outlier", None, None, count, shown, threshold, run.src.path)
    else:
        count = round(summary.above * prof.rows / sampled)
        shown = sorted(r["row_id"] for r in summary.top[:SAMPLE_ROWS])
        message = (
            f"{run.src.path} has about {count:,} rows unusual as a combination of columns "
            f"({threshold}; estimated from {summary.above:,} of a uniform sample of "
            f"{sampled:,} rows, --scores or --clean scores every row), e.g. rows "
            f"{', '.join(map(str, shown))}; {REASONS['joint_outlier'].advice}"
        )
    return [
        Finding(
            "joint_outlier", None, level, count=count, fraction=count / prof.rows,
            message=message, sample_rows=shown,
        )
    ]  # fmt: skip


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


def _notes(prof: Profile, label: str | None) -> list[str]:
    notes = []
    skipped = [name for name, c in prof.columns.items() if c.kind == "other"]
    if skipped:
        kinds = "nested, binary, interval or null"
        notes.append(f"columns of {kinds} type are only counted, not checked: {', '.join(skipped)}")
    if label is not None and prof.label_counts(label) is None:
        notes.append(
            f"label '{label}' holds more than {EXACT_VALUES:,} distinct values, so its classes "
            "are not counted and class balance is not checked (a regression target or an id?)"
        )
    return notes
