"""Outlier fences: the bounds beyond which a value is an outlier, fixed once per run.

A run decides one :class:`Fences` per numeric column from the merged profile
(:func:`outlier_fences`), with the run's method and threshold or a schema's
per-column ``outliers`` override. The row rule applies them, the report
carries them (HTML histograms, JUnit cases) and the training-time guard turns
them into ``out_of_range`` bounds, so all of them use the same numbers.

The default method, ``auto``, judges each column where its bulk is roughly
symmetric, so that the tail of a healthy skewed column is not mistaken for
errors (:func:`shape_aware_fences`):

1. **Scale.** A non-negative, right-skewed column (incomes, amounts of
   money, durations, counts) is judged on a log scale (of ``x`` plus its
   smallest positive value when it holds zeros) when that makes its bulk more
   symmetric; every other column on its own scale. Below such a column only
   negative values are outliers.
2. **Point mass.** A value holding at least 10% of the column (the zeros of a
   zero-inflated column) is left out when the spread is measured, so it cannot
   collapse it, and is never an outlier.
3. **Spread per side.** The fences stand ``threshold`` times the distance from
   the median to the 1st (99th) percentile below the 1st (beyond the 99th)
   percentile. Percentiles this far out see a heavy tail the quartiles miss,
   and each side gets its own spread, so a skewed column is not cut on its
   long side.
4. **Frequency.** A value that holds at least 0.5% of the column is a value
   the column takes, not an error; the fences widen to keep it (a repeated
   value standing apart from the bulk is a sentinel instead, see
   :mod:`pipeline.sentinels`).

So only gross errors fall outside: unit mix-ups, a value ten thousand times
the median, a digit slip. Milder tails are left to the joint row score
(:mod:`pipeline.joint`), which reports them without quarantining them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .options import ValidationOptions
    from .profiling import Profile

__all__ = [
    "FREQUENT_SHARE",
    "MAD_TO_SD",
    "POINT_MASS_SHARE",
    "Fences",
    "auto_fences",
    "fences_from",
    "outlier_fences",
    "shape_aware_fences",
]

#: a normal distribution's standard deviation is 1.4826 times its median absolute deviation
MAD_TO_SD = 1.4826
#: a value at least this share of a column is a point mass: left out of its spread
POINT_MASS_SHARE = 0.10
#: a value at least this share of a column is never an outlier
FREQUENT_SHARE = 0.005
#: the percentiles the ``auto`` method measures each side's spread to
_TAIL_QUANTILES = (0.01, 0.5, 0.99)
#: rows a frequent value must hold besides its share (a small table's every value is 0.5%)
_FREQUENT_COUNT = 5
#: skewness (Bowley's, on the 10th/50th/90th percentiles) above which a log scale is tried
_SKEWED = 0.25


@dataclass(frozen=True)
class Fences:
    """Outlier bounds of one column: a value outside ``[low, high]`` is an outlier.

    The score of a value is its distance beyond the anchors, on the column's
    judging ``scale``, in units of that side's spread: ``(t - upper_anchor) /
    unit`` above, ``(lower_anchor - t) / lower_unit`` below, where ``t`` is the
    value on that scale (the larger of the two).

    Parameters
    ----------
    low, high : float
        The fences, in the column's own units.
    lower_anchor, upper_anchor : float
        Where the distance is measured from, on the judging scale (the
        quartiles for ``iqr``, the median for ``mad``, the 1st and 99th
        percentiles for ``auto``).
    unit : float
        The spread one unit of score stands for above the upper anchor (and
        below the lower one unless ``lower_unit`` is given).
    method : {"auto", "iqr", "mad"}
        The rule that set them.
    threshold : float
        Units of spread beyond the anchors at which the fences stand.
    lower_unit : float, optional
        The spread below the lower anchor, when it differs from ``unit``.
    scale : {"linear", "log"}
        The scale the column is judged on.
    shift : float
        Added before the log: the smallest positive value of a column that holds zeros.
    """

    low: float
    high: float
    lower_anchor: float
    upper_anchor: float
    unit: float
    method: str = "iqr"
    threshold: float = 5.0
    lower_unit: float | None = None
    scale: str = "linear"
    shift: float = 0.0

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Values on the judging scale: ``log(x + shift)`` on a log scale.

        On a log scale, values at or below ``-shift`` sit far below the bulk.
        """
        x = np.asarray(x, dtype=np.float64)
        if self.scale != "log":
            return x
        floor = np.exp(self.lower_anchor) * 1e-12  # ~27.6 log units below the bulk
        return np.log(np.maximum(x + self.shift, floor))

    def score(self, x: np.ndarray) -> np.ndarray:
        """Each value's distance beyond the anchors, in units of spread (negative inside)."""
        t = self.transform(x)
        below = self.unit if self.lower_unit is None else self.lower_unit
        with np.errstate(over="ignore"):  # values near the float64 limit: inf, far out
            return np.maximum((t - self.upper_anchor) / self.unit, (self.lower_anchor - t) / below)

    def describe(self) -> str:
        """The fences as quarantine records and messages show them: ``[low, high]``."""
        return f"[{self.low:.6g}, {self.high:.6g}]"


