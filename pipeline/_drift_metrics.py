"""The distances behind drift findings, and the small-sample guards that go with them.

Everything here works on summaries, never on rows: a right-continuous step
CDF (:class:`StepCDF`) for numeric columns, and share vectors for categories,
classes and missing states. All functions are vectorised numpy.

The guards answer one question: could a distance this large come from two
samples of one distribution at these sizes (p >= 0.001)? A finding needs the
effect over its threshold *and* the guard's "no"; at large n the guard always
passes and the effect alone decides (p-values flag everything there), at small
n it keeps sampling noise from looking like drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ALPHA",
    "PSI_BINS",
    "PSI_EPSILON",
    "QUANTILE_GRID",
    "StepCDF",
    "chi2_significant",
    "ks",
    "ks_critical",
    "one_sided_significant",
    "proportions_significant",
    "psi",
    "psi_edges",
    "shares_in_bins",
    "tvd",
]

#: the guards' significance level
ALPHA = 1e-3
#: PSI bins: the reference's deciles
PSI_BINS = 10
#: a bin share below this counts as this much in PSI (zero-share smoothing)
PSI_EPSILON = 1e-4
#: intervals of the quantile grid a slim baseline keeps (1,001 quantiles)
QUANTILE_GRID = 1000

# Kolmogorov's c(alpha) = sqrt(-ln(alpha / 2) / 2): D above c * sqrt((n + m) / (n m)) has p < alpha
_KS_C = math.sqrt(-0.5 * math.log(ALPHA / 2))
# the standard normal's two-sided 0.1% point, and its one-sided one for Wilson-Hilferty
_Z_TWO_SIDED = 3.2905
_Z_ONE_SIDED = 3.0902


@dataclass(frozen=True)
class StepCDF:
    """A right-continuous step CDF: ``F(x) = cdf[i]`` for ``xs[i] <= x < xs[i + 1]``.

    Parameters
    ----------
    xs : numpy.ndarray
        Jump points, ascending (float64; ties allowed: the last one wins).
    cdf : numpy.ndarray
        ``F`` at each jump point, non-decreasing, ending at 1.
    n : int
        Values behind it (the sample size a guard uses).
    exact : bool
        Built from every value of the column (exact counts), not a sample.
    bound : float
        How far ``F`` may be from the ECDF of the values it stands for
        (0 for counts and samples; half a grid step for a quantile grid).
    """

    xs: np.ndarray
    cdf: np.ndarray
    n: int
    exact: bool = False
    bound: float = 0.0

    @classmethod
    def from_counts(
        cls, values: np.ndarray, counts: np.ndarray, *, exact: bool, ascending: bool = False
    ) -> StepCDF:
        """The ECDF of ``values`` repeated ``counts`` times (``ascending``: already sorted)."""
        xs = np.asarray(values, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.int64)
        if not ascending:
            order = np.argsort(xs, kind="stable")
            xs, counts = xs[order], counts[order]
        cum = np.cumsum(counts)
        total = int(cum[-1]) if cum.size else 0
        # integer cumulative counts over the integer total: the same floats as
        # scipy.stats.ks_2samp's searchsorted(...) / n on the rows themselves
        cdf = cum / total if total else cum.astype(np.float64)
        return cls(xs, cdf, total, exact)

    @classmethod
    def from_sample(cls, x: np.ndarray) -> StepCDF:
        """The ECDF of the sampled values ``x``."""
        values, counts = np.unique(np.asarray(x, dtype=np.float64), return_counts=True)
        return cls.from_counts(values, counts, exact=False, ascending=True)

    @classmethod
    def from_quantiles(cls, q: np.ndarray, n: int) -> StepCDF:
        """A CDF within ``0.5 / (len(q) - 1)`` of the ECDF whose quantile grid is ``q``.

        ``q[j]`` is the inverted-CDF quantile at level ``j / g`` (``g = len(q) - 1``),
        so ``j / g <= F(x) < (j + 1) / g`` for ``q[j] <= x < q[j + 1]``: the middle
        of that interval is at most half a grid step off, and ``F`` is exact
        below ``q[0]`` (the minimum: 0) and from ``q[g]`` (the maximum: 1) on.
        """
        g = len(q) - 1
        cdf = (np.arange(g + 1, dtype=np.float64) + 0.5) / g
        cdf[-1] = 1.0
        return cls(np.asarray(q, dtype=np.float64), cdf, n, False, 0.5 / g)

    def at(self, z: np.ndarray) -> np.ndarray:
        """``F(z)`` for each ``z``."""
        i = np.searchsorted(self.xs, z, side="right") - 1
        return np.where(i >= 0, self.cdf[np.maximum(i, 0)], 0.0)

    def quantiles(self, levels: np.ndarray) -> np.ndarray:
        """The inverted-CDF quantiles: the smallest ``x`` with ``F(x) >= p``."""
        i = np.searchsorted(self.cdf, levels, side="left")
        return self.xs[np.minimum(i, len(self.xs) - 1)]


def ks(ref: StepCDF, cur: StepCDF) -> tuple[float, float, float, float]:
    """The Kolmogorov-Smirnov distance and where it is reached.

    Both CDFs are constant between their jump points, so the supremum of
    ``|F - G|`` is reached on the union of those points. One stable sort of the
    two (already sorted) point sets replaces a binary search per point: at each
    point, the last jump of each side seen so far gives its CDF there.

    Returns
    -------
    (float, float, float, float)
        ``D``, the value ``x`` at which it is reached, ``F(x)``, ``G(x)``.
    """
    values = np.concatenate([ref.xs, cur.xs])
    order = np.argsort(values, kind="stable")  # two sorted runs: a merge
    z = values[order]
    last = np.append(z[1:] != z[:-1], True)  # the last point of each run of ties
    n_ref = len(ref.xs)
    mine = order < n_ref
    i_ref = np.maximum.accumulate(np.where(mine, order, -1))[last]
    i_cur = np.maximum.accumulate(np.where(mine, -1, order - n_ref))[last]
    z = z[last]
    f = np.where(i_ref >= 0, ref.cdf[np.maximum(i_ref, 0)], 0.0)
    g = np.where(i_cur >= 0, cur.cdf[np.maximum(i_cur, 0)], 0.0)
    gap = np.abs(f - g)
    i = int(np.argmax(gap))
    return float(gap[i]), float(z[i]), float(f[i]), float(g[i])


def ks_critical(n: int, m: int) -> float:
    """The KS distance above which two samples of sizes ``n`` and ``m`` differ at p < 0.001.

    Examples
    --------
    >>> round(ks_critical(1000, 1000), 4)
    0.0872
    """
    if n <= 0 or m <= 0:
        return math.inf
    return _KS_C * math.sqrt((n + m) / (n * m))


def psi_edges(ref: StepCDF) -> np.ndarray:
    """The interior edges of the reference's decile bins (ties merged)."""
    levels = np.arange(1, PSI_BINS) / PSI_BINS
    return np.unique(ref.quantiles(levels))


