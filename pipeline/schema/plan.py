"""Compile a :class:`~pipeline.schema.model.Schema` into what the streaming engine runs.

A schema's rules fall into three groups, each run where its answer does not
depend on how the data was batched:

- **structure** (before reading): every required column is present and has
  the schema's dtype (``missing_column``, ``dtype``); ``strict`` and
  ``ordered`` (``schema``). The dtype is the one pandas gives the column when
  batchguard converts a record batch, so a schema written by pandera for the
  same data fits.
- **row checks** (pass 2, per record batch): ``nullable: false`` becomes the
  ``null`` rule; every other pandera check (``greater_than``, ``isin``,
  ``str_matches``, user-registered checks, ...) runs through pandera on the
  batch's column as a pandas Series, vectorised, and each failing row becomes a
  ``schema`` failure carrying the check's name. pandera's NaN rule holds, and
  extends to inf: a check skips NaN and +/-inf unless it says
  ``ignore_na: false``, so such a value is reported once, as ``nan``/``inf``,
  not again by every range check of its column.
- **column checks** (after pass 1, on the merged profile, so exact for the
  whole dataset): ``max_nan_fraction``, ``max_null_fraction``,
  ``not_constant``, ``max_top_value_fraction`` and ``unique_values_eq`` give
  column-level ``schema`` findings. ``not_constant`` and
  ``max_top_value_fraction`` take the place of batchguard's built-in
  ``constant`` and ``near_constant`` checks for their column, so one fact is
  reported once. ``outliers(method, threshold)`` sets that column's outlier
  fences (findings stay ``outlier``), and ``is_finite`` is what the built-in
  ``nan``/``inf`` row rules already enforce on every float column.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..checks import RowFailure, RowRule, null_rule
from ..errors import SchemaFileError, UsageError
from ..findings import Finding
from ..options import ValidationOptions
from ..source import ROW_ID, Source
from .model import Schema, load_schema
from .registered import STATISTICAL_CHECKS

if TYPE_CHECKING:
    import pandas as pd
    from pandera.api.checks import Check

    from ..profiling import Profile

__all__ = [
    "PROFILE_CHECKS",
    "REPLACES",
    "ColumnSchemaFinding",
    "SchemaPlan",
    "as_plan",
    "pandas_dtype_name",
]

#: checks evaluated on the merged profile rather than per batch
PROFILE_CHECKS = frozenset(
    {
        "max_nan_fraction",
        "max_null_fraction",
        "not_constant",
        "max_top_value_fraction",
        "unique_values_eq",
    }
)
#: schema check -> the built-in column check it replaces for its column
REPLACES = {"not_constant": "constant", "max_top_value_fraction": "near_constant"}
#: longest threshold text kept in findings and quarantine records
_THRESHOLD_CHARS = 80


@dataclass
class ColumnSchemaFinding(Finding):
    """A ``schema`` finding about a whole column or the table's structure.

    ``Finding.row_level`` counts every ``schema`` finding as row-level; these
    ones quarantine no rows, so ``max_bad_rows`` must not soften them.
    """

    @property
    def row_level(self) -> bool:
        return False


@dataclass
class _ColumnRules:
    """What the schema says about one column (or one pattern of column names)."""

    key: str
    regex: bool
    required: bool
    nullable: bool
    dtype: Any
    row_checks: list[Check] = field(default_factory=list)
    profile_checks: list[Check] = field(default_factory=list)
    outliers: tuple[str, float] | None = None

    def matches(self, name: str) -> bool:
        return bool(re.match(self.key, name)) if self.regex else name == self.key


@dataclass
class _Binding:
    """The schema's columns matched to one dataset's columns."""

    columns: dict[str, list[_ColumnRules]]
    missing: list[_ColumnRules]
    mismatched: dict[str, tuple[str, str, str]]
    extra: list[str]

    def usable(self) -> Iterable[tuple[str, _ColumnRules]]:
        """Present columns of the right dtype, with each rule set that covers them."""
        for name, rules in self.columns.items():
            if name not in self.mismatched:
                for r in rules:
                    yield name, r


class SchemaPlan:
    """A schema compiled for the streaming engine (see the module docstring).

    Parameters
    ----------
    schema : Schema

    Attributes
    ----------
    name : str or None
        The schema file, if the schema came from one.
    options : dict
        ValidationOptions keywords from the dataset block; keywords given to
        :func:`pipeline.validate` override them.
    notes : list of str
        Parts of the schema batchguard cannot apply, and why.
    checks_every_row : bool
        Row-level rules exist, so pass 2 must read every chunk.
    drift : DriftConfig or None
        The dataset block's drift thresholds (used with a baseline).
    """

    def __init__(self, schema: Schema):
        self.schema = schema
        self.name = schema.path
        self.options = schema.settings
        self.drift = schema.drift
        self.notes: list[str] = []
        pandera = schema.pandera
        if getattr(pandera, "index", None) is not None:
            self._refuse("a pandas index is not supported: batchguard reads tables; remove it")
        self.columns = [self._compile_column(str(k), c) for k, c in pandera.columns.items()]
        self.frame_checks = [self._compile_frame_check(c) for c in pandera.checks]
        self.strict = pandera.strict
        self.ordered = bool(pandera.ordered)
        self._schema_notes(pandera)
        self.checks_every_row = bool(self.frame_checks) or any(
            c.row_checks or not c.nullable for c in self.columns
        )
        self._bound: tuple[tuple[tuple[str, str], ...], _Binding] | None = None

    @property
    def _label(self) -> str:
        return self.name or "the schema"

    def _refuse(self, problem: str) -> None:
        raise SchemaFileError(f"{self._label}: {problem}")

    # -- compile -------------------------------------------------------------------------------
    def _compile_column(self, key: str, column: Any) -> _ColumnRules:
        if column.regex:
            try:
                re.compile(key)
            except re.error as exc:
                self._refuse(f"column '{key}' has regex: true but is not a regular expression "
                             f"({exc}); fix the pattern or drop regex: true")  # fmt: skip
        rules = _ColumnRules(
            key, bool(column.regex), bool(column.required), bool(column.nullable), column.dtype
        )
        for check in column.checks:
            self._refuse_grouped(check, key)
            name = check.name
            if name == "is_finite":
                continue  # the built-in nan/inf row rules enforce it on every float column
            if name == "outliers":
                stats = _statistics(check)
                rules.outliers = (str(stats["method"]), float(stats["threshold"]))
            elif name in PROFILE_CHECKS:
                rules.profile_checks.append(check)
            else:
                if check.element_wise:
                    self.notes.append(
                        f"{self._label}: check '{name}' on column '{key}' is element-wise: "
                        "pandera calls it once per value, which is slow on large data"
                    )
                rules.row_checks.append(check)
        return rules

    def _compile_frame_check(self, check: Check) -> Check:
        self._refuse_grouped(check, None)
        if check.name in STATISTICAL_CHECKS or check.name in PROFILE_CHECKS:
            self._refuse(f"'{check.name}' is a column check; put it under a column")
        return check

    def _refuse_grouped(self, check: Check, column: str | None) -> None:
        if check.groupby is not None or check.groups is not None:
            where = f"column '{column}'" if column else "the dataframe"
            self._refuse(
                f"check '{check.name}' on {where} is grouped; grouped checks are not "
                "supported, because batchguard runs checks one record batch at a time"
            )

    def _schema_notes(self, pandera: Any) -> None:
        unapplied = [
            f"'unique: true' on column '{k}'" for k, c in pandera.columns.items() if c.unique
        ]
        if pandera.unique:
            unapplied.append(f"'unique: {pandera.unique}'")
        if unapplied:
            self.notes.append(
                f"{self._label}: {', '.join(unapplied)} not checked: uniqueness needs the "
                "whole column at once, and batchguard streams"
            )
        coerced = [str(k) for k, c in pandera.columns.items() if c.coerce]
        if pandera.coerce or coerced:
            self.notes.append(
                f"{self._label}: 'coerce' is not applied: batchguard checks the data as stored"
            )
        if pandera.add_missing_columns:
            self.notes.append(
                f"{self._label}: 'add_missing_columns' is not applied: missing columns are "
                "reported, not added"
            )

    # -- bind to a dataset ---------------------------------------------------------------------
    def _bind(self, schema: pa.Schema) -> _Binding:
        fields = [f for f in schema if f.name != ROW_ID]
        key = tuple((f.name, str(f.type)) for f in fields)
        if self._bound is not None and self._bound[0] == key:
            return self._bound[1]
        names = [f.name for f in fields]
        columns: dict[str, list[_ColumnRules]] = {}
        missing = []
        for rules in self.columns:
            matched = [n for n in names if rules.matches(n)]
            if not matched and rules.required:
                missing.append(rules)
            for n in matched:
                columns.setdefault(n, []).append(rules)
        mismatched = {}
        for f in fields:
            for rules in columns.get(f.name, []):
                if rules.dtype is not None and not _dtype_fits(rules.dtype, f):
                    mismatched[f.name] = (str(rules.dtype), pandas_dtype_name(f), str(f.type))
        extra = [n for n in names if n not in columns]
        binding = _Binding(columns, missing, mismatched, extra)
        self._bound = (key, binding)
        return binding

    # -- structure -----------------------------------------------------------------------------
    def structure_findings(self, src: Source, options: ValidationOptions) -> list[Finding]:
        """``missing_column``, ``dtype`` and ``strict``/``ordered`` findings for ``src``."""
        b = self._bind(src.schema)
        out: list[Finding | None] = []
        for rules in b.missing:
            what = (
                f"no column of {src.path} matches the pattern '{rules.key}' from {self._label}"
                if rules.regex
                else f"column '{rules.key}' is in {self._label} but not in {src.path}"
            )
            out.append(
                _finding(
                    Finding,
                    "missing_column",
                    rules.key,
                    options,
                    f"{what}; add it upstream, or mark it 'required: false' in the schema",
                )
            )
        for name, (expected, actual, arrow) in b.mismatched.items():
            out.append(
                _finding(
                    Finding,
                    "dtype",
                    name,
                    options,
                    f"column '{name}' of {src.path} is {arrow} (pandas {actual}) but {self._label} "
                    f"expects {expected}; cast it upstream or change the schema's dtype",
                )
            )
        if self.strict is True:
            for name in b.extra:
                out.append(
                    _finding(
                        ColumnSchemaFinding,
                        "schema",
                        name,
                        options,
                        f"column '{name}' of {src.path} is not in {self._label}, which is strict; "
                        "add it to the schema or drop it upstream",
                        schema_check="strict",
                    )
                )
        if self.ordered:
            out.extend(self._order_findings(src, options))
        return [f for f in out if f is not None]

    def _order_findings(self, src: Source, options: ValidationOptions) -> list[Finding | None]:
        expected = [r.key for r in self.columns if not r.regex and r.key in src.columns]
        actual = [n for n in src.columns if n in expected]
        if actual == expected:
            return []
        return [
            _finding(
                ColumnSchemaFinding,
                "schema",
                None,
                options,
                f"columns of {src.path} come in the order {', '.join(actual)} but {self._label} "
                f"(ordered: true) expects {', '.join(expected)}; reorder them upstream",
                schema_check="ordered",
            )
        ]

    # -- rows ----------------------------------------------------------------------------------
    def non_null(self, src: Source) -> list[str]:
        """The columns of ``src`` the schema marks non-nullable (its ``null`` rule's).

        Parameters
        ----------
        src : Source

        Returns
        -------
        list of str
        """
        b = self._bind(src.schema)
        return [n for n, specs in b.columns.items() if any(not r.nullable for r in specs)]

    def nullable(self, src: Source, name: str | None) -> bool:
        """Whether the schema declares column ``name`` of ``src`` and lets it hold nulls.

        Parameters
        ----------
        src : Source
        name : str or None

        Returns
        -------
        bool
            False for a column the schema does not declare.
        """
        specs = self._bind(src.schema).columns.get(name or "", [])
        return bool(specs) and all(r.nullable for r in specs)

    def row_rules(self, src: Source) -> list[RowRule]:
        """The ``null`` rule for non-nullable columns and one rule running the pandera checks."""
        b = self._bind(src.schema)
        rules: list[RowRule] = []
        non_null = self.non_null(src)
        if non_null:
            rules.append(null_rule(non_null))
        checked = [(n, r.row_checks) for n, r in b.usable() if r.row_checks]
        if checked or self.frame_checks:
            rules.append(self._pandera_rule(checked, src.path))
        return rules

    def _pandera_rule(self, checked: list[tuple[str, list[Check]]], dataset: str) -> RowRule:
        frame_checks = self.frame_checks

        def rule(batch: pa.RecordBatch) -> list[RowFailure]:
            out: list[RowFailure] = []
            for name, checks in checked:
                arr = batch.column(name)
                series = arr.to_pandas()
                nonfinite = _nonfinite(series)
                for check in checks:
                    mask = self._run(check, series, name, dataset)
                    if nonfinite is not None and check.ignore_na:
                        mask &= ~nonfinite  # already reported as nan/inf
                    if mask.any():
                        out.append(_row_failure(check, name, mask, arr.filter(pa.array(mask))))
            if frame_checks:
                frame = batch.drop_columns([ROW_ID]).to_pandas()
                for check in frame_checks:
                    mask = self._run(check, frame, None, dataset)
                    if mask.any():
                        out.append(_row_failure(check, None, mask, None))
            return out

        return rule

    def _run(self, check: Check, obj: Any, column: str | None, dataset: str) -> np.ndarray:
        where = f"column '{column}'" if column else "the dataframe"
        try:
            output = check(obj).check_output
        except Exception as exc:  # noqa: BLE001 - a check that cannot run is a schema problem
            raise SchemaFileError(
                f"{self._label}: check '{check.name}' on {where} cannot run on {dataset} "
                f"({type(exc).__name__}: {exc}); fix its arguments or the column's dtype"
            ) from exc
        mask = _failing_rows(output, len(obj))
        if mask is None:
            raise SchemaFileError(
                f"{self._label}: check '{check.name}' on {where} returns one boolean for the "
                "whole column; batchguard runs checks per record batch, so a check must return "
                "one boolean per row (or be one of batchguard's column checks)"
            )
        return mask

    # -- columns -------------------------------------------------------------------------------
    def outlier_overrides(self, src: Source) -> dict[str, tuple[str, float]]:
        """Per-column ``(method, threshold)`` from ``outliers`` checks."""
        return {n: r.outliers for n, r in self._bind(src.schema).usable() if r.outliers}

    def profile_findings(
        self, profile: Profile, options: ValidationOptions, builtin: list[Finding]
    ) -> list[Finding]:
        """The built-in column findings, with the schema's column checks applied.

        Parameters
        ----------
        profile : Profile
            The merged profile of the whole dataset.
        options : ValidationOptions
        builtin : list of Finding
            What :func:`pipeline.checks.column_findings` found.

        Returns
        -------
        list of Finding
            ``builtin`` without the findings the schema's own checks replace,
            followed by the schema's column-level findings.
        """
        b = self._bind(profile.schema)
        replaced = set()
        found: list[Finding] = []
        for name, rules in b.usable():
            for check in rules.profile_checks:
                if check.name in REPLACES:
                    replaced.add((REPLACES[check.name], name))
                finding = self._column_check(check, name, profile, options)
                if finding is not None:
                    found.append(finding)
        kept = [f for f in builtin if (f.check, f.column) not in replaced]
        return kept + found

    def _column_check(
        self, check: Check, name: str, profile: Profile, options: ValidationOptions
    ) -> Finding | None:
        stats = _statistics(check)
        column = profile.columns[name]
        rows = profile.rows
        if rows == 0 or column.kind == "other":
            return None
        level = "warning" if check.raise_warning else options.severity("schema")
        if level is None:
            return None
        schema = self._label

        def finding(value: float, message: str) -> Finding:
            return ColumnSchemaFinding(
                "schema", name, level, 1, float(value), message, [], check.name
            )

        if check.name in ("max_nan_fraction", "max_null_fraction"):
            what, n = (
                ("NaN", column.nan) if check.name == "max_nan_fraction" else ("null", column.null)
            )
            limit = float(stats["max_fraction"])
            if n <= limit * rows:
                return None
            return finding(
                n / rows,
                (
                    f"column '{name}' has {n:,} {what} values ({n / rows:.2%} of {rows:,} rows), "
                    f"more than {check.name} {limit:.2%} in {schema} allows; impute or drop "
                    "them, or raise the limit"
                ),
            )
        st = profile.stats(name)
        if check.name == "not_constant":
            if not (st.distinct_exact and st.distinct <= 1):
                return None
            what = f"only the value {_show(st.top_value)}" if st.distinct else "no values"
            return finding(
                1.0,
                (
                    f"column '{name}' holds {what} in {rows:,} rows, but {schema} says "
                    "not_constant; it carries no information: drop it or fix the upstream "
                    "join/export"
                ),
            )
        if check.name == "max_top_value_fraction":
            limit = float(stats["max_fraction"])
            share = st.top_value_fraction
            if share is None or share <= limit:
                return None
            estimated = "" if st.distinct_exact else " (estimated from a sample)"
            return finding(
                share,
                (
                    f"column '{name}' is {_show(st.top_value)} in {share:.2%} of its values"
                    f"{estimated}, more than max_top_value_fraction {limit:.2%} in {schema} "
                    "allows; check for a stuck sensor or a default fill value"
                ),
            )
        return self._unique_values(check, name, profile, finding)

    def _unique_values(self, check: Check, name: str, profile: Profile, finding: Any) -> Any:
        column = profile.columns[name]
        if column.kind == "temporal":
            self.notes.append(
                f"{self._label}: unique_values_eq on '{name}' is not checked for date/time columns"
            )
            return None
        expected = {int(v) if isinstance(v, bool) else v for v in _statistics(check)["values"]}
        if column.values is None:
            return finding(
                1.0,
                (
                    f"column '{name}' has more than 4,096 distinct values, but {self._label} "
                    f"expects exactly {sorted(expected, key=str)} (unique_values_eq)"
                ),
            )
        observed = set(column.values)
        if observed == expected:
            return None
        unexpected = sorted(observed - expected, key=str)[:5]
        absent = sorted(expected - observed, key=str)[:5]
        return finding(
            1.0,
            (
                f"column '{name}' does not hold exactly the values {self._label} lists "
                f"(unique_values_eq): unexpected {unexpected}, absent {absent}"
            ),
        )

    # -- severities ----------------------------------------------------------------------------
    def warning_checks(self) -> frozenset[tuple[str | None, str]]:
        """``(column, check)`` of the row checks marked ``raise_warning: true``.

        Their ``schema`` findings are warnings (:class:`pipeline.findings.Severities`).
        """
        columns: set[tuple[str | None, str]] = {
            (n, str(c.name)) for n, r in self._bind_any() for c in r.row_checks if c.raise_warning
        }
        frame = {(None, str(c.name)) for c in self.frame_checks if c.raise_warning}
        return frozenset(columns | frame)

    def _bind_any(self) -> Iterable[tuple[str, _ColumnRules]]:
        return self._bound[1].usable() if self._bound is not None else ()


# -- helpers -----------------------------------------------------------------------------------
def _finding(
    cls: type[Finding],
    check: str,
    column: str | None,
    options: ValidationOptions,
    message: str,
    schema_check: str | None = None,
) -> Finding | None:
    level = options.severity(check)
    if level is None:
        return None
    return cls(check, column, level, 1, 1.0, message, [], schema_check)


def _row_failure(check: Check, column: str | None, mask: np.ndarray, observed: Any) -> RowFailure:
    return RowFailure("schema", column, mask, observed, _describe(check), schema_check=check.name)


def _describe(check: Check) -> str:
    text = str(check.error or check.name)
    return text if len(text) <= _THRESHOLD_CHARS else text[: _THRESHOLD_CHARS - 3] + "..."


def _statistics(check: Check) -> dict[str, Any]:
    # pandera's serialiser stores an "options" entry inside check.statistics; skip it.
    return {k: v for k, v in (check.statistics or {}).items() if k != "options"}


def _failing_rows(output: Any, n: int) -> np.ndarray | None:
    """Rows a check's output marks as failing; None when the output is one boolean."""
    import pandas as pd

    if isinstance(output, pd.DataFrame):
        output = output.all(axis="columns")
    if not isinstance(output, pd.Series):
        return None
    if output.dtype == bool:
        passed = output.to_numpy()
    else:  # nullable booleans: a missing answer comes from a missing value, which passes
        passed = output.astype("boolean").fillna(True).to_numpy(dtype=bool)
    mask = np.zeros(n, dtype=bool)
    if not passed.all():
        # pandera drops missing values before a check (ignore_na), so the output may be
        # shorter; its index still holds the row positions (the batch's RangeIndex).
        mask[output.index.to_numpy()[~passed]] = True
    return mask


def _nonfinite(series: pd.Series) -> np.ndarray | None:
    """Where a float column holds NaN or +/-inf; None when it holds none (the usual case).

    pandera's ``ignore_na`` hides NaN from a check but not inf. Both already get
    their own ``nan``/``inf`` finding, so checks that ignore NaN ignore inf too.
    """
    if series.dtype.kind != "f":
        return None
    x = series.to_numpy()
    with np.errstate(invalid="ignore", over="ignore"):
        if np.isfinite(np.add.reduce(x, dtype=np.float64)):
            return None
        return ~np.isfinite(x)


def _pandas_dtype(f: pa.Field) -> pd.api.extensions.ExtensionDtype | np.dtype:
    """The dtype pandas gives this column when a record batch is converted."""
    return pa.schema([f]).empty_table().to_pandas()[f.name].dtype


def pandas_dtype_name(f: pa.Field) -> str:
    """The pandas dtype name pandera gives an Arrow field (what a schema's ``dtype`` says)."""
    from pandera.engines import pandas_engine

    try:
        return str(pandas_engine.Engine.dtype(_pandas_dtype(f)))
    except TypeError:
        return str(_pandas_dtype(f))


def _dtype_fits(expected: Any, f: pa.Field) -> bool:
    from pandera.engines import pandas_engine

    try:
        return bool(expected.check(pandas_engine.Engine.dtype(_pandas_dtype(f))))
    except TypeError:
        return False


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def as_plan(schema: Any) -> SchemaPlan:
    """Compile what :func:`pipeline.validate` was given as ``schema``.

    Parameters
    ----------
    schema : str, os.PathLike, Schema, SchemaPlan or pandera.DataFrameSchema
        A schema file, a loaded or inferred schema, or a pandas-API pandera
        schema built in code (dataset settings in ``metadata={"batchguard": {...}}``).

    Returns
    -------
    SchemaPlan

    Raises
    ------
    SchemaFileError
        The schema is malformed or uses what batchguard cannot stream.
    UsageError
        ``schema`` is none of the above.
    """
    if isinstance(schema, SchemaPlan):
        return schema
    if isinstance(schema, str | os.PathLike):
        return SchemaPlan(load_schema(schema))
    if isinstance(schema, Schema):
        return SchemaPlan(schema)
    from pandera.api.pandas.container import DataFrameSchema

    if isinstance(schema, DataFrameSchema):
        return SchemaPlan(Schema(schema))
    raise UsageError(
        "schema should be a schema file path, a pipeline Schema or a pandera (pandas API) "
        f"DataFrameSchema, but got schema={type(schema).__name__}"
    )