def fences_from(
    method: str, threshold: float, *, q25: float, q75: float, median: float, mad: float
) -> Fences | None:
    """Fences of a column with these statistics; ``None`` when its spread is zero.

    Parameters
    ----------
    method : {"iqr", "mad", "none"}
        ``iqr``: ``threshold`` interquartile ranges beyond the quartiles.
        ``mad``: ``threshold`` robust standard deviations (1.4826 MAD) from the median.
    threshold : float
    q25, q75, median : float
        The column's quartiles and median.
    mad : float
        Its median absolute deviation from the median (unscaled); read only by ``mad``.

    Examples
    --------
    >>> fences_from("iqr", 5.0, q25=1.0, q75=3.0, median=2.0, mad=1.0).describe()
    '[-9, 13]'
    """
    if method == "iqr":
        iqr = q75 - q25
        if iqr <= 0:
            return None
        return Fences(
            q25 - threshold * iqr, q75 + threshold * iqr, q25, q75, iqr, method, threshold
        )
    if method == "mad":
        unit = mad * MAD_TO_SD
        if unit <= 0:
            return None
        return Fences(
            median - threshold * unit, median + threshold * unit, median, median, unit,
            method, threshold,
        )  # fmt: skip
    return None


def shape_aware_fences(
    values: np.ndarray,
    threshold: float,
    *,
    frequent: np.ndarray | None = None,
    point_mass: float | None = None,
) -> Fences | None:
    """The ``auto`` method's fences of one column (see the module docstring).

    Parameters
    ----------
    values : numpy.ndarray
        The column's finite values (all of them, or a uniform sample), sentinels left out.
    threshold : float
        Units of each side's spread (median to the 1st or 99th percentile) beyond
        that percentile at which the fences stand.
    frequent : numpy.ndarray, optional
        Values holding at least :data:`FREQUENT_SHARE` of the column: the fences widen to keep them.
    point_mass : float, optional
        A value holding at least :data:`POINT_MASS_SHARE` of the column: left out
        of the spread, and kept inside the fences.

    Returns
    -------
    Fences or None
        ``None`` when the column has fewer than two distinct values besides the point mass.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> incomes = rng.lognormal(10, 1, 10_000)
    >>> f = shape_aware_fences(incomes, 2.0)
    >>> f.scale, bool(f.high > incomes.max()), bool(f.high < 1e4 * np.median(incomes))
    ('log', True, True)
    """
    bulk = values if point_mass is None else values[values != point_mass]
    if bulk.size < 2 or bulk.min() == bulk.max():
        return None
    # A non-negative column with zeros is judged on log(x + its smallest positive value).
    shift = float(bulk[bulk > 0].min()) if bulk.min() == 0 else 0.0
    scale = "log" if _log_is_more_symmetric(bulk + shift) else "linear"
    t = np.log(bulk + shift) if scale == "log" else bulk.astype(np.float64, copy=False)
    low_q, mid, high_q = (float(q) for q in np.quantile(t, _TAIL_QUANTILES))
    above, below = high_q - mid, mid - low_q
    if above <= 0 and below <= 0:  # the bulk is one value but for a few
        above = below = (float(t.max()) - float(t.min())) / 2
    above, below = above if above > 0 else below, below if below > 0 else above
    low_t, high_t = low_q - threshold * below, high_q + threshold * above
    if scale == "log":
        # Below a skewed positive column only values under zero are errors: small ones are
        # its bulk thinning out, and a stray zero is a sentinel's business.
        low, high = 0.0, float(np.exp(high_t)) - shift
    else:
        low, high = low_t, high_t
    kept = [v for v in (point_mass,) if v is not None]
    if frequent is not None and frequent.size:
        kept += [float(frequent.min()), float(frequent.max())]
    if kept:  # values the column often takes are never outliers
        low, high = min(low, *kept), max(high, *kept)
    return Fences(
        low, high, low_q, high_q, above, "auto", threshold,
        lower_unit=below, scale=scale, shift=shift,
    )  # fmt: skip


