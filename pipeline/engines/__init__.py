"""Where validation's two passes run: ``"local"`` (the default) or ``"ray"``.

The local engine (:mod:`pipeline.engines._local`) streams the dataset through
this process. The Ray engine (:mod:`pipeline.engines._ray`) runs the same two
passes as Ray Data tasks, for datasets beyond one machine; it needs the ``ray``
extra (``pip install 'batchguard[ray]'``), which is imported only when that
engine is asked for, so Ray never slows down ``validate --help`` or a small run.
What both share (the run, the row rules, the chunk notes, the tally of row
failures) is in :mod:`pipeline.engines._run`.

An engine provides the three methods of :class:`Engine`; the findings, counts,
statistics and quarantined row ids do not depend on which one ran.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import UsageError
from ..options import ENGINES
from ._run import (
    SAMPLE_ROWS,
    ChunkNotes,
    Progress,
    RowRules,
    RowTally,
    Run,
    batch_schema,
    row_message,
)

if TYPE_CHECKING:
    from ..profiling import Profile
    from ..source import Chunk

__all__ = [
    "ENGINES",
    "RAY_MISSING",
    "SAMPLE_ROWS",
    "ChunkNotes",
    "Engine",
    "Progress",
    "RowRules",
    "RowTally",
    "Run",
    "batch_schema",
    "get_engine",
    "row_message",
]

#: the one-line error when the Ray engine is asked for without the extra
RAY_MISSING = "--engine ray needs the ray extra: pip install 'batchguard[ray]'"


class Engine(Protocol):
    """What :func:`pipeline.validate` needs from an engine."""

    def check_output(
        self, path: str | os.PathLike[str], inputs: list[str], what: str
    ) -> Path | str:
        """Refuse an output path this engine cannot write (``what``: quarantine or clean).

        Returns the path to write (a URL as it is)."""
        ...

    def profile_pass(self, run: Run) -> tuple[Profile, ChunkNotes | None]:
        """Pass 1: the merged profile, and per chunk what pass 2 needs to know."""
        ...

    def row_pass(self, run: Run, rules: RowRules, chunks: list[Chunk] | None) -> RowTally:
        """Pass 2: apply ``rules`` to ``chunks`` (all if ``None``), write the outputs.

        The tally's ``examples`` hold a few quarantined rows when a quarantine
        output was written.
        """
        ...


def get_engine(name: str, address: str | None = None) -> Engine:
    """The engine called ``name``.

    Parameters
    ----------
    name : {"local", "ray"}
    address : str, optional
        With ``"ray"``: a Ray cluster (``"auto"``, ``"HOST:6379"``,
        ``"ray://HOST:10001"``); without it Ray uses ``RAY_ADDRESS`` or starts
        on this machine.

    Returns
    -------
    Engine

    Raises
    ------
    UsageError
        An unknown name, an address without ``"ray"``, or ``"ray"`` without the extra.
    """
    if name == "local":
        if address is not None:
            raise UsageError("--ray-address ADDRESS needs --engine ray; add it or drop the address")
        from ._local import LocalEngine

        return LocalEngine()
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise UsageError(RAY_MISSING) from exc
        from ._ray import RayEngine

        return RayEngine(address)
    raise UsageError(
        f"engine should be one of {', '.join(map(repr, ENGINES))}, but got engine={name!r}"
    )
