"""The joint row score: how unusual a row is as a combination of its numeric columns.

Each numeric column is put on the scale where its bulk is roughly symmetric
(the log scale that its :class:`~pipeline.fences.Fences` chose, if any, and if
its central half leans right too: see :func:`_leans_right`) and standardised
by its median and a robust spread. On those values a robust location and
scatter are fitted to (at most :data:`FIT_ROWS` rows of) the
profile's uniform row sample: a deterministic minimum-covariance-determinant
search (concentration steps from the rows nearest the coordinatewise median,
then one reweighting step), whose variance in each principal direction is
raised, where it is smaller, to that of a Huber M-estimate of scatter (full
weight within the chi-square region of the same share as the MCD's subset). The
MCD alone collapses onto the majority value of discrete and zero-heavy columns
(a binary column's minority rows then all look far); the M-estimate does not
collapse, and the floor keeps the MCD's resistance to masking elsewhere.

The distance of a row is its robust Mahalanobis distance ``d`` from that
centre; rows far from the bulk in any direction are far, including those whose
every value is ordinary on its own (a tall person of low weight). One ellipse
is the wrong model, though, where the bulk is several clusters (the rows of
several classes): it is wide, and a small, tight group of rows a little out on
many columns at once sits inside it. So the default score (``combined``) adds
the negative log-likelihoods of two Cauchy models of the bulk, a product of
experts: ``(p + 1) / 2 * log(1 + d**2)``, the multivariate Cauchy in the robust
scatter of the ``p`` columns, and ``sum(log(1 + z**2))``, each standardised
column on its own (:func:`marginal_term`). Both have heavy tails, so neither
lets one far value drown the other. ``joint_score="distance"`` takes ``log d``
alone. The score is that statistic in robust standard deviations (1.4826 MAD)
beyond the fitting rows' median: above :data:`JOINT_THRESHOLD` a row is a joint
outlier. Measured on 23 healthy public tables and 12 with known outliers
(``benchmarks/detection.py``).

The model is fixed once the profile is merged and each row's score depends
only on that row, so scores are the same at every batch size and on both
engines. Scoring a batch is a few vectorised passes and one small matrix
product per batch.

Missing values (null, NaN, inf) count as the column's median: the row is
judged on the columns it has.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .fences import Fences
from .options import JOINT_SCORES
from .profiling import Profile, to_numpy, values_view
from .source import ROW_ID

__all__ = [
    "FIT_ROWS",
    "JOINT_THRESHOLD",
    "MAX_CODE_VALUES",
    "MAX_JOINT_COLUMNS",
    "JointModel",
    "JointSummary",
    "fit_joint",
    "joint_summary",
    "marginal_term",
]

#: score (robust standard deviations of the log distance beyond its median) above which
#: a row is a joint outlier
JOINT_THRESHOLD = 5.0
#: sample rows the model is fitted on at most (an evenly spaced subset of the sample)
FIT_ROWS = 10_000
#: numeric columns the joint score uses at most (the first ones, in column order)
MAX_JOINT_COLUMNS = 64
#: columns with at most this many distinct values are codes (flags, categories), judged on
#: their own by frequency, and left out of the joint score
MAX_CODE_VALUES = 5
#: quartile skewness above which a column's central half leans right (a lognormal's with
#: sigma 1 is 0.32; noise and a tail of outliers give a symmetric bulk a few hundredths)
_CENTRAL_SKEW = 0.1
#: share of the sample in the concentration steps' subset (the MCD's h / n)
_SUBSET_SHARE = 0.75
_MAX_STEPS = 30
#: least variance of a column in the fitted scatter, as a share of its robust variance
#: (the square of the spread that standardises it)
_COLUMN_FLOOR = 0.5
#: columns multiplied together before one log in :func:`marginal_term` (finite: see there)
_PRODUCT_COLUMNS = 32
#: rows BLAS computes in one block at most (16 doubles: an AVX-512 kernel's), see _row_product
_ROW_BLOCK = 16


def _row_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``, each row's result the same bits whatever rows ``a`` holds besides it.

    BLAS takes the rows left over after its blocks of rows (and a lone row) through
    other kernels, which round differently in the last bits, so a row's score would
    depend on where the batch boundaries fall (at ``--batch-size 13``, the 13th row of
    each batch). Zero rows pad ``a`` to whole blocks of :data:`_ROW_BLOCK`; the default
    batch sizes need no padding.
    """
    pad = -a.shape[0] % _ROW_BLOCK
    if not pad:
        return a @ b
    return (np.vstack([a, np.zeros((pad, a.shape[1]))]) @ b)[: a.shape[0]]


