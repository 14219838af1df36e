"""Render a :class:`Report` in one of the output formats."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Report

# format name -> module in this package with a ``render(report) -> str``
_RENDERERS = {
    "text": "text",
    "json": "json_format",
}
FORMATS = tuple(_RENDERERS)


def render(report: Report, fmt: str) -> str:
    """The report as text in format ``fmt`` (one of :data:`FORMATS`)."""
    module = importlib.import_module(f".{_RENDERERS[fmt]}", __package__)
    return module.render(report)
