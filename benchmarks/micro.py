"""Micro-benchmarks behind the speed-up suggestions in RESULTS.md.

They measure alternatives to pieces of ``pipeline/`` without changing it: the
alternative is re-implemented here (or patched in for the run only) and timed
against the shipped code on the same data, interleaved, median of ``--reps``.

Experiments:

``moments``   per-batch numeric kernel of ``ColumnProfile._update_numeric``
              (sum-for-finiteness, min, max, np.mean, np.var) against one that
              reuses the float64 copy/sum and squares in place, single-threaded
              and on a 2-thread pool (one task per half of the columns)
``stats``     the stats phase after pass 1; quartiles + top value per column as
              shipped (np.quantile + pc.value_counts) against one np.sort
``values``    first batch of a high-cardinality float column: full
              ``pc.value_counts`` against a prefix test that gives up early
``pandas``    import cost of ``pa.array`` (pyarrow imports pandas on the first call)
``pass2``     (chunk, column) pairs pass 2 really needs (non-finite or values
              outside the fences) and the time to read just those vs every chunk
``prefetch``  pass 1 loop (read + profile update) as shipped against the same
              loop with the read running one batch ahead on a thread (threaded or
              single-threaded decode); wall and CPU
``batchsize`` ``validate()`` end to end at batch_size 65,536 / 262,144 / 1,048,576
``combined``  suggestions 1-4 patched in together (a prototype, no outputs), against
              ``validate()`` and the read-only stream, row findings cross-checked

Usage::

    python benchmarks/micro.py [--data benchmarks/data/bench_5m.parquet] [--only moments,sample]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

FLOATS = [f"f{i:02d}" for i in range(32)]


#: process CPU seconds (all threads) of the last timeit() call, per function: medians
LAST_CPU: dict[str, float] = {}


def timeit(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Median wall seconds of each function, calls interleaved round by round.

    The median process CPU time of each goes to :data:`LAST_CPU` (steadier than wall
    time when other processes share the two cores).
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    LAST_CPU.clear()
    LAST_CPU.update({k: statistics.median(v) for k, v in cpu.items()})
    return {k: statistics.median(v) for k, v in times.items()}


def _cpu_ms() -> dict[str, float]:
    return {k: v * 1e3 for k, v in LAST_CPU.items()}


def _batches(path: Path, n: int, columns: list[str] | None = None) -> list[pa.RecordBatch]:
    from pipeline.source import Source

    out = []
    for batch in Source(path).iter_batches(columns=columns):
        out.append(batch)
        if len(out) == n:
            break
    return out


# -- moments -----------------------------------------------------------------------------------
def shipped_kernel(x: np.ndarray) -> tuple[float, float, float, float]:
    """``ColumnProfile._update_numeric`` on a finite float column (its arithmetic, verbatim)."""
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.add.reduce(x, dtype=np.float64)
    if not np.isfinite(total):
        x = x[np.isfinite(x)]
    n = x.size
    lo, hi = x.min().item(), x.max().item()
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.mean(x, dtype=np.float64))
        m2 = float(np.var(x, dtype=np.float64)) * n
    return lo, hi, mean, m2


def fused_kernel(x: np.ndarray) -> tuple[float, float, float, float]:
    """One float64 copy; its sum is the finiteness test and the mean; squares in place.

    No BLAS (``np.dot`` would start OpenBLAS threads that fight pyarrow's for 2 cores).
    """
    d = x.astype(np.float64)
    total = np.add.reduce(d)
    if not np.isfinite(total):
        keep = np.isfinite(x)
        x, d = x[keep], d[keep]
        total = np.add.reduce(d)
    n = x.size
    lo, hi = x.min().item(), x.max().item()
    mean = float(total) / n
    d -= mean
    np.multiply(d, d, out=d)
    return lo, hi, mean, float(np.add.reduce(d))


def exp_moments(path: Path, reps: int) -> dict[str, Any]:
    batches = _batches(path, 16, FLOATS)  # 1M rows, 128 MB of float32
    arrays = [[b.column(c).to_numpy() for c in FLOATS] for b in batches]
    for arrs in arrays[:2]:
        for x in arrs:
            a, b = shipped_kernel(x), fused_kernel(x)
            assert a[:2] == b[:2] and abs(a[2] - b[2]) <= 1e-9 * max(1, abs(a[2]))
            assert abs(a[3] - b[3]) <= 1e-9 * a[3], (a, b)
    pool = ThreadPoolExecutor(2)

    def serial(kernel: Callable[[np.ndarray], Any]) -> Callable[[], None]:
        def run() -> None:
            for arrs in arrays:
                for x in arrs:
                    kernel(x)

        return run

    def threaded(kernel: Callable[[np.ndarray], Any]) -> Callable[[], None]:
        def half(xs: list[np.ndarray]) -> None:
            for x in xs:
                kernel(x)

        def run() -> None:
            for arrs in arrays:
                list(pool.map(half, [arrs[::2], arrs[1::2]]))

        return run

    t = timeit(
        {
            "shipped": serial(shipped_kernel),
            "fused": serial(fused_kernel),
            "shipped, 2 threads": threaded(shipped_kernel),
            "fused, 2 threads": threaded(fused_kernel),
        },
        reps,
    )
    mb = sum(x.nbytes for arrs in arrays for x in arrs) / 1e6
    pool.shutdown()
    return {
        "data_mb": mb,
        "ms": {k: v * 1e3 for k, v in t.items()},
        "gb_per_s": {k: mb / v / 1e3 for k, v in t.items()},
        "speedup_vs_shipped": {k: t["shipped"] / v for k, v in t.items()},
        "cpu_ms": _cpu_ms(),
    }


# -- stats phase -------------------------------------------------------------------------------
def exp_stats(path: Path, reps: int) -> dict[str, Any]:
    """The stats phase after pass 1, and a cheaper way to get quartiles and the top value.

    Shipped: per column ``np.quantile`` (a partition) plus ``pc.value_counts`` over the
    sample for the top value's share (a hash table of ~100k floats). Alternative: one
    ``np.sort`` per column; quartiles by index (numpy's 'linear' rule), top value by the
    longest run of equal neighbours (ties to the smaller value, as the exact path does).
    """
    from pipeline.profiling import Profile

    batches = _batches(path, 24)  # 1.5M rows: the 100k-row sample is full, as on any big file
    prof = Profile(batches[0].schema)
    for b in batches:
        prof.update(b)
    prof.sample.table()  # build (and, where memoised, keep) the sorted sample first
    xs = [prof.sample_values(n) for n in FLOATS]

    def all_stats() -> None:
        prof._stats.clear()
        for name in prof.columns:
            prof.stats(name)

    def shipped_pieces() -> None:
        for x in xs:
            np.quantile(x, [0.25, 0.5, 0.75])
            counts = pc.value_counts(pa.array(x))
            n = counts.field("counts").to_numpy()
            int(np.argmax(n))

    arrs = [pa.array(x) for x in xs]

    def quantile_only() -> None:
        for x in xs:
            np.quantile(x, [0.25, 0.5, 0.75])

    def value_counts_only() -> None:
        for a in arrs:
            pc.value_counts(a)

    def sorted_pieces() -> None:
        for x in xs:
            quartiles_and_top(x)

    for x in xs[:4]:
        q, _top, _share = quartiles_and_top(x)
        assert np.allclose(q, np.quantile(x, [0.25, 0.5, 0.75]), rtol=0, atol=0)

    t = timeit(
        {"stats of all 34 columns (shipped)": all_stats,
         "quantile + value_counts, 32 float columns": shipped_pieces,
         "  np.quantile only": quantile_only,
         "  pc.value_counts only": value_counts_only,
         "one sort: quartiles + top run, 32 float columns": sorted_pieces},
        reps,
    )  # fmt: skip
    return {
        "sample_rows": int(xs[0].size),
        "ms": {k: v * 1e3 for k, v in t.items()},
        "cpu_ms": _cpu_ms(),
    }


def quartiles_and_top(x: np.ndarray) -> tuple[list[float], float, float]:
    s = np.sort(x)
    n = s.size
    q = []
    for p in (0.25, 0.5, 0.75):
        pos = p * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        q.append(float(s[lo] + (s[hi] - s[lo]) * (pos - lo)))
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    runs = np.diff(np.append(starts, n))
    i = int(np.argmax(runs))  # first longest run: the smallest value among ties
    return q, float(s[starts[i]]), float(runs[i] / n)


# -- value counts ------------------------------------------------------------------------------
def exp_values(path: Path, reps: int) -> dict[str, Any]:
    from pipeline.profiling import EXACT_VALUES

    batch = _batches(path, 1, FLOATS)[0]
    cols = [batch.column(c) for c in FLOATS]

    def shipped() -> None:
        for arr in cols:
            present = pc.drop_null(arr)
            present = present.filter(pc.is_finite(present))
            counts = pc.value_counts(present)
            assert len(counts) > EXACT_VALUES

    def prefix() -> None:
        # At most EXACT_VALUES distinct values overall implies at most that many in any prefix.
        for arr in cols:
            head = arr.slice(0, 4 * EXACT_VALUES)
            head = head.filter(pc.is_finite(head))
            if pc.count_distinct(head).as_py() > EXACT_VALUES:
                continue  # overflowed: values = None, no full value_counts
            raise AssertionError("expected overflow")

    t = timeit({"shipped": shipped, "prefix test": prefix}, reps)
    return {
        "columns": len(cols),
        "rows": batch.num_rows,
        "ms": {k: v * 1e3 for k, v in t.items()},
        "cpu_ms": _cpu_ms(),
    }


# -- pandas import through pa.array ------------------------------------------------------------
def exp_pandas(path: Path, reps: int) -> dict[str, Any]:
    code = (
        "import sys,time,numpy as np,pyarrow as pa\n"
        "def rss():\n"
        "    s = open('/proc/self/status').read().split('VmRSS:')[1]\n"
        "    return int(s.split()[0]) / 1024\n"
        "r0 = rss(); t = time.perf_counter()\n"
        "{stmt}\n"
        "print(time.perf_counter() - t, rss() - r0, 'pandas' in sys.modules)\n"
    )
    stmts = {
        "pa.array(np.arange(5))": "pa.array(np.arange(5))",
        "pa.Array.from_buffers": (
            "pa.Array.from_buffers(pa.int64(),5,[None,pa.py_buffer(np.arange(5))])"
        ),
    }
    out: dict[str, Any] = {}
    for name, stmt in stmts.items():
        runs = []
        for _ in range(reps):
            res = subprocess.run(
                [sys.executable, "-c", code.format(stmt=stmt)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            dt, drss, imported = res.stdout.split()
            runs.append((float(dt), float(drss), imported == "True"))
        out[name] = {
            "ms": statistics.median(r[0] for r in runs) * 1e3,
            "rss_growth_mb": statistics.median(r[1] for r in runs),
            "imports_pandas": runs[0][2],
        }
    return out


# -- pass 2 ------------------------------------------------------------------------------------
def exp_pass2(path: Path, reps: int) -> dict[str, Any]:
    from pipeline.checks import outlier_fences
    from pipeline.options import ValidationOptions
    from pipeline.profiling import Profile
    from pipeline.source import Source

    src = Source(path)
    chunks = src.chunks()
    opts = ValidationOptions(label="label")
    prof = Profile(src.schema, sample_size=opts.sample_size)
    # Per (chunk, column): non-finite seen, and the finite range, as pass 1 could note them.
    bad = np.zeros((len(chunks), len(FLOATS)), dtype=bool)
    lo = np.full((len(chunks), len(FLOATS)), np.inf)
    hi = np.full((len(chunks), len(FLOATS)), -np.inf)
    for i, chunk in enumerate(chunks):
        for batch in src.iter_batches(chunks=[chunk]):
            prof.update(batch)
            for j, name in enumerate(FLOATS):
                x = batch.column(name).to_numpy()
                fin = np.isfinite(x)
                bad[i, j] |= not fin.all()
                lo[i, j] = min(lo[i, j], float(x[fin].min()))
                hi[i, j] = max(hi[i, j], float(x[fin].max()))
    fences = outlier_fences(prof, opts)
    need = bad.copy()
    for j, name in enumerate(FLOATS):
        if name in fences:
            need[:, j] |= (lo[:, j] < fences[name].low) | (hi[:, j] > fences[name].high)
    pairs = int(need.sum())
    nonfinite_only = bad & ~np.array(
        [[(lo[i, j] < fences[n].low) | (hi[i, j] > fences[n].high) if n in fences else False
          for j, n in enumerate(FLOATS)] for i in range(len(chunks))]
    )  # fmt: skip
    outlier_pairs = need & ~nonfinite_only

    def read_all() -> None:
        for _ in src.iter_batches(chunks=chunks):
            pass

    def read_needed() -> None:
        for i, chunk in enumerate(chunks):
            cols = [FLOATS[j] for j in np.flatnonzero(need[i])]
            if cols:
                for _ in src.iter_batches(chunks=[chunk], columns=cols):
                    pass

    def read_outlier_cols() -> None:
        # Non-finite rows were already located in pass 1 (it builds the masks): only the
        # (chunk, column) pairs whose range crosses a fence need reading again.
        for i, chunk in enumerate(chunks):
            cols = [FLOATS[j] for j in np.flatnonzero(outlier_pairs[i])]
            if cols:
                for _ in src.iter_batches(chunks=[chunk], columns=cols):
                    pass

    t = timeit(
        {
            "all chunks, all columns (shipped)": read_all,
            "needed (chunk, column) pairs": read_needed,
            "only fence-crossing pairs": read_outlier_cols,
        },
        reps,
    )
    return {
        "chunks": len(chunks),
        "chunks_needing_recheck": int(need.any(axis=1).sum()),
        "pairs_total": int(need.size),
        "pairs_needed": pairs,
        "pairs_fence_crossing": int(outlier_pairs.sum()),
        "columns_with_fences": len(fences),
        "ms": {k: v * 1e3 for k, v in t.items()},
        "cpu_ms": _cpu_ms(),
    }


# -- prefetch ----------------------------------------------------------------------------------
def _params(fn: Any) -> set[str]:
    import inspect

    return set(inspect.signature(fn).parameters)


def exp_prefetch(path: Path, reps: int) -> dict[str, Any]:
    """Pass 1 (read + shipped ``Profile.update``) with the read overlapped on a thread.

    ``Source(prefetch=0)`` decodes with ``use_threads=True`` and the main thread waits for
    it, then computes while the decoder idles; since ec8b9b6 ``Source`` reads two batches
    ahead on a thread by default. Alternatives keep ``Profile.update`` as shipped and only
    change the reading: decode one batch ahead on a thread, with pyarrow's threaded decode
    or a single-threaded one (which spends less CPU on two cores). Wall and process CPU
    (all threads) are reported.
    """
    import pyarrow.parquet as pq

    from pipeline.profiling import Profile
    from pipeline.source import ROW_ID, Source

    src = Source(path)

    def stream(use_threads: bool) -> Iterator[pa.RecordBatch]:
        # What Source.iter_batches yields for a plain parquet file, with a choice of decode.
        pf = pq.ParquetFile(path, pre_buffer=False, memory_map=False)
        offset = 0
        for b in pf.iter_batches(batch_size=src.batch_size, use_threads=use_threads):
            n = b.num_rows
            ids = np.arange(offset, offset + n, dtype=np.int64)
            ids_arr = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(ids)])
            offset += n
            yield pa.RecordBatch.from_arrays([*b.columns, ids_arr], [*b.schema.names, ROW_ID])

    def ahead(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        pool = ThreadPoolExecutor(1)
        fut = pool.submit(next, it, None)
        while True:
            batch = fut.result()
            if batch is None:
                break
            fut = pool.submit(next, it, None)
            yield batch
        pool.shutdown()

    def consume(batches: Iterator[pa.RecordBatch], profile: bool) -> None:
        prof = Profile(src.schema) if profile else None
        for batch in batches:
            if prof is not None:
                prof.update(batch)

    plain = Source(path, prefetch=0) if "prefetch" in _params(Source) else src
    cases = {
        "read only (Source, threaded decode)": lambda: consume(src.iter_batches(), False),
        "read only (Source, prefetch=0)": lambda: consume(plain.iter_batches(), False),
        "read only (single-threaded decode)": lambda: consume(stream(False), False),
        "pass 1 (Source, prefetch=0)": lambda: consume(plain.iter_batches(), True),
        "pass 1 (Source as shipped)": lambda: consume(src.iter_batches(), True),
        "pass 1 + read-ahead (threaded decode)": lambda: consume(ahead(plain.iter_batches()), True),
        "pass 1 + read-ahead (single-threaded decode)": lambda: consume(ahead(stream(False)), True),
    }
    wall: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    w = {k: statistics.median(v) for k, v in wall.items()}
    base = w["read only (Source, threaded decode)"]
    return {
        "wall_ms": {k: v * 1e3 for k, v in w.items()},
        "cpu_ms": {k: statistics.median(v) * 1e3 for k, v in cpu.items()},
        "wall_vs_source_read": {k: v / base for k, v in w.items()},
    }


# -- batch size --------------------------------------------------------------------------------
def exp_batchsize(path: Path, reps: int) -> dict[str, Any]:
    """``validate(path, label="label", batch_size=N)`` end to end, each run a fresh process."""
    code = (
        "import sys,time;sys.path.insert(0,{root!r});sys.path.insert(0,{here!r})\n"
        "from bench_scan import vm_hwm_mb\n"
        "from pipeline.validation import validate;t=time.perf_counter()\n"
        "validate({path!r},label='label',batch_size={bs})\n"
        "print(time.perf_counter()-t,vm_hwm_mb())\n"
    )
    sizes = [65_536, 262_144, 1_048_576]
    runs: dict[int, list[tuple[float, float]]] = {bs: [] for bs in sizes}
    for _ in range(reps):
        for bs in sizes:
            src = code.format(root=str(ROOT), here=str(HERE), path=str(path), bs=bs)
            res = subprocess.run(
                [sys.executable, "-c", src],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            secs, rss = res.stdout.split()
            runs[bs].append((float(secs), float(rss)))
    return {
        str(bs): {"seconds": statistics.median(r[0] for r in rs),
                  "peak_rss_mb": statistics.median(r[1] for r in rs)}
        for bs, rs in runs.items()
    }  # fmt: skip


# -- combined prototype ------------------------------------------------------------------------
def _fused_update_numeric(self: Any, x: np.ndarray) -> Any:
    """``ColumnProfile._update_numeric`` with the fused kernel (same counts and moments)."""
    from pipeline.profiling import BatchSummary, _py

    bad = 0
    d = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.add.reduce(d)
    if x.dtype.kind == "f" and not np.isfinite(total):
        nan_mask = np.isnan(x)
        inf_mask = np.isinf(x)
        n_nan = int(nan_mask.sum())
        n_posinf = int((inf_mask & (x > 0)).sum())
        n_neginf = int(inf_mask.sum()) - n_posinf
        self.nan += n_nan
        self.posinf += n_posinf
        self.neginf += n_neginf
        bad = n_nan + n_posinf + n_neginf
        if bad:
            keep = ~(nan_mask | inf_mask)
            x, d = x[keep], d[keep]
            total = np.add.reduce(d)
    n = x.size
    if n == 0:
        return BatchSummary(bad, None, None)
    lo, hi = _py(x.min()), _py(x.max())
    mean = float(total) / n
    d -= mean
    np.multiply(d, d, out=d)
    self._merge_moments(n, lo, hi, mean, float(np.add.reduce(d)))
    return BatchSummary(bad, lo, hi)


def _patched(shipped_values: Callable[..., Any]) -> Callable[..., Any]:
    from pipeline.profiling import EXACT_VALUES

    def update_values(self: Any, view: pa.Array) -> None:
        # Give up on exact counts early: more than EXACT_VALUES distinct in a prefix.
        if len(view) > 4 * EXACT_VALUES:
            head = pc.drop_null(view.slice(0, 4 * EXACT_VALUES))
            if pa.types.is_floating(head.type):
                head = head.filter(pc.is_finite(head))
            if pc.count_distinct(head).as_py() > EXACT_VALUES:
                self.values = None
                return
        shipped_values(self, view)

    return update_values


def _sorted_top(self: Any, c: Any) -> tuple[Any, float | None, int, bool]:
    """``Profile._top_and_distinct`` for overflowed numeric columns by one sort of the sample."""
    from pipeline.profiling import EXACT_VALUES

    if c.values is not None or c.kind != "numeric":
        return _SHIPPED["_top_and_distinct"](self, c)
    x = self.sample_values(c.name)
    if x.size == 0:
        return None, None, EXACT_VALUES + 1, False
    s = np.sort(x)
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    runs = np.diff(np.append(starts, s.size))
    i = int(np.argmax(runs))
    return float(s[starts[i]]), float(runs[i] / s.size), max(starts.size, EXACT_VALUES + 1), False


_SHIPPED: dict[str, Any] = {}


def exp_combined(path: Path, reps: int) -> dict[str, Any]:
    """Suggestions 1-4 together, patched into the shipped code for the run, no outputs.

    Pass 1 as shipped but with the fused kernel, the early give-up on value counts and
    per-(chunk, column) notes; stats with the sorted top value; pass 2 reads only the
    (chunk, column) pairs with a non-finite value or a value beyond a fence. Row-finding
    counts and the quarantined total are checked against ``validate()``'s report.
    """
    from pipeline.checks import column_findings, non_finite_rule, outlier_fences, outlier_rule
    from pipeline.options import ValidationOptions
    from pipeline.profiling import ColumnProfile, Profile
    from pipeline.quarantine import bad_row_mask
    from pipeline.source import Source
    from pipeline.validation import validate

    _SHIPPED.update(
        _update_numeric=ColumnProfile._update_numeric,
        _update_values=ColumnProfile._update_values,
        _top_and_distinct=Profile._top_and_distinct,
    )

    def prototype() -> dict[tuple[str, str | None], int | tuple[int, ...]]:
        src = Source(path)
        opts = ValidationOptions(label="label")
        chunks = src.chunks()
        starts = np.array([c.row_offset for c in chunks], dtype=np.int64)
        prof = Profile(src.schema, sample_size=opts.sample_size)
        cols = [n for n, c in prof.columns.items() if c.kind == "numeric"]
        bad = np.zeros((len(chunks), len(cols)), dtype=bool)
        lo = np.full((len(chunks), len(cols)), np.inf)
        hi = np.full((len(chunks), len(cols)), -np.inf)
        position = 0
        for batch in src.iter_batches():
            summaries = prof.update(batch)
            first = int(np.searchsorted(starts, position, side="right")) - 1
            last = int(np.searchsorted(starts, position + batch.num_rows - 1, side="right"))
            for j, name in enumerate(cols):
                sm = summaries[name]
                bad[first:last, j] |= sm.bad > 0
                if sm.min is not None and sm.max is not None:
                    lo[first:last, j] = np.minimum(lo[first:last, j], sm.min)
                    hi[first:last, j] = np.maximum(hi[first:last, j], sm.max)
            position += batch.num_rows
        column_findings(prof, opts)
        fences = outlier_fences(prof, opts)
        need = bad.copy()
        for j, name in enumerate(cols):
            if name in fences:
                need[:, j] |= (lo[:, j] < fences[name].low) | (hi[:, j] > fences[name].high)
        floats = [f.name for f in src.schema if pa.types.is_floating(f.type)]
        kinds = {n: c.kind for n, c in prof.columns.items()}
        counts: dict[tuple[str, str | None], int] = {}
        quarantined = 0
        for i, chunk in enumerate(chunks):
            wanted = [cols[j] for j in np.flatnonzero(need[i])]
            if not wanted:
                continue
            rules = [
                non_finite_rule([c for c in wanted if c in floats]),
                outlier_rule({c: fences[c] for c in wanted if c in fences}, kinds),
            ]
            for batch in src.iter_batches(chunks=[chunk], columns=wanted):
                failures = [f for rule in rules for f in rule(batch)]
                for f in failures:
                    counts[(f.check, f.column)] = counts.get((f.check, f.column), 0) + int(
                        f.mask.sum()
                    )
                quarantined += int(bad_row_mask(batch.num_rows, failures).sum())
        return {**counts, ("quarantined", None): quarantined}

    def patched() -> Any:
        ColumnProfile._update_numeric = _fused_update_numeric  # type: ignore[method-assign]
        ColumnProfile._update_values = _patched(_SHIPPED["_update_values"])  # type: ignore[method-assign]
        Profile._top_and_distinct = _sorted_top  # type: ignore[method-assign]
        try:
            return prototype()
        finally:
            for name, fn in _SHIPPED.items():
                owner = Profile if name == "_top_and_distinct" else ColumnProfile
                setattr(owner, name, fn)

    def shipped() -> Any:
        return validate(path, label="label")

    def read_only() -> None:
        for _ in Source(path).iter_batches():
            pass

    report = shipped()
    expected = {
        (f.check, f.column): f.count
        for f in report.findings
        if f.check in ("nan", "inf", "outlier")
    }
    expected[("quarantined", None)] = report.rows_quarantined
    got = patched()
    t = timeit(
        {"read only (Source)": read_only, "validate() shipped": shipped,
         "prototype with suggestions 1-4": patched},
        reps,
    )  # fmt: skip
    base = t["read only (Source)"]
    cpu = _cpu_ms()
    return {
        "same_row_findings_and_quarantined": got == expected,
        "ms": {k: v * 1e3 for k, v in t.items()},
        "cpu_ms": cpu,
        "wall_vs_read": {k: v / base for k, v in t.items()},
        "cpu_vs_read": {k: v / cpu["read only (Source)"] for k, v in cpu.items()},
    }


EXPERIMENTS = {
    "moments": exp_moments,
    "stats": exp_stats,
    "values": exp_values,
    "pandas": exp_pandas,
    "pass2": exp_pass2,
    "prefetch": exp_prefetch,
    "batchsize": exp_batchsize,
    "combined": exp_combined,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE / "data" / "bench_5m.parquet")
    ap.add_argument("--only", default=",".join(EXPERIMENTS))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    results = {}
    for name in args.only.split(","):
        results[name] = EXPERIMENTS[name](args.data, args.reps)
        print(f"== {name}\n{json.dumps(results[name], indent=1, default=float)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