def marginal_term(z: np.ndarray) -> np.ndarray:
    """Per row, ``sum(log(1 + z**2))`` over its standardised values.

    The negative log-likelihood of independent Cauchy columns at their medians and
    robust spreads (up to a constant): high for a row far out on one column, or a
    little out on many at once.

    Computed as the log of products over groups of :data:`_PRODUCT_COLUMNS`
    columns, one log per row and group instead of one per value (six times
    faster): ``z`` is clipped at 1e4 (:meth:`JointModel.standardise`), so each
    factor ``1 + z**2`` is at most about 1e8 and a group's product at most 1e257.
    """
    factors = z * z
    factors += 1.0
    term = np.zeros(z.shape[0])
    for start in range(0, z.shape[1], _PRODUCT_COLUMNS):
        term += np.log(np.prod(factors[:, start : start + _PRODUCT_COLUMNS], axis=1))
    return term


@dataclass(frozen=True)
class JointModel:
    """A fitted joint row score.

    Parameters
    ----------
    columns : tuple of str
        The columns the score uses, in order.
    log : numpy.ndarray of bool
        Per column, whether its values are taken on a log scale: ``log(x + shift)``.
    shift, floor : numpy.ndarray
        Per log-scale column, what is added before the log, and the least value
        the sum is raised to (so values at or below ``-shift`` sit far below the bulk).
    center, spread : numpy.ndarray
        Per column, the median and robust spread that standardise it.
    location : numpy.ndarray
        The robust centre of the standardised rows.
    whitening : numpy.ndarray
        ``W`` with ``W @ W.T`` the inverse of the robust scatter: a row's squared
        distance is ``|(z - location) @ W|^2``.
    statistic_median, statistic_spread : float
        Median and robust spread of the fitting rows' :meth:`statistic`; the
        score is a row's statistic in those units beyond the median.
    threshold : float
        Scores above it are joint outliers.
    kind : {"combined", "distance"}
        The statistic (:data:`pipeline.options.JOINT_SCORES`).
    """

    columns: tuple[str, ...]
    log: np.ndarray
    shift: np.ndarray
    floor: np.ndarray
    center: np.ndarray
    spread: np.ndarray
    location: np.ndarray
    whitening: np.ndarray
    statistic_median: float
    statistic_spread: float
    threshold: float = JOINT_THRESHOLD
    kind: str = "combined"

    def standardise(self, table: pa.RecordBatch | pa.Table, kinds: dict[str, str]) -> np.ndarray:
        """The rows' standardised values, shape ``(rows, columns)``; missing values are 0."""
        z = np.empty((table.num_rows, len(self.columns)), dtype=np.float64)
        for j, name in enumerate(self.columns):
            z[:, j] = _column_values(table.column(name), kinds[name])
        with np.errstate(invalid="ignore", divide="ignore"):
            z += self.shift
            np.log(np.maximum(z, self.floor), out=z, where=self.log)
            z -= self.center
            z /= self.spread
        z[~np.isfinite(z)] = 0.0
        # Far is far: beyond 10^4 robust spreads the exact distance says nothing more, and
        # bounded values keep the scatter's arithmetic finite.
        np.clip(z, -1e4, 1e4, out=z)
        return z

    def _whitened(self, z: np.ndarray) -> np.ndarray:
        """``(z - location) @ whitening``, rounded the same whatever the number of rows."""
        return _row_product(z - self.location, self.whitening)

    def statistic(self, z: np.ndarray) -> np.ndarray:
        """What the score puts in robust units: the log distance, or two Cauchy NLLs.

        ``distance``: ``log d``, with ``d`` the robust distance. ``combined``: the
        negative log-likelihoods of two Cauchy models of the bulk added (a product
        of experts): ``(p + 1) / 2 * log(1 + d**2)``, the multivariate Cauchy in the
        robust scatter (``p`` columns), and :func:`marginal_term`, independent
        Cauchy columns.
        """
        w = self._whitened(z)
        squared = np.einsum("ij,ij->i", w, w)
        if self.kind == "distance":
            with np.errstate(divide="ignore"):
                return 0.5 * np.log(squared)
        return (len(self.columns) + 1) / 2 * np.log1p(squared) + marginal_term(z)

    def score(self, z: np.ndarray) -> np.ndarray:
        """The rows' scores: robust spreads of :meth:`statistic` beyond the fitting rows' median."""
        return (self.statistic(z) - self.statistic_median) / self.statistic_spread

    def top_column(self, z: np.ndarray) -> np.ndarray:
        """Per row, the index of the column that adds most to its squared distance."""
        w = self._whitened(z)
        contribution = (z - self.location) * _row_product(w, self.whitening.T)
        return np.argmax(contribution, axis=1)

    def columns_of(self, z: np.ndarray, score: np.ndarray) -> pa.Array:
        """Per row, the top column's name for rows above the threshold, else null."""
        out = np.full(score.shape[0], None, dtype=object)
        above = np.flatnonzero(score > self.threshold)
        if above.size:
            names = np.array(self.columns, dtype=object)
            out[above] = names[self.top_column(z[above])]
        return pa.array(out, pa.string())


