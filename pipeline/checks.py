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

from .fences import Fences, outlier_fences
from .findings import ROW_LEVEL, Finding, order_of
from .options import ValidationOptions
from .profiling import Profile, to_numpy, values_view
from .sentinels import Sentinel, find_sentinels
from .source import ROW_ID

__all__ = [
    "Fences",
    "RowFailure",
    "RowRule",
    "checks_run",
    "column_findings",
    "column_sentinels",
    "non_finite_rule",
    "null_rule",
    "outlier_fences",
    "outlier_rule",
    "row_ids",
    "sentinel_rule",
]


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
        level = options.severity("empty")
        if level is None:
            return []
        return [
            Finding(
                "empty",
                None,
                level,
                0,
                0.0,
                "the dataset has no rows; check the export or the path",
            )
        ]
    found: list[Finding | None] = []
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
        found.append(_label_finding(profile, options))
    return [f for f in found if f is not None]


def _label_finding(profile: Profile, options: ValidationOptions) -> Finding | None:
    label = options.label
    assert label is not None
    counts = profile.label_counts(label)
    if not counts or len(counts) < 2:
        return None
    total = sum(counts.values())
    rare, n = min(counts.items(), key=lambda kv: (kv[1], str(kv[0])))
    share = n / total
    if share >= options.min_class_share:
        return None
    return _column_finding(
        "class_imbalance", label, options, share,
        f"label '{label}' class {_show(rare)} holds {n:,} of {total:,} rows ({share:.2%}), "
        f"below the minimum class share {options.min_class_share:.2%}; use a stratified "
        "sampler (make_loader does) or class weights",
    )  # fmt: skip


def _column_finding(
    check: str, column: str, options: ValidationOptions, value: float, message: str
) -> Finding | None:
    level = options.severity(check)
    if level is None:
        return None
    return Finding(check, column, level, count=1, fraction=float(value), message=message)


def checks_run(
    profile: Profile,
    options: ValidationOptions,
    fences: Mapping[str, Fences],
    findings: Sequence[Finding],
) -> list[tuple[str | None, str]]:
    """Every (column, check) pair the run checked, passed or not, in report order.

    A check counts as run on a column when the run applies it there:

    - ``nan`` and ``inf`` on floating columns;
    - ``constant`` and ``near_constant`` on every column that is not only
      counted (nested, binary and other unsupported types);
    - ``zero_iqr`` and ``sentinel`` on numeric columns other than the label;
    - ``outlier`` on the columns that have outlier ``fences``;
    - ``class_imbalance`` on the label column;
    - ``bad_rows`` (dataset level, column ``None``) when ``max_bad_rows`` is set.

    Schema checks (``null``, ``schema:<name>``, ``missing_column``, ``dtype``)
    appear only when they failed. Checks switched off are left out. Every
    finding's pair is included, whatever the rules above say.

    Returns
    -------
    list of (str or None, str)
        ``(column, check name)``; column ``None`` for dataset-level checks.
    """
    pairs: dict[tuple[str | None, str], None] = {}  # insertion-ordered set
    found: dict[str | None, list[str]] = {}
    for f in findings:
        found.setdefault(f.column, []).append(f.check_name)

    def order(check: str) -> tuple[bool, int]:
        # As findings are ordered: column-level checks first, then row-level ones.
        code = check.split(":", 1)[0]
        return code in ROW_LEVEL, order_of(code)

    for name, column in profile.columns.items():
        ran: list[str] = []
        if column.kind != "other":
            if pa.types.is_floating(profile.schema.field(name).type):
                ran += ["nan", "inf"]
            ran += ["constant", "near_constant"]
            if column.kind == "numeric" and name != options.label:
                ran += ["zero_iqr", "sentinel"]
            if name in fences:
                ran.append("outlier")
            if name == options.label:
                ran.append("class_imbalance")
        ran = [c for c in ran if options.severity(c) is not None]
        for check in sorted([*ran, *found.get(name, [])], key=order):
            pairs[(name, check)] = None
    # Findings on columns the data lacks (missing_column), then dataset-level ones.
    for f in findings:
        if f.column is not None and f.column not in profile.columns:
            pairs[(f.column, f.check_name)] = None
    if options.max_bad_rows is not None and options.severity("bad_rows") is not None:
        pairs[(None, "bad_rows")] = None
    for f in findings:
        if f.column is None:
            pairs[(None, f.check_name)] = None
    return list(pairs)


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


# -- row rules ---------------------------------------------------------------------------------
@dataclass
class RowFailure:
    """Rows of one batch that failed one check on one column.

    ``mask`` marks the failing rows; ``observed``, ``score`` hold one entry per
    failing row (in row order) for the quarantine record. A failure with
    ``quarantine=False`` is counted and reported but sends no row to quarantine
    (joint outliers, unless ``quarantine_outliers="joint"``).
    """

    check: str
    column: str | None
    mask: np.ndarray
    observed: pa.Array | None = None
    threshold: str | None = None
    score: np.ndarray | None = None
    schema_check: str | None = None
    quarantine: bool = True


RowRule = Callable[[pa.RecordBatch], list[RowFailure]]


