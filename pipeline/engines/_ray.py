"""The Ray engine: validation's two passes as Ray Data tasks.

Reading
    :class:`ChunkDatasource` is a Ray Data datasource whose read tasks are the
    source's chunks (parquet row groups, Arrow IPC record batches), each read
    with :meth:`Source.iter_batches(chunks=...) <pipeline.source.Source.iter_batches>`.
    So every row carries the ``_row_id`` the local engine gives it: its
    position in the dataset (files in sorted path order), never the order in
    which tasks ran. A source without independent chunks (several CSV files)
    is read by a single task.

Pass 1
    ``map_batches(batch_format="pyarrow")`` runs the profile accumulators on
    each block and returns a one-row table: the block's first row id, its row
    count, the partial :class:`~pipeline.profiling.Profile` (``to_dict``, as
    JSON) and what the block showed of each numeric column (for choosing pass
    2's chunks). The driver merges the partials in row order, so the result is
    the same on every run; counts, min/max, value counts and the row sample (a
    bottom-k by hashed row id) equal the local engine's exactly, means and
    standard deviations up to float rounding. Each partial keeps only the
    sample candidates below a bound (:func:`~pipeline.profiling.sample_bound`), so about
    ``sample_size`` rows travel to the driver in all, not that many per block.

Between the passes
    Column checks, outlier fences and row rules are fixed on the driver by the
    code the local engine uses (:mod:`pipeline.validation`).

Pass 2
    ``map_batches`` tasks apply the row rules to each block, tally the failures
    (counts, first example row ids) and write the block's clean and
    quarantined rows as one part file each, named by the block's first row id,
    so a retried task rewrites the same file. The parts go to a hidden
    directory beside each target, which replaces the target only once every
    task has finished: an interrupted run leaves the old output or none.

    The tasks write with the local engine's :class:`~pipeline.quarantine.OutputSplitter`
    rather than ``Dataset.write_parquet``: one pass then yields both outputs and
    the tallies (``write_parquet`` would have the rules run once per output and
    once more for the tallies, or the whole dataset held in the object store),
    and the parts have exactly the local engine's schema (``_reasons``) and
    compression.

Outputs are directories of parquet parts (``part-<first row id>.parquet``,
in row order by name). On a cluster every node must see the dataset and the
output folders at the same path (a shared file system); see docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from .._atomic import publish_dir, staging_dir
from .._stores import is_url, redact
from ..errors import BatchguardError, SourceError, UsageError
from ..profiling import STAT_KINDS, BatchSummary, Profile, sample_bound
from ..quarantine import OutputSplitter
from ..report.examples import examples_from_quarantine
from ..source import ROW_ID, Chunk, Source
from ._candidates import CANDIDATE_LIMIT, CandidateParts, CandidateRows, kept_columns
from ._run import (
    ChunkNotes,
    RowRules,
    RowTally,
    Run,
    batch_schema,
    summary_from_state,
    summary_state,
)

#: the part files of an output directory
PART_GLOB = "part-*.parquet"
#: rows per read task, about; there are at least as many tasks as CPUs (and chunks allow)
TASK_ROWS = 1_000_000


class RayEngine:
    """Run both passes on Ray, connecting to ``address`` when the first pass starts.

    Parameters
    ----------
    address : str, optional
        Passed to ``ray.init``; an already connected Ray session is used as it is.
    """

    def __init__(self, address: str | None = None):
        self.address = address
        #: per block, the values pass 1 kept that could fail a row rule (None: not kept)
        self._candidates: CandidateParts | None = None

    # -- outputs -------------------------------------------------------------------------------
    def check_output(self, path: str | os.PathLike[str], inputs: list[str], what: str) -> Path:
        """Refuse an output directory that would overwrite the input or someone's files.

        Raises
        ------
        UsageError
            When ``path`` names an Arrow file, its folder does not exist, it is
            or holds the input, or it exists and is not an earlier output.
        """
        if is_url(path):
            raise UsageError(
                f"--{what} {redact(str(path))}: --engine ray writes its outputs as folders of "
                "parts on a local or shared file system; give a folder path, or write to the "
                "store with the local engine"
            )
        out = Path(path)
        if out.suffix.lower() in (".arrow", ".feather", ".ipc"):
            raise UsageError(
                f"--{what} {out}: --engine ray writes a directory of parquet parts; "
                "give a directory name"
            )
        if not out.parent.exists():
            raise UsageError(f"--{what} {out}: folder {out.parent} does not exist; create it first")
        resolved = out.resolve()
        for src in inputs:
            src_path = Path(src).resolve()
            if resolved == src_path or src_path in resolved.parents or resolved in src_path.parents:
                raise UsageError(
                    f"--{what} {out} would overwrite the input {src}; choose another output path"
                )
        if out.exists() and not _is_output_dir(out):
            raise UsageError(
                f"--{what} {out} exists and is not an output directory of an earlier run "
                f"(it is a file or holds other files than {PART_GLOB}); choose a new path"
            )
        return out

    # -- pass 1 --------------------------------------------------------------------------------
    def profile_pass(self, run: Run) -> tuple[Profile, ChunkNotes | None]:
        """Profile every block in Ray tasks; merge the partial profiles here, in row order."""
        _connect(self.address)
        src, size = run.src, run.opts.sample_size
        chunks = _readable_chunks(src)
        bound = sample_bound(src.num_rows, size)
        prof, parts = self._profile(run, chunks, bound)
        if bound is not None and prof.sample_fell_short():
            # Fewer rows hashed below the bound than the sample holds, so the partial
            # samples may lack some of its rows: profile again, keeping whole samples.
            prof, parts = self._profile(run, chunks, None)
        kept = [part["candidates"] for part in parts]
        self._candidates = None
        if kept and all(kept):
            self._candidates = CandidateParts([CandidateRows.from_bytes(k) for k in kept])
        # Notes map blocks to chunks by position, which row ids are unless the data
        # brings its own; then pass 2 reads every chunk.
        if chunks is None or src.has_own_row_ids:
            return prof, None
        numeric = [n for n, c in prof.columns.items() if c.kind in STAT_KINDS]
        notes = ChunkNotes.for_chunks(chunks, numeric)
        for part in parts:
            summaries = {k: summary_from_state(v) for k, v in json.loads(part["notes"]).items()}
            notes.add(part["first"], part["last"] - part["first"] + 1, summaries)
        return prof, notes

    def _profile(
        self, run: Run, chunks: list[Chunk] | None, bound: int | None
    ) -> tuple[Profile, list[dict[str, Any]]]:
        src, size = run.src, run.opts.sample_size
        parts: list[dict[str, Any]] = []
        # Each block keeps candidate values up to its rows' share of the limit.
        kept = kept_columns(run) if src.num_rows else None
        if chunks is None or chunks:
            with _task_errors():
                task = functools.partial(
                    _profile_block, schema=src.schema, sample_size=size, bound=bound,
                    kept=kept, rows=src.num_rows,
                )  # fmt: skip
                # batch_size=None: one call per block, so fewer partial profiles to merge
                ds = _read(src, chunks).map_batches(task, batch_format="pyarrow", batch_size=None)
                for part in ds.iter_rows():
                    parts.append(part)
                    run.tick(part["rows"])
        parts = sorted((p for p in parts if p["rows"]), key=lambda p: p["first"])
        prof = Profile(src.schema, sample_size=size)
        for part in parts:
            prof.merge(Profile.from_dict(json.loads(part["profile"])))
        return prof, parts

    # -- pass 2 --------------------------------------------------------------------------------
    def row_pass(self, run: Run, rules: RowRules, chunks: list[Chunk] | None) -> RowTally:
        """Apply ``rules`` in Ray tasks that write the output parts; add up their tallies.

        The tally's example rows are read back from the quarantine parts.
        """
        candidates = self._candidates
        if chunks is not None and candidates is not None and candidates.covers(rules):
            return candidates.tally(rules)  # pass 1 kept every value that can fail
        _connect(self.address)
        src = run.src
        if chunks is None:
            chunks = _readable_chunks(src)
        targets = {name: Path(path) for name, path in run.outputs.items()}
        staging = {name: staging_dir(path) for name, path in targets.items()}
        parts: list[dict[str, Any]] = []
        try:
            for folder in staging.values():
                folder.mkdir()
            if chunks is None or chunks:
                with _task_errors():
                    task = functools.partial(
                        _check_block,
                        rules=rules,
                        schema=batch_schema(src),
                        folders={k: str(v) for k, v in staging.items()},
                    )
                    ds = _read(src, chunks).map_batches(
                        task, batch_format="pyarrow", batch_size=None
                    )
                    for part in ds.iter_rows():
                        parts.append(part)
                        run.tick(part["rows"])
            parts = sorted((p for p in parts if p["rows"]), key=lambda p: p["first"])
            firsts = [p["first"] for p in parts]
            if staging and len(set(firsts)) != len(firsts):
                raise SourceError(
                    f"{src.path}: its own '{ROW_ID}' column repeats ids, so output parts "
                    "would collide; give every row a unique id or drop the column"
                )
            for name, folder in staging.items():
                _publish(folder, targets[name], batch_schema(src), kind=name)
        except BaseException:
            for folder in staging.values():
                shutil.rmtree(folder, ignore_errors=True)
            raise
        tally = RowTally()
        for part in parts:
            tally.merge(RowTally.from_state(json.loads(part["tally"])))
        if "quarantine" in targets and tally.quarantined:
            tally.examples = examples_from_quarantine(targets["quarantine"])
        return tally


#: whether this process started Ray, and so keeps Ray's progress output off the console
_quiet = False


# -- Ray session -------------------------------------------------------------------------------
def _connect(address: str | None) -> None:
    """Join ``address`` (or start Ray here) unless this process is connected already.

    A session the caller started is used as it is, logging and all. One started
    here keeps Ray's narration off the console, where the report and the verdict
    go: Ray's log lines stay in its session logs (``/tmp/ray/session_latest/logs``),
    and failures reach the caller as exceptions.
    """
    global _quiet
    if ray.is_initialized():
        return
    _quiet = True
    ray.init(
        address=address,
        include_dashboard=False,
        logging_level=logging.ERROR,
        # Workers' log lines would be copied to this process's stdout, which holds the report.
        log_to_driver=False,
    )
    for handler in logging.getLogger("ray.data").handlers:
        if type(handler) is not logging.FileHandler and isinstance(handler, logging.StreamHandler):
            # The console only: Ray Data's log file keeps everything. Failures reach
            # the caller as exceptions, so their log lines would only repeat them.
            handler.setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _task_errors() -> Iterator[None]:
    """Re-raise a batchguard error from inside a Ray task as itself: one line, no Ray wrapping."""
    try:
        yield
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if not isinstance(cause, BatchguardError):
            raise
        if cause.args and isinstance(cause.args[0], str):
            # Our messages are one line; Ray Data appends its retry advice after a newline.
            cause.args = (cause.args[0].split("\n", 1)[0], *cause.args[1:])
        raise cause from exc


# -- reading -----------------------------------------------------------------------------------
def _readable_chunks(src: Source) -> list[Chunk] | None:
    """The source's chunks when each can be read on its own, else ``None`` (one read task)."""
    chunks = src.chunks()
    if all(c.row_offset is not None for c in chunks):
        return chunks
    return None


