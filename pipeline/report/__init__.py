"""The validation report: one object, every output format rendered from it.

The exit code is computed here and nowhere else (:attr:`Report.exit_code`).
Formats: ``text``, ``json``, ``markdown``, ``junit``, ``github`` (one module
each, ``render(report) -> str``), and the HTML report (:func:`render_html`,
:func:`write_html`).
"""

from __future__ import annotations

from .model import Report
from .render import FORMATS, render, render_html, write_html, write_step_summary

__all__ = ["FORMATS", "Report", "render", "render_html", "write_html", "write_step_summary"]