def non_finite_rule(columns: Sequence[str]) -> RowRule:
    """NaN and +/-inf in the given floating columns."""

    def failures(name: str, x: np.ndarray, present: np.ndarray) -> list[RowFailure]:
        with np.errstate(invalid="ignore", over="ignore"):
            if np.isfinite(np.add.reduce(x, dtype=np.float64)):
                return []  # the cheap whole-column test first
        masks = (("nan", np.isnan(x)), ("inf", np.isinf(x)))
        return [RowFailure(c, name, m, pa.array(x[m]), "finite") for c, m in masks if m.any()]

    return _per_column_rule(list(columns), dict.fromkeys(columns, "numeric"), failures)


def null_rule(columns: Sequence[str]) -> RowRule:
    """Nulls in columns that must not hold any."""

    def rule(batch: pa.RecordBatch) -> list[RowFailure]:
        out: list[RowFailure] = []
        present = set(batch.schema.names)  # pass 2 may read only some columns
        for name in columns:
            if name not in present:
                continue
            arr = batch.column(name)
            if arr.null_count:
                mask = _bool_numpy(pc.is_null(arr))
                out.append(RowFailure("null", name, mask, None, "non-null"))
        return out

    return rule


def column_sentinels(profile: Profile, options: ValidationOptions) -> dict[str, list[Sentinel]]:
    """The sentinels of every numeric column but the label (:mod:`pipeline.sentinels`).

    Returns
    -------
    dict of str to list of Sentinel
        Only columns that have some; empty when the ``sentinel`` check is off.
    """
    if options.severity("sentinel") is None:
        return {}
    found: dict[str, list[Sentinel]] = {}
    for name, column in profile.columns.items():
        if column.kind != "numeric" or name == options.label:
            continue
        sentinels = find_sentinels(*profile.value_counts(name))
        if sentinels:
            found[name] = sentinels
    return found


def sentinel_rule(sentinels: dict[str, list[Sentinel]], kinds: dict[str, str]) -> RowRule:
    """Rows holding one of their column's sentinel values."""
    codes = _codes(sentinels)
    described = {name: "; ".join(s.describe() for s in found) for name, found in sentinels.items()}

    def failures(name: str, x: np.ndarray, present: np.ndarray) -> list[RowFailure]:
        mask = np.isin(x, codes[name]) & present
        if not mask.any():
            return []
        return [RowFailure("sentinel", name, mask, pa.array(x[mask]), described[name])]

    return _per_column_rule(list(sentinels), kinds, failures)


def outlier_rule(
    fences: dict[str, Fences],
    kinds: dict[str, str],
    sentinels: dict[str, list[Sentinel]] | None = None,
) -> RowRule:
    """Values outside each column's fences (a column's sentinel values are not outliers)."""
    codes = _codes(sentinels or {})

    def failures(name: str, x: np.ndarray, present: np.ndarray) -> list[RowFailure]:
        fence = fences[name]
        # NaN compares false on both sides, so only finite values and inf can trip;
        # inf is reported as `inf`, not as an outlier.
        with np.errstate(invalid="ignore"):
            mask = ((x < fence.low) | (x > fence.high)) & np.isfinite(x) & present
        if name in codes and mask.any():
            mask &= ~np.isin(x, codes[name])
        if not mask.any():
            return []
        vals = x[mask].astype(np.float64)
        return [
            RowFailure("outlier", name, mask, pa.array(vals), fence.describe(), fence.score(vals))
        ]

    return _per_column_rule(list(fences), kinds, failures)


def _codes(sentinels: dict[str, list[Sentinel]]) -> dict[str, np.ndarray]:
    return {name: np.array([s.value for s in found]) for name, found in sentinels.items()}


def _per_column_rule(
    columns: list[str],
    kinds: dict[str, str],
    failures: Callable[[str, np.ndarray, np.ndarray], list[RowFailure]],
) -> RowRule:
    """A rule asking ``failures(column, values, non-null mask)`` of each column of a batch.

    Values are numpy (nulls as 0, and masked out of the non-null mask); a
    column the batch lacks is skipped, since pass 2 may read only some columns.
    """

    def rule(batch: pa.RecordBatch) -> list[RowFailure]:
        out: list[RowFailure] = []
        present = set(batch.schema.names)  # pass 2 may read only some columns
        for name in columns:
            if name not in present:
                continue
            arr = batch.column(name)
            valid = ~_bool_numpy(pc.is_null(arr)) if arr.null_count else np.ones(len(arr), bool)
            out += failures(name, _numeric_values(arr, kinds[name]), valid)
        return out

    return rule


def _numeric_values(arr: pa.Array, kind: str) -> np.ndarray:
    """A numeric column's values as numpy (nulls as 0: callers mask them out)."""
    view = values_view(arr, kind)
    return to_numpy(pc.fill_null(view, 0) if arr.null_count else view)


def _bool_numpy(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def row_ids(batch: pa.RecordBatch) -> np.ndarray:
    """The batch's ``_row_id`` values as int64 numpy."""
    return batch.column(ROW_ID).to_numpy(zero_copy_only=False)
