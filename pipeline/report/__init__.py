"""The validation report: one object, every output format rendered from it.

The exit code is computed here and nowhere else (:attr:`Report.exit_code`).
"""

from __future__ import annotations

from .model import Report
from .render import FORMATS, render

__all__ = ["FORMATS", "Report", "render"]