def _read(src: Source, chunks: list[Chunk] | None) -> ray.data.Dataset:
    """The chunks (all if ``None``) as a dataset, in read tasks of consecutive chunks."""
    if chunks is None:
        groups: list[list[Chunk] | None] = [None]
    else:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        tasks = max(cpus, -(-sum(c.num_rows or 0 for c in chunks) // TASK_ROWS))
        groups = list(_split(chunks, tasks))
    # As many blocks as read tasks: Ray would otherwise cut each task's output into
    # small blocks to reach its default parallelism, and every block costs a partial profile.
    ds = ray.data.read_datasource(ChunkDatasource(src, groups), override_num_blocks=len(groups))
    # The dataset's own settings (datasets derived from it copy them), not the session's.
    ctx = ds.context
    ctx.raise_original_map_exception = True  # a SchemaFileError reaches the caller as itself
    if _quiet:  # validate reports progress through its own callback
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
    return ds


class ChunkDatasource(Datasource):
    """Ray Data datasource whose read tasks are runs of a :class:`~pipeline.source.Source`'s chunks.

    Each task reads its chunks with ``Source.iter_batches(chunks=...)``, so rows
    carry the ``_row_id`` the local engine gives them.

    Parameters
    ----------
    src : Source
    groups : list of (list of Chunk or None)
        One read task per entry: consecutive chunks, each with a ``row_offset``;
        ``None`` reads the whole source.
    """

    def __init__(self, src: Source, groups: list[list[Chunk] | None]):
        super().__init__()
        self.src = src
        self.groups = groups

    def get_name(self) -> str:
        return "batchguard"

    def estimate_inmemory_data_size(self) -> int | None:
        sizes = [_group_bytes(group) for group in self.groups]
        return None if None in sizes else sum(s for s in sizes if s is not None)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        """One read task per group; ``parallelism`` was fixed by ``override_num_blocks``."""
        tasks = []
        for group in self.groups:
            metadata = BlockMetadata(
                num_rows=None if group is None else sum(c.num_rows or 0 for c in group),
                size_bytes=_group_bytes(group),
                input_files=tuple(sorted({c.path for c in group})) if group else None,
                exec_stats=None,
            )
            tasks.append(ReadTask(functools.partial(_read_chunks, self.src, group), metadata))
        return tasks


def _split(chunks: list[Chunk], n: int) -> Iterator[list[Chunk]]:
    """At most ``n`` runs of consecutive chunks with about equal row counts."""
    n = max(1, min(n, len(chunks)))
    rows = np.cumsum([c.num_rows or 0 for c in chunks])
    total = int(rows[-1]) if len(rows) else 0
    group: list[Chunk] = []
    done = 0
    for chunk, upto in zip(chunks, rows, strict=True):
        group.append(chunk)
        if done < n - 1 and upto * n >= total * (done + 1):
            yield group
            group = []
            done += 1
    if group:
        yield group


def _group_bytes(group: list[Chunk] | None) -> int | None:
    """Uncompressed size of parquet row groups from the files' footers; None if unknown."""
    # The sizes come from the footers the driver read (a store is not asked again).
    sizes = [None] if group is None else [c.num_bytes for c in group]
    return None if None in sizes else sum(s for s in sizes if s is not None)


def _read_chunks(src: Source, chunks: list[Chunk] | None) -> Iterator[pa.Table]:
    """The read task: the chunks' batches, with the local engine's ``_row_id``."""
    for batch in src.iter_batches(chunks=chunks):
        yield pa.Table.from_batches([batch])


# -- pass 1 task -------------------------------------------------------------------------------
def _profile_block(
    block: pa.Table,
    *,
    schema: pa.Schema,
    sample_size: int,
    bound: int | None,
    kept: dict[str, str] | None,
    rows: int | None,
) -> pa.Table:
    """The partial profile of one block, as a one-row table.

    With ``kept``, also the block's candidate values (Arrow IPC; empty when none
    are kept or they outgrew the block's share of :data:`CANDIDATE_LIMIT` in the
    ``rows`` of the dataset).
    """
    prof = Profile(schema, sample_size=sample_size)
    if bound is not None:
        # Rows hashed above the bound are ones no merge would keep.
        prof.sample.start_below(bound)
    candidates = None
    if kept is not None and rows:
        candidates = CandidateRows(kept, limit=CANDIDATE_LIMIT * block.num_rows // rows)
    seen: dict[str, BatchSummary] = {}
    for batch in block.to_batches():
        summaries = prof.update(batch)
        if candidates is not None:
            candidates.add(batch, summaries)
        for name, s in summaries.items():
            seen[name] = _combine(seen[name], s) if name in seen else s
    first, last = _id_range(block)
    notes = {name: summary_state(s) for name, s in seen.items()}
    return pa.table(
        {
            "first": pa.array([first], pa.int64()),
            "last": pa.array([last], pa.int64()),
            "rows": pa.array([block.num_rows], pa.int64()),
            "profile": pa.array([json.dumps(prof.to_dict(), default=str).encode()], pa.binary()),
            "notes": pa.array([json.dumps(notes).encode()], pa.binary()),
            "candidates": pa.array(
                [b"" if candidates is None else candidates.to_bytes()], pa.binary()
            ),
        }
    )


def _combine(a: BatchSummary, b: BatchSummary) -> BatchSummary:
    lows = [x for x in (a.min, b.min) if x is not None]
    highs = [x for x in (a.max, b.max) if x is not None]
    return BatchSummary(a.bad + b.bad, min(lows) if lows else None, max(highs) if highs else None)


def _id_range(block: pa.Table) -> tuple[int, int]:
    if block.num_rows == 0:
        return -1, -1
    bounds = pc.min_max(block.column(ROW_ID))
    return int(bounds["min"].as_py()), int(bounds["max"].as_py())


# -- pass 2 task -------------------------------------------------------------------------------
def _check_block(
    block: pa.Table, *, rules: RowRules, schema: pa.Schema, folders: dict[str, str]
) -> pa.Table:
    """Apply the row rules to one block, write its output parts, return its tally."""
    batches = block.to_batches()
    evaluated = [rules.evaluate(batch) for batch in batches]
    tally = RowTally()
    for batch, (failed, _) in zip(batches, evaluated, strict=True):
        tally.add(batch, failed)
    first, _ = _id_range(block)
    if folders and block.num_rows:
        name = f"part-{first:012d}.parquet"
        # No empty parts: a block without bad rows writes no quarantine part.
        quarantine = folders.get("quarantine") if tally.quarantined else None
        clean = folders.get("clean") if tally.quarantined < block.num_rows else None
        scores = folders.get("scores")
        splitter = OutputSplitter(
            schema,
            quarantine=None if quarantine is None else os.path.join(quarantine, name),
            clean=None if clean is None else os.path.join(clean, name),
            scores=None if scores is None else os.path.join(scores, name),
        )
        try:
            for batch, (failed, scored) in zip(batches, evaluated, strict=True):
                splitter.write(batch, failed, scored)
            splitter.close()
        except BaseException:
            splitter.abort()
            raise
    return pa.table(
        {
            "first": pa.array([first], pa.int64()),
            "rows": pa.array([block.num_rows], pa.int64()),
            "tally": pa.array([json.dumps(tally.to_state()).encode()], pa.binary()),
        }
    )


# -- output directories ------------------------------------------------------------------------
def _is_output_dir(path: Path) -> bool:
    """A directory holding nothing but parquet parts (an earlier run's output)."""
    return path.is_dir() and all(p.match(PART_GLOB) for p in path.iterdir())


def _publish(staging: Path, target: Path, schema: pa.Schema, *, kind: str) -> None:
    """Move a finished staging directory to ``target``, replacing an earlier output."""
    for stray in staging.glob(".*"):  # temporary files of tasks that failed and were retried
        stray.unlink()
    if not any(staging.glob(PART_GLOB)):
        # An empty output is still a readable dataset: one part with the schema and no rows.
        splitter = OutputSplitter(schema, **{kind: staging / "part-000000000000.parquet"})
        splitter.close()
    publish_dir(staging, target)
