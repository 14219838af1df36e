"""``--format markdown``: a compact summary for pull-request comments and job summaries.

GitHub-flavoured markdown. Every value taken from the data (dataset path,
column names, messages that quote values) is escaped, so a column named
``<script>`` or ``*x*`` shows as typed and cannot add HTML, links or formatting.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ._common import check_label, rows_affected

if TYPE_CHECKING:
    from .model import Report

__all__ = ["MAX_CLASSES", "MAX_FINDINGS", "escape", "render"]

#: findings listed in the table; the rest are counted in one line
MAX_FINDINGS = 100
#: label classes listed
MAX_CLASSES = 20

# Characters that can start markdown or HTML syntax; a backslash makes each literal
# (CommonMark: any ASCII punctuation may be backslash-escaped).
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&@])")


def escape(text: object) -> str:
    r"""``text`` as literal markdown on one line, safe inside a table cell.

    Examples
    --------
    >>> escape("<script>|*x*")
    '\\<script\\>\\|\\*x\\*'
    """
    flat = " ".join(str(text).splitlines())
    return _SPECIAL.sub(r"\\\1", flat)


def render(report: Report) -> str:
    """The report as a markdown summary (heading, counts, findings table, label, outputs)."""
    return "\n".join(_lines(report)) + "\n"


def _lines(report: Report) -> list[str]:
    mark = "✅" if report.passed else "❌"
    state = "PASSED" if report.passed else "FAILED"
    lines = [f"### {mark} batchguard: {state}: {escape(report.dataset)}", ""]
    counts = [
        f"{report.rows:,} rows",
        f"{len(report.profile.columns)} columns",
        f"{report.rows_clean:,} clean",
        f"{report.rows_quarantined:,} quarantined",
        *([f"{report.rows_reported:,} reported (kept)"] if report.rows_reported else []),
        f"{len(report.errors)} error{'s' * (len(report.errors) != 1)}",
        f"{len(report.warnings)} warning{'s' * (len(report.warnings) != 1)}",
    ]
    lines.append(" · ".join(counts))
    extra = []
    if report.schema:
        extra.append(f"schema {escape(report.schema)}")
    if report.options.strict:
        extra.append("strict: warnings fail the gate")
    if report.options.max_bad_rows is not None:
        extra.append(f"max bad rows {report.options.max_bad_rows:.2%}")
    if not report.passed and report.exit_zero:
        extra.append("--exit-zero: the job continues")
    if extra:
        lines += ["", "; ".join(extra)]
    lines.append("")
    if not report.findings:
        lines.append("No findings.")
    else:
        lines += [
            "| | check | column | rows | message |",
            "|---|---|---|---:|---|",
        ]
        ordered = sorted(report.findings, key=lambda f: not report.fails(f))
        for f in ordered[:MAX_FINDINGS]:
            level = ("❌ " if report.fails(f) else "⚠️ ") + f.severity
            lines.append(
                f"| {level} | {escape(check_label(f))} | {escape(f.column or '–')} "
                f"| {rows_affected(f)} | {escape(f.message)} |"
            )
        if len(ordered) > MAX_FINDINGS:
            lines += [
                "",
                f"… and {len(ordered) - MAX_FINDINGS:,} more findings (see the full report).",
            ]
    if report.drift is not None:
        lines += _drift(report)
    label = report.label
    if label is not None and label["classes"]:
        classes = label["classes"]
        total = sum(classes.values()) or 1
        shown = [
            f"{escape(k)}: {v:,} ({v / total:.1%})" for k, v in list(classes.items())[:MAX_CLASSES]
        ]
        more = f", … ({len(classes) - MAX_CLASSES} more)" if len(classes) > MAX_CLASSES else ""
        lines += ["", f"**Label** {escape(label['column'])}: {', '.join(shown)}{more}"]
    if report.outputs:
        outs = ", ".join(f"{escape(k)}: {escape(v)}" for k, v in report.outputs.items())
        lines += ["", f"Outputs: {outs}"]
    return lines


def _drift(report: Report) -> list[str]:
    """The baseline comparison: a line of counts and a table of the metrics that drifted."""
    drift = report.drift
    assert drift is not None
    flagged = drift.flagged
    drifted = len({m.column for m in flagged})
    lines = [
        "",
        f"**Drift** against {escape(drift.baseline)} ({drift.baseline_rows:,} rows): "
        f"{len(drift.compared)} columns compared, {drifted} drifted",
    ]
    if flagged:
        lines += [
            "",
            "| | column | metric | value | threshold | where |",
            "|---|---|---|---:|---:|---|",
        ]
        for m in flagged[:MAX_FINDINGS]:
            mark = "❌" if m.status == "error" else "⚠️"
            threshold = "–" if m.threshold is None else f"{m.threshold:g}"
            lines.append(
                f"| {mark} {m.status} | {escape(m.column)} | {m.metric} | {m.value:.4g} "
                f"| {threshold} | {escape(m.detail)} |"
            )
    return lines
