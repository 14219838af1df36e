"""Write a first schema from the data itself, by streaming it once.

What :func:`infer_schema` writes for each column, from the merged profile:

- ``dtype``: the pandas dtype batchguard checks against (what pandas gives the
  column when a record batch is converted).
- ``nullable: true`` only when the column holds nulls; then also
  ``max_null_fraction`` at twice the observed share plus one percentage
  point (capped at 1).
- numbers (not the label): ``in_range`` over the observed finite minimum and
  maximum widened by :data:`MARGIN` (10%) of the observed range on each side
  (10% of the value itself when the range is zero), rounded outward to a
  round number; a column that is never negative (or never positive) keeps
  that sign. Integer columns get integer bounds.
- floating columns: ``is_finite``, *also when the data holds NaN or inf*.
  Inference does not bless broken values: such a dataset fails its own
  schema (as ``nan``/``inf`` findings) until the values are fixed, and
  :attr:`Schema.notes` names those columns.
- strings with at most :data:`MAX_CATEGORIES` distinct values, and the label
  when it has at most that many classes: ``isin`` with the observed values.
- every column with at least two distinct values: ``not_constant``. A
  constant column gets none, so batchguard's built-in ``constant`` check
  still reports it.
- the dataset block: the label (when given) and the gate and outlier settings
  in force, so they are visible and versioned with the schema.

Date/time columns get their dtype only: a range over timestamps is rarely
what a training-data contract means.
"""

from __future__ import annotations

import math
import os
from typing import Any

from ..options import ValidationOptions
from ..profiling import Profile, profile
from ..source import Source, open_source
from . import registered
from .model import Schema
from .spec import DATASET_KEY

__all__ = ["MARGIN", "MAX_CATEGORIES", "infer_schema", "widen"]

#: share of the observed range added below the minimum and above the maximum
MARGIN = 0.10
#: string columns (and labels) with at most this many distinct values get ``isin``
MAX_CATEGORIES = 50

_SETTINGS = ("min_class_share", "near_constant_threshold", "outlier_method", "outlier_threshold")


def infer_schema(
    source: str | os.PathLike[str] | Source,
    *,
    label: str | None = None,
    settings: dict[str, Any] | None = None,
    batch_size: int | None = None,
) -> Schema:
    """Infer a schema from a dataset (one streaming pass; nothing is held whole).

    Parameters
    ----------
    source : str, os.PathLike or Source
        The dataset.
    label : str, optional
        The label column: written to the dataset block, checked with ``isin``
        of its classes, never given a range.
    settings : dict, optional
        Further dataset settings to record (e.g. ``{"max_bad_rows": 0.01}``);
        the defaults of the outlier and class-share settings are written too.
    batch_size : int, optional
        Rows per record batch (default: a path at the default size, a Source at its own).

    Returns
    -------
    Schema
        ``notes`` names columns that hold NaN/inf (they fail ``is_finite``)
        and constant columns.

    Raises
    ------
    SourceError
        The dataset cannot be read.
    UsageError
        ``label`` is not a column.

    Examples
    --------
    >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.parquet")
    >>> pq.write_table(pa.table({"x": [1.0, 2.0, 5.0], "c": ["a", "b", "a"]}), path)
    >>> schema = infer_schema(path)
    >>> schema.pandera.columns["x"].checks
    [<Check in_range: in_range(0.6, 5.4)>, <Check is_finite>, <Check not_constant>]
    """
    from ..errors import UsageError

    registered.register()
    src = open_source(source, batch_size=batch_size)
    if label is not None and label not in src.columns:
        raise UsageError(
            f"--label {label!r}: {src.path} has no such column; columns are "
            f"{', '.join(src.columns)}"
        )
    prof = profile(src, batch_size=batch_size)
    block = _dataset_block(label, settings or {})
    columns = {name: _column(prof, name, name == label) for name in prof.columns}
    import pandera.pandas as pa

    schema = Schema(pa.DataFrameSchema(columns, metadata={DATASET_KEY: block}))
    schema.notes = _notes(prof)
    return schema


