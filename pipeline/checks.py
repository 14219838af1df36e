"""Checks: turn a profile into column findings, and batches into row failures.

Column checks (``constant``, ``near_constant``, ``zero_iqr``,
``class_imbalance``) read only the merged :class:`~pipeline.profiling.Profile`.
Row rules (``nan``, ``inf``, ``null``, ``outlier``, and the schema's checks)
are pure functions of one record batch and a few numbers fixed after the
profile pass, so their result cannot depend on how the data was batched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .findings import Finding
from .options import ValidationOptions
from .profiling import Profile, _to_numpy, _values_view
from .source import ROW_ID

#: default severity of each check; ``ValidationOptions.severities`` overrides it
DEFAULT_SEVERITY = {
    "nan": "error",
    "inf": "error",
    "null": "error",
    "schema": "error",
    "missing_column": "error",
    "dtype": "error",
    "constant": "error",
    "near_constant": "warning",
    "zero_iqr": "warning",
    "outlier": "warning",
    "class_imbalance": "warning",
    "bad_rows": "error",
    "empty": "error",
}


def severity(check: str, options: ValidationOptions) -> str:
    """The severity ``check`` has under ``options`` ("error", "warning" or "off")."""
    return options.severities.get(check, DEFAULT_SEVERITY.get(check, "error"))


# -- column checks -----------------------------------------------------------------------------
def column_findings(profile: Profile, options: ValidationOptions) -> list[Finding]:
    """Dataset-level findings on every column of ``profile``.

    Parameters
    ----------
    profile : Profile
    options : ValidationOptions

    Returns
    -------
    list of Finding
        In column order; checks whose severity is "off" are left out.
    """
    if profile.rows == 0:
        empty = Finding(
            "empty",
            None,
            severity("empty", options),  # type: ignore[arg-type]  # "off" is filtered below
            0,
            0.0,
            "the dataset has no rows; check the export or the path",
        )
        return [empty] if empty.severity != "off" else []
    found: list[Finding] = []
    for name, column in profile.columns.items():
        if column.kind == "other":
            continue
        st = profile.stats(name)
        shown = _show(st.top_value)
        if st.distinct_exact and st.distinct <= 1:
            what = f"only the value {shown}" if st.distinct else "no values (all null or NaN)"
            found.append(_column_finding(
                "constant", name, options, 1.0,
                f"column '{name}' holds {what} in {profile.rows:,} rows; it carries no "
                "information: drop it or fix the upstream join/export",
            ))  # fmt: skip
            continue
        if (
            st.top_value_fraction is not None
            and st.top_value_fraction >= options.near_constant_threshold
        ):
            estimated = "" if st.distinct_exact else " (estimated from a sample)"
            found.append(_column_finding(
                "near_constant", name, options, st.top_value_fraction,
                f"column '{name}' is {shown} in {st.top_value_fraction:.2%} of its values"
                f"{estimated}, at or above the near-constant threshold "
                f"{options.near_constant_threshold:.2%}; check for a stuck sensor or a default "
                "fill value, or drop the column",
            ))  # fmt: skip
            continue
        if column.kind == "numeric" and name != options.label and st.q25 == st.q75 is not None:
            found.append(_column_finding(
                "zero_iqr", name, options, 0.0,
                f"column '{name}' has q25 == q75 == {st.q25:g}: robust scaling divides by "
                "zero there, so the scaler uses scale 1; consider dropping or binarising it",
            ))  # fmt: skip
    if options.label is not None:
        found.extend(_label_findings(profile, options))
    return [f for f in found if f.severity != "off"]


def _label_findings(profile: Profile, options: ValidationOptions) -> list[Finding]:
    label = options.label
    assert label is not None
    counts = profile.label_counts(label)
    if not counts or len(counts) < 2:
        return []
    total = sum(counts.values())
    rare, n = min(counts.items(), key=lambda kv: (kv[1], str(kv[0])))
    share = n / total
    if share >= options.min_class_share:
        return []
    return [_column_finding(
        "class_imbalance", label, options, share,
        f"label '{label}' class {_show(rare)} holds {n:,} of {total:,} rows ({share:.2%}), "
        f"below the minimum class share {options.min_class_share:.2%}; use a stratified "
        "sampler (make_loader does) or class weights",
    )]  # fmt: skip


def _column_finding(
    check: str, column: str, options: ValidationOptions, value: float, message: str
) -> Finding:
    return Finding(check, column, severity(check, options), 1, float(value), message)  # type: ignore[arg-type]


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


# -- row rules ---------------------------------------------------------------------------------
@dataclass
class RowFailure:
    """Rows of one batch that failed one check on one column.

    ``mask`` marks the failing rows; ``observed``, ``score`` hold one entry per
    failing row (in row order) for the quarantine record.
    """

    check: str
    column: str | None
    mask: np.ndarray
    observed: pa.Array | None = None
    threshold: str | None = None
    score: np.ndarray | None = None
    schema_check: str | None = None


RowRule = Callable[[pa.RecordBatch], list[RowFailure]]


@dataclass(frozen=True)
class Fences:
    """Outlier bounds of one column: a value outside ``[low, high]`` is an outlier.

    The score of a value is its distance beyond the anchors in units of ``unit``:
    ``max(x - upper_anchor, lower_anchor - x) / unit``.
    """

    low: float
    high: float
    lower_anchor: float
    upper_anchor: float
    unit: float

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x - self.upper_anchor, self.lower_anchor - x) / self.unit

    def describe(self) -> str:
        return f"[{self.low:.6g}, {self.high:.6g}]"


def outlier_fences(
    profile: Profile,
    options: ValidationOptions,
    overrides: Mapping[str, tuple[str, float]] | None = None,
) -> dict[str, Fences]:
    """Fences of every numeric column where outliers are defined.

    Columns that are constant, have zero spread, or are the label get none.
    ``overrides`` maps a column to its own ``(method, threshold)`` (a schema's
    ``outliers`` check); the other columns use ``options``.
    """
    if severity("outlier", options) == "off":
        return {}
    overrides = overrides or {}
    fences: dict[str, Fences] = {}
    for name, column in profile.columns.items():
        if column.kind != "numeric" or name == options.label:
            continue
        method, k = overrides.get(name, (options.outlier_method, options.outlier_threshold))
        fence = _fence(profile, name, method, k)
        if fence is not None:
            fences[name] = fence
    return fences


def _fence(profile: Profile, name: str, method: str, k: float) -> Fences | None:
    if method == "none":
        return None
    st = profile.stats(name)
    if st.q25 is None or st.q75 is None or st.median is None:
        return None
    if method == "iqr":
        iqr = st.q75 - st.q25
        return Fences(st.q25 - k * iqr, st.q75 + k * iqr, st.q25, st.q75, iqr) if iqr > 0 else None
    x = profile.sample_values(name)  # mad
    mad = float(np.median(np.abs(x - st.median))) * 1.4826
    if mad <= 0:
        return None
    m = st.median
    return Fences(m - k * mad, m + k * mad, m, m, mad)


def non_finite_rule(columns: Sequence[str]) -> RowRule:
    """NaN and +/-inf in the given floating columns."""

    def rule(batch: pa.RecordBatch) -> list[RowFailure]:
        out: list[RowFailure] = []
        present = set(batch.schema.names)  # pass 2 may read only some columns
        for name in columns:
            if name not in present:
                continue
            arr = batch.column(name)
            x = _float_values(arr)
            if x is None:
                continue
            with np.errstate(invalid="ignore", over="ignore"):
                if np.isfinite(np.add.reduce(x, dtype=np.float64)):
                    continue
            nan = np.isnan(x)
            inf = np.isinf(x)
            for check, mask in (("nan", nan), ("inf", inf)):
                if mask.any():
                    out.append(RowFailure(check, name, mask, pa.array(x[mask]), "finite"))
        return out

    return rule


def null_rule(columns: Sequence[str]) -> RowRule:
    """Nulls in columns that must not hold any."""

    def rule(batch: pa.RecordBatch) -> list[RowFailure]:
        out: list[RowFailure] = []
        for name in columns:
            arr = batch.column(name)
            if arr.null_count:
                mask = _bool_numpy(pc.is_null(arr))
                out.append(RowFailure("null", name, mask, None, "non-null"))
        return out

    return rule


def outlier_rule(fences: dict[str, Fences], kinds: dict[str, str]) -> RowRule:
    """Values outside each column's fences."""

    def rule(batch: pa.RecordBatch) -> list[RowFailure]:
        out: list[RowFailure] = []
        present = set(batch.schema.names)  # pass 2 may read only some columns
        for name, fence in fences.items():
            if name not in present:
                continue
            arr = batch.column(name)
            x = (
                _to_numpy(pc.fill_null(_values_view(arr, kinds[name]), 0))
                if arr.null_count
                else _to_numpy(_values_view(arr, kinds[name]))
            )
            # NaN compares false on both sides, so only finite values and inf can trip;
            # inf is reported as `inf`, not as an outlier.
            with np.errstate(invalid="ignore"):
                mask = ((x < fence.low) | (x > fence.high)) & np.isfinite(x)
            if arr.null_count:
                mask &= ~_bool_numpy(pc.is_null(arr))
            if mask.any():
                vals = x[mask].astype(np.float64)
                out.append(
                    RowFailure(
                        "outlier", name, mask, pa.array(vals), fence.describe(), fence.score(vals)
                    )
                )
        return out

    return rule


def _float_values(arr: pa.Array) -> np.ndarray | None:
    if pa.types.is_dictionary(arr.type) or not pa.types.is_floating(arr.type):
        return None
    if arr.null_count:
        # Nulls are not NaN: fill them with 0 so positions line up and they do not count.
        arr = pc.fill_null(arr, 0)
    return arr.to_numpy(zero_copy_only=False)


def _bool_numpy(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def row_ids(batch: pa.RecordBatch) -> np.ndarray:
    """The batch's ``_row_id`` values as int64 numpy."""
    return batch.column(ROW_ID).to_numpy(zero_copy_only=False)
