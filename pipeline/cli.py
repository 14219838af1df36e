"""The ``validate`` command.

Exit codes: 0 passed, 1 the data failed the gate, 2 usage, schema or
unreadable-input error (one line on stderr, no traceback unless ``--debug``),
3 internal error. The report goes to stdout (or ``-o FILE``); progress and the
one-line verdict go to stderr. Every option can also be set from the
environment as ``BATCHGUARD_<OPTION>`` (e.g. ``BATCHGUARD_BATCH_SIZE=100000``).

Only click is imported at start-up: numpy and pyarrow load when the command
runs, and torch, pandas, pandera and scikit-learn only when a feature needs them.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

# These stay light (no numpy or pyarrow): the defaults and choices come from the options.
from .options import (
    DATASET_SETTINGS,
    DEFAULT_BATCH_SIZE,
    ENGINES,
    JOINT_SCORES,
    OUTLIER_METHODS,
    QUARANTINE_OUTLIERS,
    ValidationOptions,
)
from .report.model import ExitCode
from .report.render import FORMATS

__all__ = ["main", "validate_command"]

_DEFAULTS = ValidationOptions()

#: what ``click.option(...)`` returns: it decorates the command
_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _fraction(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise click.BadParameter(f"should be a fraction between 0 and 1, got {value}")
    return value


def _fraction_option(name: str, **kw: Any) -> _Decorator:
    """An option that holds a share (of rows, values or classes): a number from 0 to 1."""
    return click.option(name, type=float, callback=_fraction, **kw)


def _file_option(*decls: str, **kw: Any) -> _Decorator:
    """An option that names one file (a report, schema or profile), not a folder."""
    return click.option(*decls, type=click.Path(dir_okay=False, path_type=str), **kw)


class _OneLineUsage(click.UsageError):
    """A usage error shown as every other refusal of the command: one line, exit 2."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message().rstrip('.')}; see 'validate --help'", err=True)


