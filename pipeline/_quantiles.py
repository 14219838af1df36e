"""Exact per-column medians and percentiles of data read in chunks, in bounded memory.

:func:`exact_quantiles` gives the results of ``np.nanmedian`` and ``np.nanpercentile``
on the concatenated chunks, bit for bit, while holding a bounded number of values:
usually in one pass (brackets narrowed around the quantiles as the data streams by),
else with one more pass bracketed from a strided sample, and at worst with histograms
of the values' sort keys. Its docstring explains the method; :class:`RobustScaler
<pipeline.scaler.RobustScaler>` fits a dataset source with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "COLLECT_BUDGET",
    "ChunkReader",
    "SubsetReader",
    "close_iterator",
    "exact_quantiles",
    "inf_error",
]

#: Reads the data once more: an iterator of chunks, each a sequence of 1-D float32 or float64
#: arrays of equal length, one per column (NaN for missing values).
ChunkReader = Callable[[], Iterable[Sequence[np.ndarray]]]
#: Given column indices, a :data:`ChunkReader` of only those columns, in that order.
SubsetReader = Callable[[Sequence[int]], ChunkReader]

#: most values collected at once, over all columns (32 MiB of float64, 16 MiB of float32);
#: a column that would hold more gives up its brackets, and the next method takes over
COLLECT_BUDGET = 1 << 22
#: at most this many non-NaN values per column are collected whole before the first guess
_GUESS_AFTER = 1 << 16
#: bracket half-width: this many standard deviations of a sample quantile's rank, plus 2 ranks
_SIGMAS = 6.0
#: the strided sample of a column keeps between this many and twice this many positions
_STRIDED_SAMPLE = 1 << 15

_NEG_INF = float("-inf")
_POS_INF = float("inf")


def inf_error(name: str, where: str = "") -> ValueError:
    """The error for a column holding +inf or -inf, which has no quantiles to scale by.

    Parameters
    ----------
    name : str
        The column.
    where : str, default ""
        Prefix for the message (e.g. ``"data.parquet: "``).

    Returns
    -------
    ValueError
    """
    return ValueError(
        f"{where}column {name!r} contains +inf or -inf; RobustScaler needs finite values "
        "(NaN is ignored): use `validate` to quarantine inf rows first, or replace them"
    )


def _as_float(values: Any) -> np.ndarray:
    """float32 and float64 arrays as they are; anything else as float64."""
    x = np.asarray(values)
    if x.dtype != np.float32 and x.dtype != np.float64:
        x = x.astype(np.float64)
    return x.ravel()


@dataclass
class _Bracket:
    """Counts for one quantile of one column: values below ``lo``, values in ``[lo, hi]``.

    The values inside are collected by the column (unless ``lo == hi``: then they all
    equal ``lo`` and are only counted).
    """

    lo: float
    hi: float
    below: int = 0
    inside: int = 0

    @property
    def single(self) -> bool:
        return self.lo == self.hi

    def holds(self, rank: int) -> bool:
        return self.below <= rank < self.below + self.inside

    def span(self, v: np.ndarray) -> slice:
        """Where this bracket's values are in ``v``, the column's collected values, sorted."""
        edges = np.array([self.lo, self.hi], dtype=v.dtype)  # exact: edges are data values
        return slice(
            int(np.searchsorted(v, edges[0], side="left")),
            int(np.searchsorted(v, edges[1], side="right")),
        )


def _narrowed(b: _Bracket, fraction: float, n: int, v: np.ndarray) -> _Bracket | None:
    """A sub-bracket of ``b`` around the ``fraction`` quantile of the ``n`` values read so far.

    ``v`` holds the values inside ``b``, sorted. The new half-width is ``_SIGMAS`` standard
    deviations of that quantile's rank (plus 2 ranks): the quantile of all the data stays
    inside unless the rest of the data differs from what was read so far. None when the
    quantile of what was read already lies outside ``b`` (the data drifts).
    """
    centre = fraction * (n - 1)
    if not b.below <= centre <= b.below + b.inside - 1:
        return None
    if b.single:
        return b
    half = _SIGMAS * np.sqrt(fraction * (1.0 - fraction) * n) + 2.0
    i = int(np.floor(centre - half)) - b.below
    j = int(np.ceil(centre + half)) - b.below
    # An edge that would move out of b stays (the values beyond it were not collected).
    new = _Bracket(float(v[i]) if i >= 0 else b.lo, float(v[j]) if j < v.size else b.hi)
    span = new.span(v)
    new.below, new.inside = b.below + span.start, span.stop - span.start
    return new


def _sample_bracket(sample: np.ndarray, fraction: float) -> _Bracket:
    """A bracket around the ``fraction`` quantile of a sorted sample, for a fixed pass."""
    s = sample.size
    if not s:
        return _Bracket(_NEG_INF, _POS_INF)
    centre = fraction * (s - 1)
    half = _SIGMAS * np.sqrt(fraction * (1.0 - fraction) * s) + 2.0
    i, j = int(np.floor(centre - half)), int(np.ceil(centre + half))
    return _Bracket(
        float(sample[i]) if i >= 0 else _NEG_INF, float(sample[j]) if j < s else _POS_INF
    )


class _Column:
    """One column during a pass: its brackets, the values inside them, its strided sample."""

    def __init__(self, fractions: Sequence[float], brackets: dict[float, _Bracket] | None):
        #: per fraction; in an adaptive pass, before the first guess, one shared bracket
        #: [-inf, inf] that collects every value
        self.brackets: dict[float, _Bracket] = brackets or dict.fromkeys(
            fractions, _Bracket(_NEG_INF, _POS_INF)
        )
        self.failed: list[float] = []  # fractions missed or given up
        self.parts: list[np.ndarray] = []  # the values inside any bracket, each once
        self.held = 0
        self.n = 0  # non-NaN values read
        self.next_guess = 0
        self.wide = False  # a float64 chunk was seen: compare float32 chunks as float64
        self.rows = 0  # positions read, NaN included (for the strided sample)
        self.stride = 1
        self.sample: list[np.ndarray] = []
        self.sampled = 0

    def distinct(self) -> list[_Bracket]:
        return list({id(b): b for b in self.brackets.values()}.values())

    def collected(self) -> np.ndarray:
        """The collected values, sorted (sorting beats np.partition here, SIMD sort)."""
        if len(self.parts) != 1:
            self.parts = [np.concatenate(self.parts) if self.parts else np.empty(0)]
        self.parts[0].sort()
        return self.parts[0]

    def give_up(self, fractions: Iterable[float]) -> None:
        for f in fractions:
            self.failed.append(f)
            del self.brackets[f]

    def add_to_sample(self, x: np.ndarray) -> None:
        # Positions 0, stride, 2 * stride, ... of the column: a sample spread over all the data.
        start = -self.rows % self.stride
        self.rows += x.size
        if start >= x.size:
            return
        piece = x[start :: self.stride].copy()  # a copy: the chunk itself is not kept
        self.sample.append(piece)
        self.sampled += piece.size
        if self.sampled >= 2 * _STRIDED_SAMPLE:
            thinned = np.concatenate(self.sample)[::2]
            self.sample, self.sampled, self.stride = [thinned], thinned.size, 2 * self.stride

    def sorted_sample(self) -> np.ndarray:
        sample = np.concatenate(self.sample) if self.sample else np.empty(0)
        return np.sort(sample[~np.isnan(sample)])


class _BracketPass:
    """One pass over the data that counts and collects, per column, inside its brackets.

    Adaptive (the first pass): a column's first ``guess_after`` non-NaN values are kept
    whole; then, and each time the count of values read doubles, every bracket is narrowed
    around the quantile of what was read so far (:func:`_narrowed`). Fixed (a later pass):
    the brackets are given and stay.
    """

    def __init__(
        self,
        columns: list[_Column],
        names: Sequence[str],
        budget: int,
        where: str,
        guess_after: int = 0,
    ) -> None:
        self.columns = columns
        self.names = names
        self.budget = budget
        self.where = where
        self.adaptive = guess_after > 0
        for c in columns:
            c.next_guess = guess_after
        self.held = 0

    def run(self, read: ChunkReader) -> None:
        chunks = iter(read())
        try:
            for chunk in chunks:
                for j, values in enumerate(chunk):
                    self._feed(j, _as_float(values))
                if not self.adaptive and not any(c.brackets for c in self.columns):
                    break  # every bracket given up: the rest of the data cannot help
        finally:
            close_iterator(chunks)

    def _feed(self, j: int, x: np.ndarray) -> None:
        col = self.columns[j]
        if not x.size:
            return
        if self.adaptive:
            col.add_to_sample(x)
        # min and max are NaN when x has NaN; else they show inf at once.
        low, high = x.min(), x.max()
        if np.isnan(low) or np.isnan(high):
            n = x.size - int(np.count_nonzero(np.isnan(x)))
            if n and np.isinf(x).any():
                raise inf_error(self.names[j], self.where)
        else:
            n = x.size
            if np.isinf(low) or np.isinf(high):
                raise inf_error(self.names[j], self.where)
        if not n or not col.brackets:
            col.n += n
            return
        if x.dtype == np.float64:
            col.wide = True
        elif col.wide:
            x = x.astype(np.float64)
        col.n += n
        union: np.ndarray | None = None
        for b in col.distinct():
            # Compare in x's own dtype; NaN compares False, so it is in no count.
            mask = x >= b.lo
            b.below += n - int(np.count_nonzero(mask))
            np.logical_and(mask, x <= b.hi, out=mask)
            inside = int(np.count_nonzero(mask))
            b.inside += inside
            if inside and not b.single:
                union = mask if union is None else np.logical_or(union, mask, out=union)
        if union is not None:
            # One gather per column and chunk for all its brackets.
            at = np.flatnonzero(union)
            col.parts.append(x.take(at))
            col.held += at.size
            self.held += at.size
        if self.adaptive and col.n >= col.next_guess and col.brackets:
            self._guess(col)
        if self.held > self.budget and col.held:
            # Over budget: this column's quantiles (but those of one value) go on to the next
            # method, and its values are let go.
            col.give_up([f for f, b in col.brackets.items() if not b.single])
            self.held -= col.held
            col.parts, col.held = [], 0

    def _guess(self, col: _Column) -> None:
        v = col.collected()
        narrowed: dict[float, _Bracket] = {}
        for f, b in col.brackets.items():
            new = _narrowed(b, f, col.n, v[b.span(v)] if not b.single else v[:0])
            if new is None:
                col.failed.append(f)  # the data drifts away from what was read first
            else:
                narrowed[f] = new
        col.brackets = narrowed
        col.next_guess = 2 * col.n
        keep = np.zeros(v.size, dtype=bool)
        for b in col.distinct():
            if not b.single:
                keep[b.span(v)] = True
        col.parts = [v[keep]]
        self.held += int(col.parts[0].size) - col.held
        col.held = int(col.parts[0].size)


def close_iterator(iterator: Iterator[Any]) -> None:
    """Close a generator that stopped early, so that its ``finally`` blocks run now."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _resolve(
    col: _Column, wanted: dict[float, tuple[int, ...]], out: dict[int, float]
) -> list[float]:
    """Fill ``out`` with the wanted ranks that lie inside their bracket; the fractions left."""
    missing: list[float] = []
    v = col.collected()
    for f, ranks in wanted.items():
        b = col.brackets.get(f)
        if b is None or not all(b.holds(r) for r in ranks):
            missing.append(f)
        elif b.single:
            out.update(dict.fromkeys(ranks, b.lo))
        else:
            inside = v[b.span(v)]
            # Only the few values that become results are converted to float64.
            out.update((r, float(inside[r - b.below])) for r in ranks)
    return missing


