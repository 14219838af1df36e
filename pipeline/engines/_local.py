"""The local engine: both passes in this process, one record batch at a time (the default)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from .._stores import check_output_url, is_url
from ..errors import UsageError
from ..profiling import STAT_KINDS, Profile, sample_bound
from ..quarantine import OutputSplitter, check_output_path
from ..report.examples import ExampleCollector
from ..source import IPC_SUFFIXES, PARQUET_SUFFIXES, Chunk
from ._candidates import CandidateRows, kept_columns
from ._run import ChunkNotes, RowRules, RowTally, Run, batch_schema


class LocalEngine:
    """Both passes in this process, one record batch at a time."""

    def __init__(self) -> None:
        #: what pass 1 saw per chunk, for pass 2's column choice (None: chunks not readable alone)
        self._notes: ChunkNotes | None = None
        #: values pass 1 kept that could fail a row rule (None: a run that writes outputs)
        self._candidates: CandidateRows | None = None

    def check_output(
        self, path: str | os.PathLike[str], inputs: list[str], what: str
    ) -> Path | str:
        """Refuse a directory or an output that would overwrite the input.

        A URL output (``s3://bucket/out.parquet``) is checked in its store and
        returned as it is.
        """
        if is_url(path):
            return check_output_url(str(path), inputs, what, OUTPUT_SUFFIXES)
        if os.path.isdir(path):
            raise UsageError(
                f"--{what} {path} is a directory; the local engine writes one file "
                "(.parquet, .arrow or .feather), --engine ray a directory of parts"
            )
        return check_output_path(path, inputs, what)

    def profile_pass(self, run: Run, *, bounded: bool = True) -> tuple[Profile, ChunkNotes | None]:
        """Stream every batch into one profile, noting per chunk what pass 2 needs.

        When the dataset's size is known, the row sample takes only rows hashed below
        :func:`~pipeline.profiling.sample_bound` (the same sample, at a fraction of the
        work); in the 8-sigma event that too few fall below it, the pass runs again
        without the bound.
        """
        src = run.src
        size = run.opts.sample_size
        prof = Profile(src.schema, sample_size=size)
        bound = sample_bound(src.num_rows, size) if bounded else None
        if bound is not None:
            prof.sample.start_below(bound)
        chunks = src.chunks()
        notes = None
        if chunks and all(c.row_offset is not None for c in chunks):
            noted = [n for n, c in prof.columns.items() if c.kind in STAT_KINDS]
            notes = ChunkNotes.for_chunks(chunks, noted)
        kept = kept_columns(run)
        candidates = None if kept is None else CandidateRows(kept)
        position = 0
        for batch in src.iter_batches():
            summaries = prof.update(batch)
            if notes is not None:
                notes.add(position, batch.num_rows, summaries)
            if candidates is not None:
                candidates.add(batch, summaries)
            position += batch.num_rows
            run.tick(batch.num_rows)
        if bound is not None and prof.sample_fell_short():
            return self.profile_pass(run, bounded=False)
        self._notes, self._candidates = notes, candidates
        return prof, notes

    def row_pass(self, run: Run, rules: RowRules, chunks: list[Chunk] | None) -> RowTally:
        """Apply ``rules`` to ``chunks`` (all if ``None``) and write the outputs.

        When pass 1 kept every value that can fail ``rules`` (a run without outputs,
        see :mod:`._candidates`), the rules run on those alone and nothing is re-read.
        """
        candidates = self._candidates
        if chunks is not None and candidates is not None and candidates.covers(rules):
            return candidates.tally(rules)
        tally = RowTally()
        examples = ExampleCollector()
        splitter = OutputSplitter(
            batch_schema(run.src),
            quarantine=run.outputs.get("quarantine"),
            clean=run.outputs.get("clean"),
            scores=run.outputs.get("scores"),
        )
        try:
            for batch in self._batches(run, rules, chunks):
                failures, scores = rules.evaluate(batch)
                tally.add(batch, failures)
                quarantined = splitter.write(batch, failures, scores)
                if quarantined is not None:
                    examples.add(quarantined)
                run.tick(batch.num_rows)
            splitter.close()
        except BaseException:
            splitter.abort()
            raise
        tally.examples = examples.examples()
        return tally

    def _batches(
        self, run: Run, rules: RowRules, chunks: list[Chunk] | None
    ) -> Iterator[pa.RecordBatch]:
        """The batches pass 2 checks: every row, or the chunks that can fail.

        With no output to write, a re-read chunk is read only in the columns that can
        fail there (decoding is most of pass 2's cost).
        """
        if chunks is None:
            yield from run.src.iter_batches()
            return
        suspect = None if run.outputs or self._notes is None else self._notes.suspect(rules.bounds)
        for chunk in chunks:
            columns = None
            if suspect is not None:
                columns = [name for name, mask in suspect.items() if mask[chunk.index]]
            yield from run.src.iter_batches(columns=columns, chunks=[chunk])


#: the file name endings a table output may have
OUTPUT_SUFFIXES = (*PARQUET_SUFFIXES[:1], *IPC_SUFFIXES)
