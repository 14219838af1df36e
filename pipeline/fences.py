"""Outlier fences: the bounds beyond which a value is an outlier, fixed once per run.

A run decides one :class:`Fences` per numeric column from the merged profile
(:func:`outlier_fences`), with the run's method and threshold or a schema's
per-column ``outliers`` override. The row rule applies them, the report
carries them (HTML histograms, JUnit cases) and the training-time guard turns
them into ``out_of_range`` bounds, so all of them use the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .options import ValidationOptions
    from .profiling import Profile

__all__ = ["MAD_TO_SD", "Fences", "fences_from", "outlier_fences"]

#: a normal distribution's standard deviation is 1.4826 times its median absolute deviation
MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class Fences:
    """Outlier bounds of one column: a value outside ``[low, high]`` is an outlier.

    The score of a value is its distance beyond the anchors in units of ``unit``:
    ``max(x - upper_anchor, lower_anchor - x) / unit``.

    Parameters
    ----------
    low, high : float
        The fences.
    lower_anchor, upper_anchor : float
        Where the distance is measured from (the quartiles for ``iqr``, the
        median for ``mad``).
    unit : float
        The spread one unit of score stands for (the IQR, or 1.4826 MAD).
    method : {"iqr", "mad"}
        The rule that set them.
    threshold : float
        Units of spread beyond the anchors at which the fences stand.
    """

    low: float
    high: float
    lower_anchor: float
    upper_anchor: float
    unit: float
    method: str = "iqr"
    threshold: float = 5.0

    def score(self, x: np.ndarray) -> np.ndarray:
        """Each value's distance beyond the anchors, in units of spread."""
        return np.maximum(x - self.upper_anchor, self.lower_anchor - x) / self.unit

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


def outlier_fences(
    profile: Profile,
    options: ValidationOptions,
    overrides: Mapping[str, tuple[str, float]] | None = None,
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
        method, k = overrides.get(name, (options.outlier_method, options.outlier_threshold))
        fence = _column_fences(profile, name, method, k)
        if fence is not None:
            fences[name] = fence
    return fences


def _column_fences(profile: Profile, name: str, method: str, k: float) -> Fences | None:
    if method == "none":
        return None
    st = profile.stats(name)
    if st.q25 is None or st.q75 is None or st.median is None:
        return None
    mad = 0.0
    if method == "mad":
        mad = float(np.median(np.abs(profile.sample_values(name) - st.median)))
    return fences_from(method, k, q25=st.q25, q75=st.q75, median=st.median, mad=mad)
