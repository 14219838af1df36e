"""Helpers the report formats share: check labels and number formats.

Renderers read what the run decided from the :class:`~pipeline.report.Report`
(fences, checks run, example rows); none works it out again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..findings import Finding


def check_label(finding: Finding) -> str:
    """The check's name as reports show it: the reason code, or ``schema:<check>``.

    Examples
    --------
    >>> from pipeline.findings import Finding
    >>> check_label(Finding("schema", "age", "error", 3, 0.1, "...", [], "greater_than"))
    'schema:greater_than'
    """
    return finding.check_name


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
