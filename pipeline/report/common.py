"""Helpers the report formats share: check labels, the checks that ran, number formats."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from ..findings import Finding
    from .model import Report

#: column-level checks in the order reports list them, then row-level ones
CHECK_ORDER = (
    "missing_column",
    "dtype",
    "constant",
    "near_constant",
    "zero_iqr",
    "class_imbalance",
    "null",
    "nan",
    "inf",
    "outlier",
    "schema",
    "bad_rows",
)


def check_label(finding: Finding) -> str:
    """The check's name as reports show it: the reason code, or ``schema:<check>``.

    Examples
    --------
    >>> from pipeline.findings import Finding
    >>> check_label(Finding("schema", "age", "error", 3, 0.1, "...", [], "greater_than"))
    'schema:greater_than'
    """
    if finding.check == "schema" and finding.schema_check:
        return f"schema:{finding.schema_check}"
    return finding.check


def checks_run(report: Report) -> list[tuple[str | None, str]]:
    """Every (column, check) pair the run checked, passed or not, in report order.

    A check counts as run on a column when the engine applies it there:

    - ``nan`` and ``inf`` on floating columns;
    - ``constant`` and ``near_constant`` on every column that is not of a
      nested or binary type (those are only counted);
    - ``zero_iqr`` on numeric columns other than the label;
    - ``outlier`` on the columns that have outlier fences
      (:func:`pipeline.checks.outlier_fences`: numeric, not the label, spread > 0);
    - ``class_imbalance`` on the label column;
    - ``bad_rows`` (dataset level, column ``None``) when ``max_bad_rows`` is set.

    Schema checks (``null``, ``schema:<name>``, ``missing_column``, ``dtype``)
    appear only when they failed: the report does not keep the schema's full
    list. Checks whose severity is ``off`` are left out. Every finding's pair is
    included, whatever the rules above say.

    Returns
    -------
    list of (str or None, str)
        ``(column, check label)``; column ``None`` for dataset-level checks.
    """
    from ..checks import outlier_fences, severity

    opts = report.options
    profile = report.profile
    fences = outlier_fences(profile, opts)
    pairs: list[tuple[str | None, str]] = []
    seen: set[tuple[str | None, str]] = set()

    def add(column: str | None, check: str) -> None:
        if (column, check) not in seen:
            seen.add((column, check))
            pairs.append((column, check))

    found: dict[str | None, list[str]] = {}
    for f in report.findings:
        found.setdefault(f.column, []).append(check_label(f))

    def order(check: str) -> int:
        base = check.split(":", 1)[0]
        return CHECK_ORDER.index(base) if base in CHECK_ORDER else len(CHECK_ORDER)

    for name, column in profile.columns.items():
        ran: list[str] = []
        if column.kind != "other":
            typ = profile.schema.field(name).type
            if pa.types.is_floating(typ):
                ran += ["nan", "inf"]
            ran += ["constant", "near_constant"]
            if column.kind == "numeric" and name != opts.label:
                ran.append("zero_iqr")
            if name in fences:
                ran.append("outlier")
            if name == opts.label:
                ran.append("class_imbalance")
        ran = [c for c in ran if severity(c, opts) != "off"]
        for check in sorted([*ran, *found.get(name, [])], key=order):
            add(name, check)
    # Findings on columns the data lacks (missing_column), then dataset-level ones.
    for f in report.findings:
        if f.column is not None and f.column not in profile.columns:
            add(f.column, check_label(f))
    if opts.max_bad_rows is not None and severity("bad_rows", opts) != "off":
        add(None, "bad_rows")
    for f in report.findings:
        if f.column is None:
            add(None, check_label(f))
    return pairs


def number(value: Any) -> str:
    """A statistic for people: thousands separators, 6 significant digits, NaN/inf by name.

    Examples
    --------
    >>> number(1234567), number(0.000123456789), number(float("-inf")), number(None)
    ('1,234,567', '0.000123457', '-inf', '–')
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.6g}"
    return str(value)


def rows_affected(finding: Finding) -> str:
    """``"37 (0.185%)"`` for row-level findings and ``bad_rows``; ``""`` for column-level ones."""
    if finding.row_level or finding.check == "bad_rows":
        return f"{finding.count:,} ({finding.fraction:.3%})"
    return ""