@dataclass(frozen=True)
class JointSummary:
    """What the report shows of the joint score: its distribution and top rows on the sample.

    Parameters
    ----------
    threshold : float
        Scores above it are joint outliers.
    columns : tuple of str
        The columns the score uses.
    sampled : int
        Rows of the uniform row sample scored (every row when the dataset is that small).
    above : int
        Sampled rows scoring above the threshold that the quarantine tier keeps.
    edges, counts : list
        A histogram of the sampled rows' scores.
    top : list of dict
        The highest-scoring sampled rows the quarantine tier keeps,
        ``{"row_id", "score", "column"}``, highest first.
    first : list of int
        The first few row ids (in row order) of the sampled joint outliers.
    """

    threshold: float
    columns: tuple[str, ...]
    sampled: int
    above: int
    edges: list[float]
    counts: list[int]
    top: list[dict[str, Any]]
    first: list[int]


def joint_summary(
    model: JointModel,
    profile: Profile,
    quarantined: Callable[[pa.RecordBatch], np.ndarray] | None = None,
    top: int = 10,
) -> JointSummary:
    """Score the profile's row sample with ``model``: the report's view of the joint score.

    ``quarantined`` marks the rows of a batch the quarantine tier takes; they are
    not counted or shown as joint outliers (they are reported for their own reasons).
    """
    sample = profile.sample.table()
    kinds = {name: profile.columns[name].kind for name in model.columns}
    z = model.standardise(sample, kinds)
    score = model.score(z)
    kept = np.ones(sample.num_rows, dtype=bool)
    if quarantined is not None and sample.num_rows:
        kept = ~quarantined(sample.combine_chunks().to_batches()[0])
    finite = np.isfinite(score)
    counts, edges = (
        np.histogram(score[finite], bins=40) if finite.any() else (np.zeros(0), np.zeros(0))
    )
    order = np.argsort(-np.where(finite & kept, score, -np.inf), kind="stable")[:top]
    order = order[kept[order]]
    columns = model.columns_of(z[order], score[order]).to_pylist()
    ids = sample.column(ROW_ID).to_numpy()[order]
    rows = [
        {"row_id": int(i), "score": float(score[j]), "column": c}
        for i, j, c in zip(ids, order, columns, strict=True)
    ]
    above = (score > model.threshold) & kept
    first = sample.column(ROW_ID).to_numpy()[above][:5].tolist()  # the sample is in row order
    return JointSummary(
        model.threshold, model.columns, sample.num_rows, int(above.sum()),
        [float(e) for e in edges], [int(c) for c in counts], rows, first,
    )  # fmt: skip


