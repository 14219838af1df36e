"""Where validation's two passes run: ``"local"`` (the default) or ``"ray"``.

The local engine streams the dataset through this process
(:mod:`pipeline.validation`, which also holds everything both engines share:
options, column checks, row rules, the tally of row failures, the report). The
Ray engine (:mod:`pipeline.engines._ray`) runs the same two passes as Ray Data
tasks, for datasets beyond one machine; it needs the ``ray`` extra
(``pip install 'batchguard[ray]'``), which is imported only when that engine
is asked for, so Ray never slows down ``validate --help`` or a small run.

An engine provides the four methods of :class:`Engine`; the findings, counts,
statistics and quarantined row ids do not depend on which one ran.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import UsageError

if TYPE_CHECKING:
    from ..profiling import Profile
    from ..report import Report
    from ..source import Chunk
    from ..validation import _ChunkNotes, _RowRules, _RowTally, _Run

#: engine names ``validate(engine=...)`` and ``--engine`` accept
ENGINES = ("local", "ray")
#: the one-line error when the Ray engine is asked for without the extra
RAY_MISSING = "--engine ray needs the ray extra: pip install 'batchguard[ray]'"


class Engine(Protocol):
    """What :func:`pipeline.validate` needs from an engine."""

    def check_output(self, path: str | os.PathLike[str], inputs: list[str], what: str) -> Path:
        """Refuse an output path this engine cannot write (``what``: quarantine or clean)."""
        ...

    def profile_pass(self, run: _Run) -> tuple[Profile, _ChunkNotes | None]:
        """Pass 1: the merged profile, and per chunk what pass 2 needs to know."""
        ...

    def row_pass(self, run: _Run, rules: _RowRules, chunks: list[Chunk] | None) -> _RowTally:
        """Pass 2: apply ``rules`` to ``chunks`` (all if ``None``), write the outputs."""
        ...

    def finish(self, report: Report) -> None:
        """Last additions to the report (the Ray engine's example rows)."""
        ...


def ray_engine(address: str | None = None) -> Engine:
    """The Ray engine, connecting to ``address`` when its first pass starts.

    Parameters
    ----------
    address : str, optional
        A Ray cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``);
        without it Ray uses ``RAY_ADDRESS`` or starts on this machine.

    Returns
    -------
    Engine

    Raises
    ------
    UsageError
        The ``ray`` extra is not installed.
    """
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise UsageError(RAY_MISSING) from exc
    from ._ray import RayEngine

    return RayEngine(address)