def shares_in_bins(cdf: StepCDF, edges: np.ndarray) -> np.ndarray:
    """Each bin's share under ``cdf``; bins ``(-inf, e1], (e1, e2], ..., (ek, inf)``."""
    inner = cdf.at(edges) if edges.size else np.empty(0)
    return np.diff(np.concatenate([[0.0], inner, [1.0]]))


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    """Population stability index of two share vectors, shares floored at :data:`PSI_EPSILON`.

    Examples
    --------
    >>> psi(np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    0.0
    """
    p = np.maximum(ref, PSI_EPSILON)
    q = np.maximum(cur, PSI_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def tvd(ref: np.ndarray, cur: np.ndarray) -> float:
    """Total variation distance of two share vectors: half the sum of absolute differences.

    Examples
    --------
    >>> tvd(np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.5, 0.25]))
    0.25
    """
    return float(0.5 * np.sum(np.abs(ref - cur)))


def chi2_significant(ref: np.ndarray, cur: np.ndarray, n_ref: float, n_cur: float) -> bool:
    """Whether two share vectors over ``n_ref`` and ``n_cur`` values differ at p < 0.001.

    Pearson's chi-square test of homogeneity on the 2 x k table of counts;
    the critical value is Wilson and Hilferty's (slightly above the exact one,
    so the guard errs towards staying quiet).
    """
    if n_ref <= 0 or n_cur <= 0:
        return False
    table = np.vstack([ref * n_ref, cur * n_cur])
    col = table.sum(axis=0)
    keep = col > 0
    df = int(keep.sum()) - 1
    if df < 1:
        return False
    table, col = table[:, keep], col[keep]
    expected = np.outer([n_ref, n_cur], col) / (n_ref + n_cur)
    stat = float(np.sum((table - expected) ** 2 / expected))
    h = 2.0 / (9.0 * df)
    critical = df * (1.0 - h + _Z_ONE_SIDED * math.sqrt(h)) ** 3
    return stat > critical


def proportions_significant(p1: float, n1: float, p2: float, n2: float) -> bool:
    """Whether two proportions differ at p < 0.001 (two-sided two-proportion z-test)."""
    if n1 <= 0 or n2 <= 0:
        return False
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    if var <= 0:
        return p1 != p2
    return abs(p1 - p2) / math.sqrt(var) > _Z_TWO_SIDED


def one_sided_significant(k: float, n_here: float, n_there: float) -> bool:
    """Whether ``k`` values seen on one side only (size ``n_here``) and none on the other are
    no chance.

    Under one distribution each of the ``k`` values lands on this side with
    probability ``n_here / (n_here + n_there)``; all ``k`` doing so has
    probability ``(n_here / (n_here + n_there)) ** k``.

    Examples
    --------
    >>> one_sided_significant(3, 500, 500), one_sided_significant(10, 500, 500)
    (False, True)
    """
    if k <= 0 or n_there <= 0:
        return False
    return k * math.log(n_here / (n_here + n_there)) < math.log(ALPHA)