# -- the exact fallback: histograms of sort keys -------------------------------------------------
# Bins are ranges of a float's bit pattern (its "sort key"), not ranges of value: they need no
# min/max pass first, and an outlier at 1e12 does not squeeze the bulk of the data into one bin
# the way equal-width bins between min and max would.
_FIRST_BITS = 16  # first pass: 65,536 bins, 16 per power of two of magnitude
_REFINE_BITS = 12  # each refining pass splits a bin into 4,096
_KEY_BITS = 64

_SIGN_BIT = np.uint64(1 << 63)
_LOW_63_BITS = np.int64(0x7FFF_FFFF_FFFF_FFFF)


def _sort_keys(values: np.ndarray) -> np.ndarray:
    """Map non-NaN float values to uint64 keys that sort in the same order."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
    # As integers, negative floats sort backwards: flip their 63 low bits. Flipping the sign bit
    # then makes unsigned integer order equal float order (-inf < ... < -0.0 < 0.0 < ... < inf).
    flipped = bits ^ ((bits >> np.int64(63)) & _LOW_63_BITS)
    return flipped.view(np.uint64) ^ _SIGN_BIT


def _key_value(key: int) -> float:
    """The float whose sort key is ``key`` (the inverse of :func:`_sort_keys`)."""
    bits = (np.array([key], dtype=np.uint64) ^ _SIGN_BIT).view(np.int64)
    return float((bits ^ ((bits >> np.int64(63)) & _LOW_63_BITS)).view(np.float64)[0])


_INF_KEYS = _sort_keys(np.array([-np.inf, np.inf]))
_INF_BINS = tuple(int(k) >> (_KEY_BITS - _FIRST_BITS) for k in _INF_KEYS)


@dataclass
class _OrderStatistic:
    """The ``rank``-th smallest non-NaN value of one column, narrowed to one key bin."""

    column: int
    rank: int
    bits: int = 0  # leading key bits fixed so far
    prefix: int = 0  # their value: the bin
    rank_in_bin: int = 0
    count: int = 0  # values in the bin
    value: float | None = None

    def narrow(self, hist: np.ndarray, rank: int, new_bits: int) -> None:
        """Move into the sub-bin of ``hist`` that holds the ``rank``-th value of the current bin."""
        cumulative = np.cumsum(hist)
        sub = int(np.searchsorted(cumulative, rank, side="right"))
        self.rank_in_bin = rank - (int(cumulative[sub - 1]) if sub else 0)
        self.count = int(hist[sub])
        self.prefix = (self.prefix << new_bits) | sub
        self.bits += new_bits
        if self.bits == _KEY_BITS:  # a single key: one distinct value, nothing left to collect
            self.value = _key_value(self.prefix)


def _drop_nan(values: np.ndarray) -> np.ndarray:
    nan = np.isnan(values)
    return values[~nan] if nan.any() else values


def _first_pass(read: ChunkReader, names: Sequence[str], where: str) -> np.ndarray:
    """Histogram every column's non-NaN sort keys by their leading bits; raise on inf."""
    shift = np.uint64(_KEY_BITS - _FIRST_BITS)
    hists = np.zeros((len(names), 1 << _FIRST_BITS), dtype=np.int64)
    for chunk in read():
        for j, values in enumerate(chunk):
            bins = (_sort_keys(_drop_nan(_as_float(values))) >> shift).astype(np.intp)
            counts = np.bincount(bins, minlength=1 << _FIRST_BITS)
            # After NaN removal the bins of -inf and +inf hold nothing else: a free inf check.
            if counts[_INF_BINS[0]] or counts[_INF_BINS[1]]:
                raise inf_error(names[j], where)
            hists[j] += counts
    return hists