def fit_joint(
    profile: Profile,
    columns: Sequence[str],
    fences: dict[str, Fences],
    threshold: float = JOINT_THRESHOLD,
    score: str = "combined",
) -> JointModel | None:
    """Fit the joint score on ``profile``'s row sample over ``columns``.

    Parameters
    ----------
    profile : Profile
        The merged profile.
    columns : sequence of str
        Numeric columns to use (the first :data:`MAX_JOINT_COLUMNS` with a spread).
    fences : dict of str to Fences
        The run's fences: a column judged on a log scale is taken on one here too.
    threshold : float
        Score above which a row is a joint outlier.
    score : {"combined", "distance"}, default "combined"
        Which :meth:`JointModel.statistic` the score puts in robust units.

    Returns
    -------
    JointModel or None
        ``None`` when fewer than two columns have a spread or the sample is too
        small for the search (at most one row per column, or fewer than 8 rows).

    Raises
    ------
    ValueError
        ``score`` is not one of :data:`pipeline.options.JOINT_SCORES`.
    """
    if score not in JOINT_SCORES:
        raise ValueError(f"score should be one of {', '.join(JOINT_SCORES)}, not {score!r}")
    sample = profile.sample.table()
    if sample.num_rows < 8:
        return None
    if sample.num_rows > FIT_ROWS:  # any value-blind subset of a uniform sample is uniform
        sample = sample.take(np.linspace(0, sample.num_rows - 1, FIT_ROWS).astype(np.int64))
    kinds = {name: profile.columns[name].kind for name in columns}
    chosen: list[str] = []
    log, shift, floor, center, spread = [], [], [], [], []
    for name in columns:
        x = _column_values(sample.column(name), kinds[name])
        fence = fences.get(name)
        logged = fence is not None and fence.scale == "log" and _leans_right(x + fence.shift)
        if fence is not None and logged:
            x = fence.transform(x)
        finite = x[np.isfinite(x)]
        s = _robust_spread(finite)
        if s > 0 and finite.size:
            chosen.append(name)
            log.append(logged)
            shift.append(fence.shift if fence is not None and logged else 0.0)
            floor.append(float(np.exp(fence.lower_anchor)) * 1e-12 if fence and logged else 0.0)
            center.append(float(np.median(finite)))
            spread.append(s)
        if len(chosen) == MAX_JOINT_COLUMNS:
            break
    p = len(chosen)
    if p < 2 or sample.num_rows <= 2 * p:
        return None
    model = JointModel(
        tuple(chosen),
        np.array(log, dtype=bool),
        np.array(shift, dtype=np.float64),
        np.array(floor, dtype=np.float64),
        np.array(center, dtype=np.float64),
        np.array(spread, dtype=np.float64),
        np.zeros(p),
        np.eye(p),
        0.0,
        1.0,
        threshold,
    )
    z = model.standardise(sample, kinds)
    # Small matrices: BLAS threads only contend with the read-ahead thread (and, on a
    # busy machine, with everyone else); one thread is several times faster here.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        location, whitening = _robust_fit(z)
    model = replace(model, location=location, whitening=whitening, kind=score)
    median, mad = _median_mad(model.statistic(z))
    return replace(model, statistic_median=median, statistic_spread=mad)


def _median_mad(x: np.ndarray) -> tuple[float, float]:
    """Median and robust spread (1.4826 MAD; 1 where that is 0) of the finite ``x``."""
    x = x[np.isfinite(x)]
    if not x.size:
        return 0.0, 1.0
    median = float(np.median(x))
    mad = float(np.median(np.abs(x - median))) * 1.4826
    return median, mad if mad > 0 else 1.0