class _Command(click.Command):
    """The ``validate`` command, whose option errors are one line (click's are four)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _OneLineUsage(exc.format_message()) from exc


@click.command(
    cls=_Command,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
# readable=False: the source's own check gives the one-line message with a tip.
@click.argument("dataset", type=click.Path(dir_okay=True, readable=False, path_type=str))
@_file_option("--schema", help="pandera YAML schema with the dataset's checks.")
@_file_option(
    "--infer-schema",
    metavar="OUT.yaml",
    help="Write a schema inferred from DATASET to OUT.yaml and exit (no validation).",
)
@click.option("--label", metavar="COL", help="Label column: class counts and imbalance check.")
@click.option(
    "--quarantine",
    type=click.Path(path_type=str),
    help="Write rows with row-level findings here (.parquet), with _reasons "
    "(with --engine ray: a directory of parquet parts).",
)
@click.option(
    "--clean",
    type=click.Path(path_type=str),
    help="Write all other rows here (.parquet, or .arrow/.feather for the loader; "
    "with --engine ray: a directory of parquet parts).",
)
@click.option(
    "--scores",
    type=click.Path(path_type=str),
    help="Write every row's joint score here (.parquet: _row_id, score, column; "
    "with --engine ray: a directory of parquet parts).",
)
@_file_option(
    "--report",
    "report_path",
    envvar="BATCHGUARD_REPORT",
    help="Write a self-contained HTML report here (.html).",
)
@_file_option("--profile-out", help="Write the mergeable column profile as JSON.")
@click.option(
    "--baseline",
    metavar="FILE",
    type=click.Path(dir_okay=True, readable=False, path_type=str),
    help="Compare with this baseline (a --profile-out or --baseline-out JSON, or a saved "
    "preprocessor folder): drift, label drift, new, missing and retyped columns.",
)
@_file_option(
    "--baseline-out",
    metavar="OUT.json",
    help="Write a slim drift baseline (exact counts, 1,001 quantiles per numeric column; "
    "about 20 kB per column) for a later --baseline.",
)
@click.option(
    "--format",
    "fmt",
    envvar="BATCHGUARD_FORMAT",  # named for the option, as every other one (not for "fmt")
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Report format on stdout (or -o).",
)
@_file_option("-o", "--output", help="Write the report to FILE instead of stdout.")
@_fraction_option(
    "--max-bad-rows",
    metavar="FRACTION",
    help="Pass while at most this share of rows is quarantined.",
)
@_fraction_option(
    "--near-constant-threshold",
    default=_DEFAULTS.near_constant_threshold,
    show_default=True,
    help="Share of one value that makes a column near-constant.",
)
@click.option(
    "--outlier-method",
    type=click.Choice(OUTLIER_METHODS),
    default=_DEFAULTS.outlier_method,
    show_default=True,
    help="auto: each column on the scale where its bulk is symmetric; iqr, mad: the classic rules.",
)
@click.option(
    "--outlier-threshold",
    type=float,
    help="Spreads beyond the 1st/99th percentile (auto, default 3), IQRs beyond the "
    "quartiles (iqr, default 5) or robust z (mad, default 5) that make an outlier.",
)
@click.option(
    "--quarantine-outliers",
    type=click.Choice(QUARANTINE_OUTLIERS),
    default=_DEFAULTS.quarantine_outliers,
    show_default=True,
    help="gross: quarantine values beyond the fences and report joint outliers; "
    "joint: quarantine joint outliers too.",
)
@click.option(
    "--joint-score",
    type=click.Choice(JOINT_SCORES),
    default=_DEFAULTS.joint_score,
    show_default=True,
    help="combined: a Cauchy model of the columns together and one of each column "
    "alone; distance: the robust Mahalanobis distance alone.",
)
@_fraction_option(
    "--min-class-share",
    default=_DEFAULTS.min_class_share,
    show_default=True,
    help="Rarest class share below which the label is imbalanced.",
)
@click.option("--strict", is_flag=True, help="Warnings fail the gate too.")
@click.option("--exit-zero", is_flag=True, help="Always exit 0 when the run completes.")
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default=ENGINES[0],
    show_default=True,
    help="Run here, or on Ray Data for data beyond one machine (needs batchguard[ray]).",
)
@click.option(
    "--ray-address",
    metavar="ADDRESS",
    help="Ray cluster to run on (e.g. HOST:6379, auto); default: RAY_ADDRESS or a local Ray.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Rows per record batch; bounds memory.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar (there is none off a terminal).")
@click.option("-q", "--quiet", is_flag=True, help="No verdict line on stderr.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="batchguard")
def validate_command(dataset: str, **kw: Any) -> None:
    """Validate DATASET (parquet file or directory, CSV, Arrow IPC) for training.

    Finds NaN/inf values, nulls, constant and near-constant features, zero-IQR
    features, outliers and label imbalance; quarantines bad rows with their
    reasons; exits 0 (passed), 1 (data failed), 2 (bad usage or input),
    3 (internal error).
    """
    debug = kw.pop("debug")
    # Options left at their defaults are not passed on, so a schema's dataset block
    # (label, thresholds) is overridden only by what the user actually set.
    ctx = click.get_current_context()
    defaults = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    kw = {k: v for k, v in kw.items() if ctx.get_parameter_source(k) not in defaults}
    try:
        code = _run(dataset, **kw)
    except KeyboardInterrupt:
        click.echo("validate: interrupted; no output was left half-written", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line and an exit code
        from .errors import BatchguardError

        if debug:
            raise
        if isinstance(exc, BatchguardError):
            click.echo(f"error: {exc}", err=True)
            sys.exit(ExitCode.USAGE)
        if isinstance(exc, OSError) and exc.errno in _FILE_ERRNOS:
            # The machine's files, not batchguard: a full disk, a read-only folder.
            where = f"{exc.filename}: " if exc.filename else "writing an output: "
            click.echo(f"error: {where}{exc.strerror}; check the path and the disk", err=True)
            sys.exit(ExitCode.USAGE)
        click.echo(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "Tip: rerun with --debug for the traceback and report it as a batchguard bug.",
            err=True,
        )
        sys.exit(ExitCode.INTERNAL)
    sys.exit(code)


#: errors of the files, folders and disks a run writes to (exit 2, one line), not of
#: batchguard (a missing file it was asked to read is refused before, by name)
_FILE_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EISDIR,
     errno.ENOTDIR, errno.ENAMETOOLONG}
)  # fmt: skip


def _run(dataset: str, **kw: Any) -> int:
    from ._atomic import check_distinct, write_text
    from ._stores import redact
    from .report import render
    from .validation import validate

    fmt = kw.pop("fmt", "text")
    quiet = kw.pop("quiet", False)
    no_progress = kw.pop("no_progress", False)
    output = kw.pop("output", None)
    profile_out = kw.pop("profile_out", None)
    baseline_out = kw.pop("baseline_out", None)
    report_path = kw.pop("report_path", None)
    infer_to = kw.pop("infer_schema", None)
    texts = {
        "-o": (output, ()),
        "--profile-out": (profile_out, (".json",)),
        "--baseline-out": (baseline_out, (".json",)),
        "--report": (report_path, (".html", ".htm")),
        "--infer-schema": (infer_to, (".yaml", ".yml")),
    }
    for option, (out, suffixes) in texts.items():
        if out is not None:
            _check_text_output(out, dataset, option, suffixes)
    # One file named twice would hold only the last writer's output: the report over
    # the clean rows, or over the input itself.
    check_distinct(
        {
            **{option: out for option, (out, _) in texts.items()},
            **{f"--{name}": kw.get(name) for name in ("quarantine", "clean", "scores")},
        },
        # (--baseline may be rewritten by --profile-out: it is read whole before)
        {"the input": dataset, "--schema": kw.get("schema")},
    )
    options = {k: v for k, v in kw.items() if v is not None}
    if infer_to is not None:
        # One local pass reads what inference needs; a BATCHGUARD_ENGINE setting is not an error.
        options.pop("engine", None)
        options.pop("ray_address", None)
        return _infer(dataset, infer_to, options, quiet=quiet)
    if "schema" not in options and options.get("engine", "local") == "local":
        from ._pandas_probe import defer_pandas_probe

        defer_pandas_probe()  # this run loads no pandas (see pipeline._pandas_probe)
    with _Progress(enabled=not no_progress and sys.stderr.isatty()) as tick:
        report = validate(dataset, progress=tick, **options)
    if profile_out:
        import json

        write_text(profile_out, json.dumps(report.profile.to_dict(), default=str) + "\n")
        report.outputs["profile"] = redact(profile_out)
    if baseline_out:
        from .drift import write_baseline

        write_baseline(report.profile, baseline_out)
        report.outputs["baseline"] = redact(baseline_out)
    if report_path:
        from .report import write_html

        write_html(report, report_path)
        report.outputs["report"] = redact(report_path)
    if fmt == "github":
        from .report import write_step_summary

        try:
            write_step_summary(report)
        except OSError as exc:  # the gate's verdict does not hang on the summary
            click.echo(
                f"warning: cannot append to GITHUB_STEP_SUMMARY ({exc.filename}): "
                f"{exc.strerror or exc}; the report is printed all the same",
                err=True,
            )
    text = render(report, fmt)
    if output:
        write_text(output, text)
    elif fmt == "text" and sys.stdout.isatty():
        _print_rich(report)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if not quiet:
        click.echo(report.verdict(), err=True)
    return report.exit_code


#: options that make no sense when only inferring a schema
_NOT_WITH_INFER = ("schema", "quarantine", "clean", "baseline")


def _infer(dataset: str, out: str, options: dict[str, Any], *, quiet: bool) -> int:
    """``--infer-schema``: write the schema, say so on stderr, exit 0 without validating."""
    from .errors import UsageError
    from .schema import infer_schema

    clash = [name for name in _NOT_WITH_INFER if name in options]
    if clash:
        raise UsageError(
            f"--infer-schema writes a schema and does not validate; drop --{clash[0]} "
            "(then validate with --schema)"
        )
    # The label is passed on its own; the other dataset settings given are recorded.
    settings = {k: options[k] for k in DATASET_SETTINGS if k in options and k != "label"}
    schema = infer_schema(
        dataset,
        label=options.get("label"),
        settings=settings,
        batch_size=options.get("batch_size", DEFAULT_BATCH_SIZE),
    )
    header = (
        f"batchguard schema inferred from {dataset} (pandera YAML).\n"
        "Ranges widen the observed min/max by 10% of the range; isin lists observed "
        "categories.\nReview and tighten before gating on it: see docs/schemas.md."
    )
    schema.to_yaml(out, header=header)
    if not quiet:
        tail = f"; note: {'; '.join(schema.notes)}" if schema.notes else ""
        click.echo(
            f"wrote {out}: {len(schema.columns)} columns inferred from {dataset}{tail}", err=True
        )
    return ExitCode.PASSED


def _check_text_output(out: str, dataset: str, option: str, suffixes: tuple[str, ...]) -> None:
    """Refuse a report or schema path with the wrong suffix, or no folder to write it in.

    (That it is not the input nor another output, ``check_distinct`` checks.)

    An empty ``suffixes`` takes any file name (``-o``: the report's format is ``--format``).
    """
    import os

    from ._stores import is_url
    from .errors import UsageError

    if is_url(out):  # written to a temporary key in the store, then moved
        from ._stores import check_output_url, redact

        what = option.lstrip("-") if option.startswith("--") else "output"  # -o is --output
        check_output_url(out, [redact(dataset)], what, suffixes)
        return
    folder = os.path.dirname(out) or "."
    if suffixes and not out.lower().endswith(suffixes):
        raise UsageError(f"{option} {out}: use a {suffixes[0]} file name")
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {out}: folder {folder} does not exist; create it first")
    if os.path.isdir(out):
        raise UsageError(f"{option} {out} is a folder; give a file name")
    # A special file (/dev/stdout) is written in place; a new file needs a writable folder.
    special = os.path.exists(out) and not os.path.isfile(out)
    if not (os.access(out, os.W_OK) if special else os.access(folder, os.W_OK)):
        raise UsageError(f"{option} {out}: folder {folder} is not writable; choose another")


def _print_rich(report: Any) -> None:
    from rich.console import Console

    from .report.text import renderables

    console = Console()
    for item in renderables(report):
        console.print(item)


class _Progress:
    """A rich progress bar on stderr counting rows read, shown only on a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            TextColumn("{task.completed:,} rows"),
            TimeElapsedColumn(),
            transient=True,
        )
        self._bar.start()
        task = self._bar.add_task("reading", total=None)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def main() -> None:
    """Console-script entry point."""
    from ._malloc import tune_allocator

    tune_allocator()  # this process is the command's own (see pipeline._malloc)
    validate_command.main(prog_name="validate", auto_envvar_prefix="BATCHGUARD")
