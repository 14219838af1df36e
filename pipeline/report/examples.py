"""Example quarantined rows for the HTML report.

The :class:`~pipeline.report.model.Report` holds statistics, not rows; the
HTML report shows a few quarantined rows with their reasons, taken either from
the quarantine file after the run (:func:`examples_from_quarantine`) or during
the row pass (:class:`ExampleCollector`, fed the quarantine-shaped batches).

The examples are spread over the failing checks: each (check, column) of a
row's first reason gets its turn, so 30 NaN rows at the top of the file do not
hide the one outlier further down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["EXAMPLES", "SCAN_ROWS", "ExampleCollector", "examples_from_quarantine"]

#: examples kept by default
EXAMPLES = 20
#: quarantined rows looked at, at most, when choosing examples from a file
SCAN_ROWS = 50_000

Example = dict[str, Any]


class ExampleCollector:
    """Keep up to ``n`` quarantined rows, spread over the failing checks.

    Parameters
    ----------
    n : int, default 20
        Examples kept.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from pipeline.quarantine import REASON_TYPE
    >>> reasons = pa.array([[{"check": "nan", "column": "x"}]], pa.list_(REASON_TYPE))
    >>> batch = pa.record_batch(
    ...     [pa.array([float("nan")]), pa.array([7]), reasons], names=["x", "_row_id", "_reasons"]
    ... )
    >>> c = ExampleCollector(2)
    >>> c.add(batch)
    >>> [(e["row_id"], e["reasons"][0]["check"]) for e in c.examples()]
    [(7, 'nan')]
    """

    def __init__(self, n: int = EXAMPLES):
        self.n = n
        self.seen = 0
        self._by_key: dict[tuple[str | None, str | None], list[Example]] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        """Offer the rows of a quarantine batch (data columns, ``_row_id``, ``_reasons``)."""
        self.seen += batch.num_rows
        if batch.num_rows == 0 or self.n <= 0:
            return
        first = pc.list_element(batch.column("_reasons"), 0)
        keys = list(
            zip(
                pc.struct_field(first, "check").to_pylist(),
                pc.struct_field(first, "column").to_pylist(),
                strict=True,
            )
        )
        take: list[int] = []
        wanted: dict[tuple[str | None, str | None], int] = {}
        for i, key in enumerate(keys):
            have = len(self._by_key.get(key, ())) + wanted.get(key, 0)
            if have < self.n:
                wanted[key] = wanted.get(key, 0) + 1
                take.append(i)
        if not take:
            return
        rows = batch.take(pa.array(take)).to_pylist()
        for i, row in zip(take, rows, strict=True):
            row_id = row.pop("_row_id")
            reasons = row.pop("_reasons") or []
            self._by_key.setdefault(keys[i], []).append(
                {"row_id": row_id, "reasons": reasons, "values": row}
            )

    def examples(self) -> list[Example]:
        """The chosen rows, taking each failing check in turn, then by row id."""
        queues = [list(rows) for rows in self._by_key.values()]
        out: list[Example] = []
        depth = 0
        while len(out) < self.n and any(depth < len(q) for q in queues):
            out.extend(q[depth] for q in queues if depth < len(q))
            depth += 1
        return sorted(out[: self.n], key=lambda e: e["row_id"])


def examples_from_quarantine(
    path: str | os.PathLike[str], n: int = EXAMPLES, scan_rows: int = SCAN_ROWS
) -> list[Example]:
    """Up to ``n`` example rows of a quarantine file written by ``validate``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``--quarantine`` output (``.parquet``, or ``.arrow``/``.feather``/``.ipc``),
        or the Ray engine's directory of parquet parts.
    n : int, default 20
        Examples returned.
    scan_rows : int, default 50000
        Quarantined rows read at most while choosing them.

    Returns
    -------
    list of dict
        ``{"row_id": int, "reasons": [dict], "values": {column: value}}`` in row-id order.
    """
    collector = ExampleCollector(n)
    for batch in _batches(Path(path)):
        collector.add(batch)
        if collector.seen >= scan_rows:
            break
    return collector.examples()


def _batches(path: Path) -> Any:
    if path.is_dir():  # parts named by their first row id, so name order is row order
        for part in sorted(path.glob("part-*.parquet")):
            yield from _batches(part)
        return
    if path.suffix.lower() in (".arrow", ".feather", ".ipc"):
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
        return
    import pyarrow.parquet as pq

    with pq.ParquetFile(str(path), pre_buffer=False) as pf:
        yield from pf.iter_batches(batch_size=4096)
