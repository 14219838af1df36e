"""batchguard's statistical checks, registered with pandera.

Registering them under these names makes a schema file that uses them
loadable by pandera itself (``DataFrameSchema.from_yaml``,
``pandera.io.pandas_io.from_yaml``) once :mod:`pipeline` has been imported,
and lets pandera run them on an in-memory DataFrame:

============================  ==========================================================
check                         a column passes when
============================  ==========================================================
``is_finite``                 every value is finite (NaN and +/-inf fail)
``max_nan_fraction(f)``       at most a share ``f`` of its values are NaN
``max_null_fraction(f)``      at most a share ``f`` of its values are null
``not_constant``              it holds at least two distinct finite, non-null values
``max_top_value_fraction(f)`` its most frequent value covers at most a share ``f`` of the
                              finite, non-null values
``outliers(method, k)``       no finite value lies beyond the robust fences (``iqr``:
                              ``k`` IQRs beyond the quartiles; ``mad``: robust z above ``k``)
============================  ==========================================================

pandera drops missing values before a check sees them unless the check says
``ignore_na=False``; these checks need to see NaN and nulls, so they default
to ``ignore_na=False`` (an explicit ``ignore_na`` still wins). In pandas a
float column cannot tell a null from NaN, so under pandera both count as NaN
*and* as null; batchguard, reading Arrow data, keeps them apart.

batchguard itself does not call these functions on a dataset: it evaluates
the same rules on the merged streaming profile (exact over the whole
dataset, whatever the batch size); see :mod:`pipeline.schema.plan`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "STATISTICAL_CHECKS",
    "fences",
    "is_finite",
    "max_nan_fraction",
    "max_null_fraction",
    "max_top_value_fraction",
    "not_constant",
    "outliers",
    "register",
]

#: check name -> its statistics (argument names), in order
STATISTICAL_CHECKS: dict[str, tuple[str, ...]] = {
    "is_finite": (),
    "max_nan_fraction": ("max_fraction",),
    "max_null_fraction": ("max_fraction",),
    "not_constant": (),
    "max_top_value_fraction": ("max_fraction",),
    "outliers": ("method", "threshold"),
}


def _is_number_dtype(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    )


def _floats(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The values as float64 and a mask of pandas NA (nulls of nullable dtypes, not NaN)."""
    if isinstance(series.dtype, np.dtype):
        # A numpy float column has no separate null: NaN is the only missing value.
        return series.to_numpy(dtype=np.float64), np.zeros(len(series), dtype=bool)
    na = series.isna().to_numpy(dtype=bool)
    return series.to_numpy(dtype=np.float64, na_value=0.0), na


def _present(series: pd.Series) -> pd.Series:
    """Non-null values, and for numbers only the finite ones (what the profile counts)."""
    present = series.dropna()
    if _is_number_dtype(present):
        x, _ = _floats(present)
        present = present[np.isfinite(x)]
    return present


def is_finite(series: pd.Series) -> pd.Series:
    """True for each finite value; non-numeric columns always pass."""
    if not _is_number_dtype(series):
        return pd.Series(True, index=series.index)
    x, na = _floats(series)
    with np.errstate(invalid="ignore"):
        return pd.Series(np.isfinite(x) | na, index=series.index)


def max_nan_fraction(series: pd.Series, *, max_fraction: float) -> bool:
    """At most ``max_fraction`` of the values are NaN."""
    if not len(series) or not _is_number_dtype(series):
        return True
    x, na = _floats(series)
    return bool((np.isnan(x) & ~na).sum() <= max_fraction * len(series))


def max_null_fraction(series: pd.Series, *, max_fraction: float) -> bool:
    """At most ``max_fraction`` of the values are null (in pandas: NA, None or NaN)."""
    if not len(series):
        return True
    return bool(series.isna().sum() <= max_fraction * len(series))


def not_constant(series: pd.Series) -> bool:
    """At least two distinct finite, non-null values."""
    return bool(_present(series).nunique() > 1)


def max_top_value_fraction(series: pd.Series, *, max_fraction: float) -> bool:
    """The most frequent finite, non-null value covers at most ``max_fraction`` of them."""
    present = _present(series)
    if not len(present):
        return True
    return bool(present.value_counts().iloc[0] <= max_fraction * len(present))


def outliers(series: pd.Series, *, method: str, threshold: float) -> pd.Series:
    """True for each value inside the robust fences computed from this column.

    Non-finite values pass (``is_finite`` covers them); so do non-numeric columns.
    """
    ok = pd.Series(True, index=series.index)
    if method == "none" or not _is_number_dtype(series):
        return ok
    x, na = _floats(series)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(x) & ~na
    values = x[finite]
    if not values.size:
        return ok
    low, high = fences(values, method, threshold)
    if low is None or high is None:
        return ok
    inside = (x >= low) & (x <= high)
    return pd.Series(inside | ~finite, index=series.index)


def fences(values: np.ndarray, method: str, threshold: float) -> tuple[float | None, float | None]:
    """Robust outlier bounds of finite ``values`` (None when the spread is zero).

    The same rules as a validation run's (:mod:`pipeline.fences`), computed on these values.
    """
    from ..fences import auto_fences, fences_from

    if method == "auto":
        fence = auto_fences(values, *np.unique(values, return_counts=True), threshold)
    else:
        q25, median, q75 = (float(v) for v in np.quantile(values, [0.25, 0.5, 0.75]))
        mad = float(np.median(np.abs(values - median)))
        fence = fences_from(method, threshold, q25=q25, q75=q75, median=median, mad=mad)
    return (None, None) if fence is None else (fence.low, fence.high)


_FUNCTIONS = {
    "is_finite": is_finite,
    "max_nan_fraction": max_nan_fraction,
    "max_null_fraction": max_null_fraction,
    "not_constant": not_constant,
    "max_top_value_fraction": max_top_value_fraction,
    "outliers": outliers,
}


def register() -> None:
    """Register the checks with pandera (idempotent).

    :mod:`pipeline` calls this as soon as pandera is imported, so users never
    need to; calling it again does nothing.
    """
    from pandera.api.checks import Check
    from pandera.api.extensions import register_check_method

    for name, fn in _FUNCTIONS.items():
        if name in Check.REGISTERED_CUSTOM_CHECKS:
            continue
        register_check_method(
            fn, statistics=list(STATISTICAL_CHECKS[name]), supported_types=pd.Series
        )
        # pandera hides NaN and nulls from a check unless ignore_na=False, and these
        # checks exist to see them: make that their default.
        Check.REGISTERED_CUSTOM_CHECKS[name] = _seeing_na(Check.REGISTERED_CUSTOM_CHECKS[name])


def _seeing_na(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with ``ignore_na=False`` unless the caller says otherwise."""

    def make_check(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("ignore_na", False)
        return method(*args, **kwargs)

    return make_check
