"""``--format github``: GitHub Actions annotations, and the job summary.

:func:`render` writes one workflow command per finding (one per failing
check, never one per row: GitHub shows only the first 10 errors and 10
warnings of a step)::

    ::error file=data/train.parquet,title=nan in income::column 'income' of ... has 37 NaN ...

A finding that fails the gate is an ``::error``; a warning that does not is a
``::warning``. Values are escaped by GitHub's rules (``actions/toolkit``
``escapeData``/``escapeProperty``): ``%``, CR and LF everywhere, and ``:``
and ``,`` inside properties, so no value from the data can end the command or
start another one.

:func:`write_step_summary` appends the markdown report to the file named by
``$GITHUB_STEP_SUMMARY`` (GitHub's limit is 1 MiB per step; this stays below
:data:`SUMMARY_LIMIT`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._common import check_label

if TYPE_CHECKING:
    from ..findings import Finding
    from .model import Report

__all__ = [
    "SUMMARY_LIMIT",
    "annotation",
    "escape_data",
    "escape_property",
    "render",
    "step_summary",
    "write_step_summary",
]

#: bytes of markdown appended to the job summary at most
SUMMARY_LIMIT = 512 * 1024


def escape_data(text: object) -> str:
    """Escape a workflow command's message.

    Examples
    --------
    >>> escape_data("50% of rows\\nbad")
    '50%25 of rows%0Abad'
    """
    return str(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: object) -> str:
    """Escape a workflow command's property value (``file=``, ``title=``).

    Examples
    --------
    >>> escape_property("a:b,c")
    'a%3Ab%2Cc'
    """
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(report: Report, finding: Finding) -> str:
    """The workflow command line of one finding."""
    level = "error" if report.fails(finding) else "warning"
    title = check_label(finding)
    if finding.metric is not None and finding.value is not None:
        title = f"{title} ({finding.metric} {finding.value:.3g})"
    if finding.column is not None:
        title = f"{title} in {finding.column}"
    props = f"file={escape_property(report.dataset)},title={escape_property(title)}"
    return f"::{level} {props}::{escape_data(finding.message)}"


def render(report: Report) -> str:
    """One annotation per finding, errors first; empty when there is nothing to say."""
    ordered = sorted(report.findings, key=lambda f: not report.fails(f))
    return "".join(annotation(report, f) + "\n" for f in ordered)


def step_summary(report: Report, limit: int = SUMMARY_LIMIT) -> str:
    """The markdown job summary, cut at a line end to stay within ``limit`` bytes."""
    from .markdown import render as render_markdown

    text = render_markdown(report)
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    note = (
        f"\n\n*Summary cut at {limit // 1024} KiB; see the full report "
        "(`--format json` or the HTML report).*\n"
    )
    room = limit - len(note.encode("utf-8"))
    head = data[:room].decode("utf-8", errors="ignore")
    return head[: head.rfind("\n") + 1] + note


def write_step_summary(
    report: Report, path: str | os.PathLike[str] | None = None, limit: int = SUMMARY_LIMIT
) -> str | None:
    """Append the markdown summary to ``$GITHUB_STEP_SUMMARY`` when it is set.

    Parameters
    ----------
    report : Report
    path : str or os.PathLike, optional
        The summary file; by default ``$GITHUB_STEP_SUMMARY``.
    limit : int, default SUMMARY_LIMIT
        Bytes appended at most (GitHub refuses summaries over 1 MiB).

    Returns
    -------
    str or None
        The file appended to, or ``None`` when there is none (not on GitHub).
    """
    target = os.fspath(path) if path is not None else os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    # Appending, not replacing: other steps' summaries share the file (GitHub's contract).
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(step_summary(report, limit) + "\n")
    return target
