"""Render a :class:`Report` in one of the output formats.

This module stays light (no numpy, pyarrow or jinja2 at import): the command
line reads :data:`FORMATS` at start-up, and each renderer loads when used.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Report

__all__ = ["FORMATS", "render", "render_html", "write_html", "write_step_summary"]

# format name -> module in this package with a ``render(report) -> str``
_RENDERERS = {
    "text": "text",
    "json": "json_format",
    "markdown": "markdown",
    "junit": "junit",
    "github": "github",
}
#: the ``--format`` choices; HTML is not one of them (it is ``--report OUT.html``)
FORMATS = tuple(_RENDERERS)


def render(report: Report, fmt: str) -> str:
    """The report as text in format ``fmt`` (one of :data:`FORMATS`)."""
    module = importlib.import_module(f".{_RENDERERS[fmt]}", __package__)
    return str(module.render(report))


def render_html(report: Report) -> str:
    """The self-contained HTML report (see :mod:`pipeline.report.html`)."""
    from .html import render as render_page

    return render_page(report)


def write_html(report: Report, path: str | os.PathLike[str]) -> None:
    """Write the HTML report to ``path`` atomically (``--report OUT.html``)."""
    from .html import write

    write(report, path)


def write_step_summary(report: Report) -> str | None:
    """Append the markdown summary to ``$GITHUB_STEP_SUMMARY`` when set; the file or ``None``."""
    from .github import write_step_summary as write_summary

    return write_summary(report)
