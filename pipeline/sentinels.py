"""Sentinels: placeholder values that stand for "missing" or "unknown" (``sentinel``).

A sentinel is a value a column repeats that stands apart from the column's
bulk: ``-999`` under ages of 0 to 100, ``9999`` over them, a ``0`` among
lengths that are otherwise between 3 and 11. Such values are not
measurements; a model trained on them learns the placeholder. Rows holding
one are quarantined with reason ``sentinel`` and the value.

Found from the merged profile (the column's exact value counts, or those of
its uniform row sample when it has more than
:data:`~pipeline.profiling.EXACT_VALUES` distinct values), so the result does
not depend on batching or on the engine. Candidates are taken from each end of
the sorted values inward, and a value is a sentinel when:

- it repeats (at least :data:`MIN_REPEATS` rows; a ``0`` below a strictly
  positive column, and a usual placeholder of -99 or below under a column that
  is otherwise never negative, count from one row) but is rare: under half the column
  for a usual placeholder (:data:`PLACEHOLDERS`), under 1% for a zero below a
  positive column (a common zero is a real "none"), under 5% for any other value;
- the gap to the nearest other value is at least :data:`GAP_SHARE` of the
  bulk's width (5th to 95th percentile of the other values; half of that for
  a usual placeholder) and at least :data:`GAP_SPACINGS` times the spacing of
  the distinct values next to it, so a count column's 0 next to its 1, or the
  top-coded 90 of an age column next to its 89, is not one; a skewed positive
  column is measured on its log scale, where its long tail is no gap. A 0
  below a strictly positive column needs only a quarter of the width and two
  spacings (a 0 below whole-number lengths of 3 to 11 is one); a usual
  negative placeholder (``-1``, ``-9``, ...) below a non-negative column with many
  distinct values needs none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "GAP_SHARE",
    "GAP_SPACINGS",
    "MIN_REPEATS",
    "PLACEHOLDERS",
    "SKEWED",
    "Sentinel",
    "find_sentinels",
]

#: the usual placeholder values of exported data
PLACEHOLDERS = frozenset({-1, -9, -99, -999, -9999, -99999, 99, 999, 9999, 99999, 999999, 9999999})
#: rows a value must hold to count as repeated
MIN_REPEATS = 3
#: gap to the bulk, as a share of the bulk's width (5th to 95th percentile); a usual
#: placeholder needs half of it, a zero below a strictly positive column a quarter
GAP_SHARE = 0.5
_PLACEHOLDER_GAP_SHARE, _ZERO_GAP_SHARE = 0.25, 0.125
#: ... and a zero below a strictly positive column at least this many spacings
_ZERO_GAP_SPACINGS = 2.0
#: gap to the bulk, in spacings of the distinct values next to it
GAP_SPACINGS = 10.0
#: the share of the column below which a usual placeholder, a zero below a positive
#: column, or any other value can be a sentinel
_MAX_SHARE, _ZERO_SHARE, _OTHER_SHARE = 0.5, 0.01, 0.05
#: candidates looked at from each end of the values
_MAX_PER_SIDE = 3
#: distinct values that must remain besides the candidates
_MIN_OTHERS = 3
#: keeps log(0) finite when a shifted scale starts at zero
_TINY = 1e-300
#: Bowley skewness above which a positive column is judged on a log scale (as the fences do)
SKEWED = 0.25
#: distinct values a column needs before a usual negative placeholder below it needs no gap
_MANY_VALUES = 10


@dataclass(frozen=True)
class Sentinel:
    """A placeholder value of one column.

    Parameters
    ----------
    value : float
        The value (in the column's statistics view: booleans as 0/1, decimals as float).
    count : int
        Rows holding it (in the exact value counts, or estimated from the row sample).
    side : {"low", "high"}
        Below or above the column's bulk.
    gap : float
        Distance to the nearest other value.
    """

    value: float
    count: int
    side: str
    gap: float

    def describe(self) -> str:
        """The value and its count as records and messages show them.

        Examples
        --------
        >>> Sentinel(-999.0, 40, "low", 1017.0).describe()
        'placeholder -999 in 40 rows'
        """
        rows = "row" if self.count == 1 else "rows"
        return f"placeholder {self.value:.6g} in {self.count:,} {rows}"


def find_sentinels(values: np.ndarray, counts: np.ndarray) -> list[Sentinel]:
    """The sentinels of a column with these distinct values and counts.

    Parameters
    ----------
    values : numpy.ndarray
        Distinct finite values of the column, in any order.
    counts : numpy.ndarray
        Rows holding each value.

    Returns
    -------
    list of Sentinel
        Low ones first (from the lowest value up), then high ones (from the highest down).

    Examples
    --------
    >>> ages = np.arange(18, 66)
    >>> values = np.append(ages, [-999.0, 98.0, 99.0])
    >>> counts = np.append(np.full(ages.size, 100), [40, 5, 7])
    >>> [(s.value, s.count, s.side) for s in find_sentinels(values, counts)]
    [(-999.0, 40, 'low'), (99.0, 7, 'high'), (98.0, 5, 'high')]
    """
    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=np.float64)[order]
    n = np.asarray(counts, dtype=np.int64)[order]
    total = int(n.sum())
    found: list[Sentinel] = []
    low = _extreme_run(v, n, total, "low")
    found += [
        Sentinel(float(v[i]), int(n[i]), "low", float(v[low] - v[low - 1])) for i in range(low)
    ]
    rest_v, rest_n = v[low:], n[low:]
    high = _extreme_run(rest_v, rest_n, total, "high")
    last = rest_v.size - 1
    gap = float(rest_v[last - high + 1] - rest_v[last - high]) if high else 0.0
    found += [
        Sentinel(float(rest_v[last - i]), int(rest_n[last - i]), "high", gap) for i in range(high)
    ]
    return found


def _extreme_run(v: np.ndarray, n: np.ndarray, total: int, side: str) -> int:
    """How many of the lowest (or highest) sorted values form a run of sentinels (0 if none).

    The longest run of up to three extreme values, each of which may be a
    placeholder by its count, that stands apart from the values beyond it.
    """
    best = 0
    for j in range(1, _MAX_PER_SIDE + 1):
        if v.size - j < _MIN_OTHERS:
            break
        run = slice(0, j) if side == "low" else slice(v.size - j, v.size)
        others = slice(j, v.size) if side == "low" else slice(0, v.size - j)
        if not all(
            _rare_enough(x, c, total, v[others], side) for x, c in zip(v[run], n[run], strict=True)
        ):
            break
        if _stands_apart(v[run], v[others], n[others], side):
            best = j
    return best


def _rare_enough(value: float, count: int, total: int, others: np.ndarray, side: str) -> bool:
    """Whether a value repeats like a placeholder and is rare enough to be one."""
    zero = _zero_below_positive(value, others, side)
    # A usual placeholder may stand for much of a column; a rare zero is an error, a common
    # one a real "none"; any other value must be rare to be taken for a placeholder.
    most = _MAX_SHARE if value in PLACEHOLDERS else _ZERO_SHARE if zero else _OTHER_SHARE
    # A zero below a positive column, or a -999 below a column never negative, is no
    # measurement even once.
    impossible = zero or _code_below_non_negative(value, others, side)
    return (1 if impossible else MIN_REPEATS) <= count < most * total


def _code_below_non_negative(value: float, others: np.ndarray, side: str) -> bool:
    # -99 and beyond: a lone -1 or -9 may be a real value the rest of the column lacks.
    return value in PLACEHOLDERS and value <= -99 and side == "low" and bool(others[0] >= 0)


def _zero_below_positive(value: float, others: np.ndarray, side: str) -> bool:
    return value == 0 and side == "low" and bool(others[0] > 0)


def _stands_apart(run: np.ndarray, others: np.ndarray, weights: np.ndarray, side: str) -> bool:
    """Whether the extreme ``run`` of values is separated from ``others`` by a wide gap."""
    edge = run[-1] if side == "low" else run[0]  # the run's value nearest the others
    if all(x in PLACEHOLDERS and x < 0 for x in run) and others[0] >= 0:
        return others.size >= _MANY_VALUES  # usual negative codes below a non-negative column
    if side == "low" and len(run) == 1 and _zero_below_positive(edge, others, side):
        share = _ZERO_GAP_SHARE
    elif all(x in PLACEHOLDERS for x in run):
        share = _PLACEHOLDER_GAP_SHARE
    else:
        share = GAP_SHARE
    lowest = min(float(run.min()), float(others[0]))
    # The others' quantiles by rank: the same ranks hold on a log scale, which keeps order.
    q05, q10, q50, q90, q95 = others[_ranks(weights, (0.05, 0.1, 0.5, 0.9, 0.95))]
    if _skewed(others, (q10, q50, q90)):
        # Judge a skewed column on a log scale (shifted past zero), where its long tail
        # is no gap.
        shift = (float(others[others > 0][0]) if others[0] <= 0 else 0.0) - min(lowest, 0.0)
        edge, others = np.log(edge + shift + _TINY), np.log(others + shift + _TINY)
        q05, q95 = np.log(np.array([q05, q95]) + shift + _TINY)
    near = others[:11] if side == "low" else others[-11:]
    gap = float(others[0] - edge) if side == "low" else float(edge - others[-1])
    spacing = float(np.median(np.diff(near))) if near.size > 1 else 0.0
    width = float(q95 - q05)
    # A zero below whole-number lengths of 3 and more stands 3 spacings off; a count's 0 one.
    spacings = _ZERO_GAP_SPACINGS if share == _ZERO_GAP_SHARE else GAP_SPACINGS
    return gap > 0 and gap >= share * width and gap >= spacings * spacing


def _skewed(values: np.ndarray, deciles: tuple[float, float, float]) -> bool:
    """A non-negative column whose bulk is more symmetric on a log scale.

    ``deciles`` are the column's 10th, 50th and 90th percentiles.
    """
    if values[0] < 0 or values[-1] <= 0:
        return False
    shift = float(values[values > 0][0]) if values[0] == 0 else 0.0

    def bowley(q10: float, q50: float, q90: float) -> float:
        return (q90 + q10 - 2 * q50) / (q90 - q10) if q90 > q10 else 0.0

    raw = bowley(*deciles)
    return raw > SKEWED and abs(bowley(*np.log(np.array(deciles) + shift))) < raw


def _ranks(weights: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """Positions of the ``qs`` quantiles (lower rank) of sorted values weighted by ``weights``."""
    cumulative = np.cumsum(weights)
    return np.searchsorted(cumulative, np.asarray(qs) * cumulative[-1], side="left")
