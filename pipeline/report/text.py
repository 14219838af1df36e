"""``--format text``: tables for people at a terminal (rich, imported lazily)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Report

__all__ = ["render", "renderables"]

_MESSAGE_WIDTH = 80


def renderables(report: Report) -> list[Any]:
    """The rich objects the text report is made of."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    head = Text()
    head.append(f"{report.dataset}", style="bold")
    head.append(
        f"  {report.rows:,} rows, {len(report.profile.columns)} columns; "
        f"{report.rows_clean:,} clean, {report.rows_quarantined:,} quarantined"
        + (f", {report.rows_reported:,} reported (kept)" if report.rows_reported else "")
    )
    out.append(head)
    if not report.findings:
        out.append(Text("No findings.", style="green"))
    else:
        table = Table(title="Findings", title_justify="left", expand=False)
        table.add_column("severity")
        table.add_column("check")
        table.add_column("column")
        table.add_column("rows", justify="right")
        table.add_column("share", justify="right")
        table.add_column("message", max_width=_MESSAGE_WIDTH)
        for f in sorted(report.findings, key=lambda f: f.severity != "error"):
            style = "red" if f.severity == "error" else "yellow"
            check = f.check if f.schema_check is None else f"{f.check}:{f.schema_check}"
            rows = f"{f.count:,}" if f.row_level or f.check == "bad_rows" else "-"
            share = f"{f.fraction:.3%}" if f.row_level else "-"
            table.add_row(
                Text(f.severity, style=style), check, f.column or "-", rows, share, f.message
            )
        out.append(table)
    if report.drift is not None:
        out.extend(_drift(report))
    if report.options.label is not None and report.label and report.label["classes"]:
        classes = report.label["classes"]
        total = sum(classes.values()) or 1
        shares = ", ".join(f"{k}: {v:,} ({v / total:.1%})" for k, v in classes.items())
        out.append(Text(f"label '{report.options.label}': {shares}"))
    for kind, path in report.outputs.items():
        out.append(Text(f"{kind}: {path}"))
    for note in report.notes:
        out.append(Text(f"note: {note}", style="dim"))
    return out


def _drift(report: Report) -> list[Any]:
    """The baseline comparison: what was compared, and every metric at warning or error."""
    from rich.table import Table
    from rich.text import Text

    drift = report.drift
    assert drift is not None
    flagged = drift.flagged
    head = (
        f"drift against {drift.baseline} ({drift.baseline_rows:,} rows): "
        f"{len(drift.compared)} columns compared, {len({m.column for m in flagged})} drifted"
    )
    out: list[Any] = [Text(head)]
    if flagged:
        table = Table(title="Drift", title_justify="left", expand=False)
        for name in ("severity", "column", "metric", "value", "threshold", "where"):
            table.add_column(name, justify="right" if name in ("value", "threshold") else "left")
        for m in flagged:
            style = "red" if m.status == "error" else "yellow"
            table.add_row(
                Text(m.status, style=style), m.column, m.metric, f"{m.value:.4g}",
                f"{m.threshold:g}" if m.threshold is not None else "-", m.detail,
            )  # fmt: skip
        out.append(table)
    return out


def render(report: Report) -> str:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=160, color_system=None, force_terminal=False)
    for item in renderables(report):
        console.print(item)
    return buf.getvalue()