def _column_values(arr: pa.ChunkedArray | pa.Array, kind: str) -> np.ndarray:
    """A column as float64 with NaN where a value is missing."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    view = values_view(arr, kind)
    if view.null_count:
        view = pc.fill_null(view.cast(pa.float64()), float("nan"))
    return to_numpy(view).astype(np.float64, copy=False)


def _leans_right(x: np.ndarray) -> bool:
    """Whether the central half of ``x`` is right-skewed too (quartile skewness above 0.1).

    The fences take a column on a log scale when its 10th-90th percentile range
    is right-skewed; a heavy tail of outliers alone can make it so (stackloss'
    ``stack.loss``: 4 of 21 rows). The joint score, which must see those rows
    far out, keeps such a column on its own scale unless its bulk leans right
    as well.
    """
    x = x[np.isfinite(x)]
    if x.size < 2:
        return False
    q1, q2, q3 = np.quantile(x, [0.25, 0.5, 0.75])
    return bool(q3 > q1 and (q3 + q1 - 2 * q2) / (q3 - q1) > _CENTRAL_SKEW)


def _robust_spread(x: np.ndarray) -> float:
    """A robust standard deviation: from the IQR, else the 1st-99th percentile range.

    Else from the whole range; 0 when none of the three is finite and positive.
    """
    if x.size < 2:
        return 0.0
    q01, q25, q75, q99 = np.quantile(x, [0.01, 0.25, 0.75, 0.99])
    for high, low, normal in ((q75, q25, 1.349), (q99, q01, 4.653), (x.max(), x.min(), 6.0)):
        with np.errstate(over="ignore"):
            width = high - low  # inf for a range wider than float64 holds (-1e308 to 1e308)
        if 0 < width < np.inf:
            return float(width / normal)
    return 0.0


def _robust_fit(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Location and whitening matrix of the rows ``z``: MCD, floored by a Huber M-estimate."""
    n, p = z.shape
    h = max(int(np.ceil(_SUBSET_SHARE * n)), p + 1)
    # Concentration steps from the rows nearest the coordinatewise median (z is centred on it).
    subset = np.argpartition(np.einsum("ij,ij->i", z, z), h - 1)[:h]
    for _ in range(_MAX_STEPS):
        location, scatter = _moments(z[subset])
        new = np.argpartition(_squared(z, location, scatter), h - 1)[:h]
        if np.array_equal(np.sort(new), np.sort(subset)):
            break
        subset = new
    # Reweight: refit on every row within the 97.5% chi-square region of the raw fit,
    # with the raw fit scaled so its median distance matches the chi-square median.
    d2 = _squared(z, location, scatter)
    d2 *= _chi2_quantile(0.5, p) / max(float(np.median(d2)), 1e-300)
    inliers = d2 <= _chi2_quantile(0.975, p)
    if inliers.sum() > p:
        location, scatter = _moments(z[inliers])
    # Floor each principal variance at the Huber M-estimate's variance in that direction.
    values, vectors = np.linalg.eigh(scatter)
    floor = np.einsum("ij,ik,kj->j", vectors, _huber_scatter(z), vectors)
    values = np.maximum(values, floor)
    # Floor each column's variance at a share of its own robust variance (1: the columns
    # are standardised by it), keeping the correlations: on a discrete or zero-heavy
    # column the core sits on a few values, and its variance there (and the Huber
    # estimate's) can be a small fraction of the column's, which lets one step off the
    # mode outweigh a row that is high on every column at once.
    scatter = (vectors * values) @ vectors.T
    variances = np.diag(scatter)
    raise_by = np.sqrt(np.maximum(_COLUMN_FLOOR, variances) / np.maximum(variances, 1e-300))
    values, vectors = np.linalg.eigh(scatter * raise_by[:, None] * raise_by[None, :])
    return location, vectors / np.sqrt(np.maximum(values, _ridge(values)))


def _huber_scatter(z: np.ndarray, steps: int = 20) -> np.ndarray:
    """A Huber-type M-estimate of scatter (weights min(1, q / d^2), q the 75% chi-square point).

    Full weight goes to the central share of a Gaussian core that the MCD's subset
    holds (:data:`_SUBSET_SHARE`). A lower ``q`` also raises the estimate's breakdown
    point (at most ``min(1/q, 1 - p/q)``, Maronna 1976): with the 90% point it is 13% for
    4 columns, and a cluster of outliers beyond that share (hbk: 14 of 75 rows) inflated
    the floor along it, and with it every principal direction that leans on it, until
    the outliers were no further out than the bulk's tail.
    """
    p = z.shape[1]
    q = _chi2_quantile(_SUBSET_SHARE, p)
    location = np.median(z, axis=0)
    scatter = np.cov(np.clip(z, -3.0, 3.0), rowvar=False).reshape(p, p)
    for _ in range(steps):
        d2 = _squared(z, location, scatter)
        w = np.minimum(1.0, q / np.maximum(d2, 1e-12))
        location = (w[:, None] * z).sum(axis=0) / w.sum()
        centred = (z - location) * np.sqrt(w)[:, None]
        scatter = centred.T @ centred / w.sum()
    return scatter


def _chi2_quantile(q: float, p: int) -> float:
    """The chi-square quantile (Wilson-Hilferty: within 1.3% for p >= 2, 0.1% for p >= 10).

    Only the fit's cut-offs need it, and importing scipy.stats for them costs a second.
    """
    a = 2.0 / (9.0 * p)
    return float(p * (1.0 - a + NormalDist().inv_cdf(q) * math.sqrt(a)) ** 3)


def _moments(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``rows``."""
    return rows.mean(axis=0), np.cov(rows, rowvar=False).reshape(rows.shape[1], rows.shape[1])


def _ridge(values: np.ndarray) -> float:
    """A tiny variance that keeps a flat direction finite."""
    return 1e-6 * max(float(np.mean(np.abs(values))), 1e-12)


def _squared(z: np.ndarray, location: np.ndarray, scatter: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances of the rows ``z`` (non-finite ones count as very far)."""
    values, vectors = np.linalg.eigh(scatter)
    w = (z - location) @ (vectors / np.sqrt(np.maximum(values, _ridge(values))))
    return np.nan_to_num(np.einsum("ij,ij->i", w, w), nan=np.inf)