def _resolving_pass(read: ChunkReader, stats: list[_OrderStatistic], budget: int) -> None:
    """One more pass: resolve small bins exactly, split the others into finer bins."""
    groups: dict[tuple[int, int, int], list[_OrderStatistic]] = {}
    for s in stats:
        groups.setdefault((s.column, s.bits, s.prefix), []).append(s)
    # Collect the smallest bins while they fit in the budget; split the rest.
    collect: dict[tuple[int, int, int], list[np.ndarray]] = {}
    refine: dict[tuple[int, int, int], np.ndarray] = {}
    held = 0
    for key in sorted(groups, key=lambda k: groups[k][0].count):
        count = groups[key][0].count
        if held + count <= budget:
            collect[key] = []
            held += count
        else:
            refine[key] = np.zeros(1 << _REFINE_BITS, dtype=np.int64)
    by_column: dict[int, list[tuple[int, int, int]]] = {}
    for key in groups:
        by_column.setdefault(key[0], []).append(key)

    for chunk in read():
        for column, keys_of_column in by_column.items():
            values = _drop_nan(_as_float(chunk[column]))
            sort_keys = _sort_keys(values)
            tops: dict[int, np.ndarray] = {}  # one shift per prefix length, not per bin
            for key in keys_of_column:
                _, bits, prefix = key
                if bits not in tops:
                    tops[bits] = sort_keys >> np.uint64(_KEY_BITS - bits)
                in_bin = tops[bits] == np.uint64(prefix)
                if key in collect:
                    collect[key].append(values[in_bin])
                else:
                    shift = np.uint64(_KEY_BITS - bits - _REFINE_BITS)
                    sub = (sort_keys[in_bin] >> shift) & np.uint64((1 << _REFINE_BITS) - 1)
                    refine[key] += np.bincount(sub.astype(np.intp), minlength=1 << _REFINE_BITS)

    for key, parts in collect.items():
        values = np.concatenate(parts) if parts else np.empty(0)
        ranks = sorted({s.rank_in_bin for s in groups[key]})
        values = np.partition(values, ranks)
        for s in groups[key]:
            s.value = float(values[s.rank_in_bin])
    for key, hist in refine.items():
        for s in groups[key]:
            s.narrow(hist, s.rank_in_bin, _REFINE_BITS)