def _dataset_block(label: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    defaults = ValidationOptions()
    block: dict[str, Any] = {} if label is None else {"label": label}
    block.update({k: getattr(defaults, k) for k in _SETTINGS if getattr(defaults, k) is not None})
    block.update({k: v for k, v in settings.items() if v is not None})
    return block


def _column(prof: Profile, name: str, is_label: bool) -> Any:
    import pandera.pandas as pa

    from .plan import pandas_dtype_name

    c = prof.columns[name]
    st = prof.stats(name)
    field = prof.schema.field(name)
    checks = []
    if c.kind == "numeric" and not is_label and c.finite:
        integer = _is_integer(field)
        low, high = _within_type(*widen(c.min, c.max, integer=integer), field)
        checks.append(pa.Check.in_range(low, high))
    if c.kind == "numeric" and _is_float(field):
        checks.append(pa.Check.is_finite())
    if (c.kind == "categorical" or is_label) and c.values is not None:
        if 0 < len(c.values) <= MAX_CATEGORIES:
            checks.append(pa.Check.isin(sorted(c.values, key=_sort_key)))
    if c.kind != "other" and (not st.distinct_exact or st.distinct >= 2):
        checks.append(pa.Check.not_constant())
    nullable = c.null > 0
    if nullable:
        share = c.null / prof.rows
        checks.append(pa.Check.max_null_fraction(_round_up(min(1.0, 2 * share + 0.01), 3)))
    return pa.Column(pandas_dtype_name(field), checks, nullable=nullable)


def widen(low: float, high: float, *, integer: bool = False) -> tuple[float, float]:
    """The observed range ``[low, high]`` widened by :data:`MARGIN` and rounded outward.

    The padding is 10% of ``high - low`` on each side (10% of the larger
    magnitude when the range is zero, and 1 when both are zero); bounds are
    rounded outward to the padding's order of magnitude, and a range that does
    not cross zero does not come to cross it.

    Examples
    --------
    >>> widen(12000.0, 180000.0)
    (0.0, 200000.0)
    >>> widen(21, 75, integer=True)
    (15, 81)
    >>> widen(-3.0, -1.0)
    (-3.2, -0.8)
    """
    low, high = float(low), float(high)  # Python floats overflow to inf without a warning
    span = high - low
    if not math.isfinite(span):  # wider than float64 holds (-1e308 to 1e308)
        span = max(abs(low), abs(high))
    pad = MARGIN * (span if span > 0 else max(abs(low), abs(high)) or 1.0)
    step = 10.0 ** math.floor(math.log10(pad))
    # The small tolerance keeps 0.6 / 0.1 = 5.999... from rounding a whole step further.
    # A bound that padding would carry past float64's limits stays where the data ends.
    lo_edge, hi_edge = low - pad, high + pad
    lo = math.floor(lo_edge / step + 1e-9) * step if math.isfinite(lo_edge) else low
    hi = math.ceil(hi_edge / step - 1e-9) * step if math.isfinite(hi_edge) else high
    if low >= 0:
        lo = max(lo, 0.0)
    if high <= 0:
        hi = min(hi, 0.0)
    if integer:
        return int(math.floor(lo)), int(math.ceil(hi))
    # _clean's rounding could move a bound at the data's end inside it
    return (_clean(lo) if lo != low else lo), (_clean(hi) if hi != high else hi)


def _clean(x: float) -> float:
    """Drop binary noise such as 0.30000000000000004 from a rounded bound."""
    return float(f"{x:.12g}")


def _round_up(x: float, digits: int) -> float:
    scale = 10.0**digits
    return min(1.0, math.ceil(x * scale - 1e-9) / scale)


def _is_integer(f: Any) -> bool:
    import pyarrow as pa

    typ = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
    return bool(pa.types.is_integer(typ))


def _within_type(low: float, high: float, f: Any) -> tuple[float, float]:
    """Bounds no wider than the column's type holds.

    Widening a bound near a type's limit (``INT64_MAX`` or ``FLT_MAX`` placeholders)
    would carry it past them, where comparing the column with it overflows.
    """
    import numpy as np
    import pyarrow as pa

    typ = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
    if pa.types.is_integer(typ):
        info = np.iinfo(typ.to_pandas_dtype())
        return max(low, int(info.min)), min(high, int(info.max))
    if pa.types.is_float16(typ) or pa.types.is_float32(typ):
        limit = float(np.finfo(typ.to_pandas_dtype()).max)
        return max(low, -limit), min(high, limit)
    return low, high


def _is_float(f: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_floating(f.type))


def _sort_key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)


def _notes(prof: Profile) -> list[str]:
    broken = [n for n, c in prof.columns.items() if c.nan or c.posinf or c.neginf]
    constant = [
        n
        for n in prof.columns
        if prof.columns[n].kind != "other"
        and prof.stats(n).distinct_exact
        and prof.stats(n).distinct <= 1
    ]
    notes = []
    if broken:
        notes.append(
            f"is_finite kept on {', '.join(broken)}, which hold NaN/inf: the data fails this "
            "schema until they are fixed"
        )
    if constant:
        notes.append(f"constant, so no not_constant check: {', '.join(constant)}")
    return notes