def auto_fences(
    sample: np.ndarray, values: np.ndarray, counts: np.ndarray, threshold: float
) -> Fences | None:
    """:func:`shape_aware_fences` of a column, its point mass and frequent values found.

    Parameters
    ----------
    sample : numpy.ndarray
        The column's finite values, or a uniform sample of them.
    values, counts : numpy.ndarray
        Its distinct finite values and how many rows hold each (exact, or from the sample).
    threshold : float

    Returns
    -------
    Fences or None
    """
    if not counts.size:
        return None
    shares = counts / counts.sum()
    top = int(np.argmax(shares))
    mass = float(values[top]) if shares[top] >= POINT_MASS_SHARE else None
    frequent = values[(shares >= FREQUENT_SHARE) & (counts >= _FREQUENT_COUNT)]
    return shape_aware_fences(sample, threshold, frequent=frequent, point_mass=mass)


def _bowley(t: np.ndarray) -> float:
    """Bowley's quantile skewness: 0 for a symmetric bulk, towards 1 for a long right tail."""
    q10, q50, q90 = np.quantile(t, [0.1, 0.5, 0.9])
    width = q90 - q10
    return float((q90 + q10 - 2 * q50) / width) if width > 0 else 0.0


def _log_is_more_symmetric(bulk: np.ndarray) -> bool:
    if bulk.min() <= 0:
        return False
    raw = _bowley(bulk)
    return raw > _SKEWED and abs(_bowley(np.log(bulk))) < raw


def outlier_fences(
    profile: Profile,
    options: ValidationOptions,
    overrides: Mapping[str, tuple[str, float]] | None = None,
    sentinels: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Fences]:
    """Fences of every numeric column where outliers are defined.

    Columns that are constant, have zero spread, or are the label get none;
    none at all when the ``outlier`` check is switched off.

    Parameters
    ----------
    profile : Profile
        The merged profile of the whole dataset.
    options : ValidationOptions
        The run's method and threshold.
    overrides : mapping, optional
        Column -> its own ``(method, threshold)`` (a schema's ``outliers`` check).
    sentinels : mapping, optional
        Column -> its sentinel values, left out of the ``auto`` method's spread.

    Returns
    -------
    dict of str to Fences
    """
    if options.severity("outlier") is None:
        return {}
    overrides = overrides or {}
    fences: dict[str, Fences] = {}
    for name, column in profile.columns.items():
        if column.kind != "numeric" or name == options.label:
            continue
        method, k = overrides.get(name, (options.outlier_method, options.outlier_k))
        fence = _column_fences(profile, name, method, k, (sentinels or {}).get(name, ()))
        if fence is not None:
            fences[name] = fence
    return fences


def _column_fences(
    profile: Profile, name: str, method: str, k: float, sentinels: Sequence[float]
) -> Fences | None:
    if method == "none":
        return None
    x = profile.sample_values(name)
    if method == "auto":
        values, counts = profile.value_counts(name)
        if len(sentinels):
            keep = ~np.isin(values, sentinels)
            values, counts = values[keep], counts[keep]
            x = x[~np.isin(x, sentinels)]
        return auto_fences(x, values, counts, k)
    st = profile.stats(name)
    if st.q25 is None or st.q75 is None or st.median is None:
        return None
    mad = float(np.median(np.abs(x - st.median))) if method == "mad" else 0.0
    return fences_from(method, k, q25=st.q25, q75=st.q75, median=st.median, mad=mad)