def _order_statistics(
    read: ChunkReader, hists: np.ndarray, wanted: list[list[int]], budget: int
) -> list[dict[int, float]]:
    """Exact values of the wanted ranks (per column) given the first-pass histograms."""
    stats = [_OrderStatistic(j, rank) for j, ranks in enumerate(wanted) for rank in set(ranks)]
    for s in stats:
        s.narrow(hists[s.column], s.rank, _FIRST_BITS)
    while pending := [s for s in stats if s.value is None]:
        _resolving_pass(read, pending, budget)
    out: list[dict[int, float]] = [{} for _ in wanted]
    for s in stats:
        assert s.value is not None
        out[s.column][s.rank] = s.value
    return out


def _lerp(a: float, b: float, t: float) -> float:
    # numpy's _lerp, operation for operation, so that results match np.percentile bit for bit.
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def _percentile_ranks(n: int, fraction: float) -> tuple[int, int, float]:
    """Neighbouring ranks and weight of numpy's "linear" method (Hyndman & Fan type 7)."""
    virtual = (n - 1) * fraction
    if virtual >= n - 1:
        return n - 1, n - 1, 0.0
    below = int(np.floor(virtual))
    return below, below + 1, virtual - below


def _median_ranks(n: int) -> tuple[int, int]:
    return (n // 2, n // 2) if n % 2 else (n // 2 - 1, n // 2)


def _subset(read: ChunkReader, columns: Sequence[int]) -> ChunkReader:
    def sub() -> Iterator[list[np.ndarray]]:
        for chunk in read():
            yield [chunk[j] for j in columns]

    return sub


def exact_quantiles(
    read: ChunkReader,
    names: Sequence[str],
    percentiles: Sequence[float],
    *,
    median: bool = True,
    budget: int = COLLECT_BUDGET,
    where: str = "",
    read_columns: SubsetReader | None = None,
    guess_after: int = _GUESS_AFTER,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Exact per-column medians and percentiles of data read in chunks, in bounded memory.

    The results equal ``np.nanmedian(X, axis=0)`` and ``np.nanpercentile(X, percentiles,
    axis=0)`` of the concatenated chunks taken as float64 (NaN ignored; linear
    interpolation), bit for bit.

    Method: a quantile of ``n`` values is one or two order statistics (ranks ``floor`` and
    ``ceil`` of ``(n - 1) * q``, or the middle one or two). They are found with
    *brackets*: per column and quantile, a bracket ``[lo, hi]`` counts the values below
    ``lo`` and inside, and the column collects the values inside any of its brackets (one
    combined mask and one gather per column and chunk). At the end, when a wanted rank
    ``r`` has ``below <= r < below + inside``, the value is the ``(r - below)``-th
    smallest collected one of that bracket. The counts are exact, so a result never
    depends on where the brackets were put: a badly placed bracket only costs a pass.

    1. One adaptive pass. Per column, the first ``guess_after`` non-NaN values are
       collected whole; then each quantile gets a bracket around the quantile of the
       values read so far, +-6 standard deviations of that sample quantile's rank
       (``6 * sqrt(q * (1 - q) * m)`` ranks for ``m`` values, plus 2); each time the count
       read doubles, every bracket is narrowed the same way inside itself (a sub-bracket
       keeps the counts exact: the values it drops were collected, so they are counted as
       below or dropped as above). For data in no particular order everything is resolved
       here, in one read, while about ``8.5 * sqrt(n)`` values per quantile are held (on
       5M rows x 32 columns, 1.4M values in all). The pass also raises on inf and keeps a
       strided sample of each column (positions ``0, k, 2k, ...``; ``k`` doubles as needed).
    2. Quantiles that pass 1 missed (sorted or drifting data: the first values misled it)
       or gave up (over ``budget``): one more pass, over those columns only, with fixed
       brackets around the quantiles of the strided sample, which spans all the data.
    3. Whatever is still missing: the histogram method, in up to 6 more passes over those
       columns. Histogram the sort keys (the IEEE-754 bit pattern, sign-adjusted) by their
       leading 16 bits; then repeatedly collect the bin that holds a wanted rank, or, when
       the bins do not fit in ``budget`` values, histogram its next 12 key bits. A bin fixed
       to all 64 bits holds one distinct value, so heavy duplication costs no memory.

    Values are compared in the column's own dtype: float32 stays float32 (the order of
    float32 values equals the order of their float64 conversions), and only the values
    that become results are converted to float64. Collected values are sorted with
    ``np.sort`` (SIMD; faster here than ``np.partition``).

    Memory, bounded whatever ``n``: at most ``budget`` collected values in all, plus one
    chunk (a column whose values would pass ``budget`` gives its brackets up to the next
    method; pass 1 starts with the first ``guess_after`` values of every column, capped
    at half the budget); a strided sample of at most 65,536 values per column; in
    the histogram method 65,536 counters (512 KiB) per column; while a column's brackets
    are narrowed or resolved, a copy of its collected values.

    Parameters
    ----------
    read : callable
        Returns a fresh iterable over the data each time it is called; each item is a
        sequence of 1-D float arrays (float32 or float64; other dtypes are taken as
        float64), one per column, of equal length.
    names : sequence of str
        Column names, for error messages.
    percentiles : sequence of float
        Percentiles in [0, 100].
    median : bool, default True
        Also compute the medians.
    budget : int, default 4194304
        Most values collected at once, over all columns.
    where : str, default ""
        Prefix for error messages (e.g. ``"data.parquet: "``).
    read_columns : callable, optional
        Given column indices, a reader of only those columns (later passes need only the
        columns still unresolved); default: ``read`` and pick them.
    guess_after : int, default 65536
        Non-NaN values per column collected whole before the first brackets are placed;
        capped at ``max(budget // (2 * n_columns), 1024)``.

    Returns
    -------
    median : ndarray of shape (n_columns,) or None
    percentiles : ndarray of shape (len(percentiles), n_columns)
    counts : ndarray of shape (n_columns,)
        Non-NaN values per column. Columns without any get NaN statistics.

    Raises
    ------
    ValueError
        When a column holds +inf or -inf.

    Examples
    --------
    >>> x = np.array([3.0, np.nan, 1.0, 2.0, 10.0])
    >>> med, pct, n = exact_quantiles(lambda: [[x[:2]], [x[2:]]], ["x"], [25, 75])
    >>> med.tolist(), pct[:, 0].tolist(), n.tolist()
    ([2.5], [1.75, 4.75], [4])
    """
    fractions = [float(np.true_divide(p, 100)) for p in percentiles]
    # One bracket per distinct fraction; the median is the fraction 0.5 with its own ranks.
    wanted_fractions = list(dict.fromkeys([*fractions, *([0.5] if median else [])]))

    def ranks_of(n: int) -> dict[float, tuple[int, ...]]:
        out: dict[float, tuple[int, ...]] = {}
        for f in wanted_fractions:
            ranks = set(_percentile_ranks(n, f)[:2]) if f in fractions else set()
            if median and f == 0.5:
                ranks.update(_median_ranks(n))
            out[f] = tuple(sorted(ranks))
        return out

    # 1. One adaptive pass.
    columns = [_Column(wanted_fractions, None) for _ in names]
    # The first values of all columns must fit in half the budget.
    guess_after = max(1, min(guess_after, max(budget // (2 * max(len(names), 1)), 1024)))
    _BracketPass(columns, names, budget, where, guess_after=guess_after).run(read)
    counts = np.array([c.n for c in columns], dtype=np.int64)
    values: list[dict[int, float]] = [{} for _ in names]
    missing: dict[int, list[float]] = {}
    for j, col in enumerate(columns):
        if col.n:
            left = _resolve(col, ranks_of(col.n), values[j])
            if left:
                missing[j] = left
    subset = read_columns or (lambda idx: _subset(read, idx))

    # 2. One pass with brackets from the strided sample, for the quantiles missed.
    if missing:
        todo = sorted(missing)
        second: list[_Column] = []
        for j in todo:
            sample = columns[j].sorted_sample()
            col = _Column(missing[j], {f: _sample_bracket(sample, f) for f in missing[j]})
            col.wide = columns[j].wide
            second.append(col)
        _BracketPass(second, [names[j] for j in todo], budget, where).run(subset(todo))
        for j, col in zip(todo, second, strict=True):
            col.n = int(counts[j])
            left = _resolve(col, {f: ranks_of(col.n)[f] for f in missing[j]}, values[j])
            if left:
                missing[j] = left
            else:
                del missing[j]

    # 3. The histogram method, for what is still missing.
    if missing:
        todo = sorted(missing)
        sub_read = subset(todo)
        hists = _first_pass(sub_read, [names[j] for j in todo], where)
        wanted = [[r for f in missing[j] for r in ranks_of(int(counts[j]))[f]] for j in todo]
        for j, found in zip(todo, _order_statistics(sub_read, hists, wanted, budget), strict=True):
            values[j].update(found)

    medians = np.full(len(names), np.nan) if median else None
    quantiles = np.full((len(fractions), len(names)), np.nan)
    for j, n in enumerate(counts.tolist()):
        if not n:
            continue
        v = values[j]
        if medians is not None:
            lo, hi = _median_ranks(n)
            medians[j] = v[lo] if lo == hi else (v[lo] + v[hi]) / 2  # np.median's mean of two
        for i, f in enumerate(fractions):
            lo, hi, t = _percentile_ranks(n, f)
            quantiles[i, j] = v[lo] if lo == hi else _lerp(v[lo], v[hi], t)
    return medians, quantiles, counts
