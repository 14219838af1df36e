"""What a schema file may say, checked key by key before pandera sees it.

pandera 0.35 reads its YAML leniently: a flat column key that is not a check
name (``greter_than: 0``) is dropped without a word, unknown top-level keys
are ignored, and wrong argument types surface later as a ``TypeError`` deep
inside a validation run. batchguard validates the parsed document first, so
every such mistake becomes one :class:`~pipeline.errors.SchemaFileError`
naming the file, the line, the key or column, and what is expected.

Accepted is exactly what pandera's pandas API reads (flat check keys, the
``checks:`` list with ``options.check_name``, and the older ``checks:``
mapping), minus what cannot work on a stream of record batches (a pandas
index, grouped checks); dataset-level settings live in ``metadata.batchguard``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, NoReturn

from ..errors import SchemaFileError
from ..findings import REASONS, SEVERITY_CHOICES
from ..options import DATASET_SETTINGS, JOINT_SCORES, OUTLIER_METHODS, QUARANTINE_OUTLIERS
from ._yaml import KeyPath
from .registered import STATISTICAL_CHECKS

__all__ = [
    "CHECK_ARGS",
    "CHECK_OPTIONS",
    "DATASET_KEY",
    "DRIFT_KEY",
    "Arg",
    "Document",
    "check_arguments",
    "check_document",
    "check_metadata",
    "check_settings",
    "did_you_mean",
    "dtype_kind",
    "known_checks",
]

#: the key under ``metadata`` that holds batchguard's dataset-level settings
DATASET_KEY = "batchguard"
#: the dataset block's key for drift thresholds (:mod:`pipeline.drift`)
DRIFT_KEY = "drift"


@dataclass(frozen=True)
class Arg:
    """One argument of a check: its name, what it must be, and whether it is required."""

    name: str
    kind: str
    required: bool = True


_VALUE = (Arg("value", "value"),)
_MIN = (Arg("min_value", "value"),)
_MAX = (Arg("max_value", "value"),)
_RANGE = (
    Arg("min_value", "value"),
    Arg("max_value", "value"),
    Arg("include_min", "bool", False),
    Arg("include_max", "bool", False),
)
_FRACTION = (Arg("max_fraction", "fraction"),)

#: the checks a schema may use (pandera's pandas built-ins, their aliases, and ours)
CHECK_ARGS: dict[str, tuple[Arg, ...]] = {
    "equal_to": _VALUE,
    "eq": _VALUE,
    "not_equal_to": _VALUE,
    "ne": _VALUE,
    "greater_than": _MIN,
    "gt": _MIN,
    "greater_than_or_equal_to": _MIN,
    "ge": _MIN,
    "less_than": _MAX,
    "lt": _MAX,
    "less_than_or_equal_to": _MAX,
    "le": _MAX,
    "in_range": _RANGE,
    "between": _RANGE,
    "isin": (Arg("allowed_values", "values"),),
    "notin": (Arg("forbidden_values", "values"),),
    "str_matches": (Arg("pattern", "pattern"),),
    "str_contains": (Arg("pattern", "pattern"),),
    "str_startswith": (Arg("string", "str"),),
    "str_endswith": (Arg("string", "str"),),
    "str_length": (
        Arg("min_value", "count", False),
        Arg("max_value", "count", False),
        Arg("exact_value", "count", False),
    ),
    "unique_values_eq": (Arg("values", "values"),),
    "is_finite": (),
    "not_constant": (),
    "max_nan_fraction": _FRACTION,
    "max_null_fraction": _FRACTION,
    "max_top_value_fraction": _FRACTION,
    "outliers": (Arg("method", "method"), Arg("threshold", "positive")),
}
assert set(STATISTICAL_CHECKS) <= set(CHECK_ARGS)

#: check options pandera reads beside the arguments (``options:`` in the list form)
CHECK_OPTIONS: dict[str, str] = {
    "ignore_na": "bool",
    "raise_warning": "bool",
    "n_failure_cases": "count_or_null",
    "error": "str",
    "name": "str",
}
_GROUPED = ("groupby", "groups")

_COLUMN_KEYS: dict[str, str] = {
    "dtype": "dtype",
    "nullable": "bool",
    "unique": "bool",
    "coerce": "bool",
    "required": "bool",
    "regex": "bool",
    "title": "str_or_null",
    "description": "str_or_null",
    "name": "str_or_null",
    "default": "scalar_or_null",
    "report_duplicates": "duplicates",
    "drop_invalid_rows": "bool",
    "checks": "checks",
}

_TOP_KEYS: dict[str, str] = {
    "schema_type": "schema_type",
    "version": "scalar_or_null",
    "api": "api",
    "dataframe_library": "api",
    "columns": "columns",
    "checks": "checks",
    "index": "unsupported_index",
    "multiindex": "unsupported_index",
    "dtype": "unsupported_dtype",
    "coerce": "bool",
    "strict": "strict",
    "name": "str_or_null",
    "ordered": "bool",
    "unique": "names_or_null",
    "report_duplicates": "duplicates",
    "unique_column_names": "bool",
    "add_missing_columns": "bool",
    "title": "str_or_null",
    "description": "str_or_null",
    "drop_invalid_rows": "bool",
    "metadata": "metadata",
}

#: dtype names offered when a dtype is misspelt
_DTYPE_NAMES = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "bool",
    "str",
    "string",
    "category",
    "object",
    "datetime64[ns]",
    "Int64",
    "Float64",
    "boolean",
)


def known_checks() -> list[str]:
    """Every check name a schema may use, including checks registered by the user."""
    from pandera.api.checks import Check

    return sorted({*CHECK_ARGS, *Check.REGISTERED_CUSTOM_CHECKS})


class Document:
    """A parsed schema file and where its keys are, for errors that point at a line.

    Parameters
    ----------
    path : str
        The file, as the user named it.
    lines : dict
        1-based line of each key path (from :func:`pipeline.schema._yaml.load`).
    """

    def __init__(self, path: str, lines: Mapping[KeyPath, int] | None = None):
        self.path = path
        self.lines = lines or {}

    def fail(self, where: KeyPath, problem: str, *, key: bool = False) -> NoReturn:
        """Raise the :class:`SchemaFileError` for ``problem`` at key path ``where``.

        ``key=True``: the problem is the last key itself (unknown, misspelt), which
        the message names, so the location stops at its parent.
        """
        place = self.describe(where[:-1] if key else where, line_of=where)
        raise SchemaFileError(f"{self.path}: {place}: {problem}")

    def describe(self, where: KeyPath, *, line_of: KeyPath | None = None) -> str:
        at = where if line_of is None else line_of
        line = next(
            (self.lines[at[:i]] for i in range(len(at), 0, -1) if at[:i] in self.lines),
            None,
        )
        if len(where) >= 2 and where[0] == "columns":
            text = f"column '{where[1]}'"
            if len(where) > 2:
                text += ", " + _dotted(where[2:])
        elif where:
            text = _dotted(where)
        else:
            text = "top level"
        return f"{text} (line {line})" if line is not None else text


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def did_you_mean(word: str, candidates: list[str] | tuple[str, ...] | set[str]) -> str:
    """'; did you mean 'x'?' for the closest candidate, or ''."""
    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# -- the document --------------------------------------------------------------------------
def check_document(data: Any, doc: Document) -> None:
    """Validate a parsed schema file; raise :class:`SchemaFileError` on the first problem.

    Parameters
    ----------
    data : object
        What the YAML held.
    doc : Document
        Where it came from.
    """
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}"
        doc.fail((), f"the file is {what}; a schema is a mapping with at least 'columns:'")
    if "columns" not in data:
        doc.fail((), "no 'columns:' key; list the dataset's columns under it")
    for key, value in data.items():
        if key == DATASET_KEY:
            doc.fail(
                (key,),
                f"dataset settings go under 'metadata: {DATASET_KEY}:' (pandera "
                "keeps 'metadata' but ignores unknown top-level keys)",
            )
        kind = _TOP_KEYS.get(key) if isinstance(key, str) else None
        if kind is None:
            doc.fail(
                (key,), f"unknown key '{key}'{did_you_mean(str(key), list(_TOP_KEYS))}", key=True
            )
        if kind == "columns":
            _check_columns(value, doc)
        elif kind == "checks":
            _check_list_of_checks(value, doc, ("checks",), dtype_kind=None, frame=True)
        elif kind == "metadata":
            check_metadata(value, doc)
        else:
            _check_value(kind, value, doc, (key,))


def _check_columns(columns: Any, doc: Document) -> None:
    if not isinstance(columns, dict) or not columns:
        doc.fail(
            ("columns",), "should be a mapping of column name to its spec, with at least one column"
        )
    for name, spec in columns.items():
        if not isinstance(name, str):
            doc.fail(("columns", name), f"column names are strings; quote {name!r}")
        where: KeyPath = ("columns", name)
        if not isinstance(spec, dict):
            doc.fail(
                where, f"a column's spec is a mapping (e.g. 'dtype: float64'), not {_kind_of(spec)}"
            )
        dtype_kind = _check_dtype(spec.get("dtype"), doc, (*where, "dtype"))
        flat = []
        checks = known_checks()
        for key, value in spec.items():
            kind = _COLUMN_KEYS.get(key) if isinstance(key, str) else None
            if kind == "checks":
                _check_list_of_checks(value, doc, (*where, key), dtype_kind=dtype_kind)
            elif kind == "dtype":
                continue
            elif kind is not None:
                _check_value(kind, value, doc, (*where, key))
            elif key in checks:
                flat.append(key)
                check_arguments(key, value, doc, (*where, key), dtype_kind)
            else:
                options = [*_COLUMN_KEYS, *checks]
                doc.fail(
                    (*where, key),
                    f"unknown check or option '{key}'{did_you_mean(str(key), options)}",
                    key=True,
                )
        if flat and spec.get("checks") is not None:
            doc.fail(
                (*where, flat[0]),
                "write checks either as keys of the column or in its "
                "'checks:' list, not both (pandera would ignore the keys)",
            )


def _check_dtype(value: Any, doc: Document, where: KeyPath) -> str | None:
    """Validate a dtype name; return its kind (number, string, datetime, bool) or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        doc.fail(
            where,
            f"dtype should be a dtype name such as float64, int64 or str, not {_kind_of(value)}",
        )
    try:
        return dtype_kind(value)
    except (TypeError, ValueError):
        doc.fail(where, f"unknown dtype '{value}'{did_you_mean(value, _DTYPE_NAMES)}")


def dtype_kind(name: Any) -> str | None:
    """The kind of values a pandera dtype holds: number, string, datetime, bool or None."""
    import pandas as pd
    from pandera.engines import pandas_engine

    dtype = pandas_engine.Engine.dtype(name)
    native = getattr(dtype, "type", None)
    if native is None:
        return None
    api = pd.api.types
    if api.is_bool_dtype(native):
        return "bool"
    if api.is_numeric_dtype(native):
        return "number"
    if api.is_datetime64_any_dtype(native):
        return "datetime"
    if api.is_string_dtype(native) and not api.is_object_dtype(native):
        return "string"
    return None


# -- checks --------------------------------------------------------------------------------
def _check_list_of_checks(
    value: Any, doc: Document, where: KeyPath, *, dtype_kind: str | None, frame: bool = False
) -> None:
    """The ``checks:`` key: a list of ``{..., options: {check_name: ...}}`` or a mapping."""
    if value is None:
        return
    entries: list[tuple[KeyPath, str, Any]] = []
    if isinstance(value, dict):  # the older {check_name: arguments} form
        entries = [((*where, name), name, v) for name, v in value.items()]
    elif isinstance(value, list):
        for i, entry in enumerate(value):
            here = (*where, i)
            options = entry.get("options") if isinstance(entry, dict) else None
            if not isinstance(options, dict) or "check_name" not in options:
                doc.fail(
                    here,
                    "each entry of a 'checks:' list needs 'options: {check_name: "
                    "...}'; or write the check as a key of the column, e.g. "
                    "'greater_than: 0'",
                )
            args = {k: v for k, v in entry.items() if k != "options"}
            args.update({k: v for k, v in options.items() if k != "check_name"})
            if set(args) == {"value"}:
                args = args["value"]
            entries.append((here, options["check_name"], args if args != {} else None))
    else:
        doc.fail(where, f"should be a list of checks, not {_kind_of(value)}")
    checks = known_checks()
    for here, name, args in entries:
        if name not in checks:
            doc.fail(here, f"unknown check '{name}'{did_you_mean(str(name), checks)}")
        if frame and name in STATISTICAL_CHECKS:
            doc.fail(here, f"'{name}' is a column check; put it under the column it is about")
        check_arguments(name, args, doc, here, dtype_kind)


def check_arguments(
    name: str, value: Any, doc: Document, where: KeyPath, dtype_kind: str | None
) -> None:
    """Validate the arguments of check ``name`` as written in the file.

    ``value`` is the flat form: ``None`` (no arguments), a mapping of arguments
    and options, or a bare value for a check with a single required argument.
    User-registered checks are validated once pandera has built them.
    """
    spec = CHECK_ARGS.get(name)
    if spec is None:
        return
    required = [a for a in spec if a.required]
    if value is None:
        if required:
            doc.fail(where, f"'{name}' needs {_arg_list(required)}")
        return
    if not isinstance(value, dict):
        if len(required) != 1 or len(spec) != 1:
            doc.fail(where, _argument_shape(name, spec))
        _check_arg(spec[0], value, doc, where, dtype_kind, name)
        return
    by_name = {a.name: a for a in spec}
    for key, item in value.items():
        if key in _GROUPED:
            doc.fail(
                (*where, key),
                "grouped checks are not supported: batchguard runs checks "
                "one record batch at a time, and a group may span batches",
            )
        if key in CHECK_OPTIONS:
            _check_value(CHECK_OPTIONS[key], item, doc, (*where, key))
        elif key in by_name:
            _check_arg(by_name[key], item, doc, (*where, key), dtype_kind, name)
        elif key == "value" and len(spec) == 1:
            _check_arg(spec[0], item, doc, (*where, key), dtype_kind, name)
        else:
            known = [*by_name, *CHECK_OPTIONS]
            doc.fail(
                (*where, key),
                key=True,
                problem=f"'{name}' has no argument '{key}'; it takes "
                f"{_arg_list(spec) or 'no arguments'}"
                f"{did_you_mean(str(key), known)}",
            )
    given = set(value) | ({spec[0].name} if "value" in value and len(spec) == 1 else set())
    missing = [a for a in required if a.name not in given]
    if missing:
        doc.fail(where, f"'{name}' needs {_arg_list(missing)}")
    if name in ("in_range", "between"):
        low, high = value["min_value"], value["max_value"]
        if _comparable(low, high) and low > high:
            doc.fail(where, f"min_value {low!r} is above max_value {high!r}")
    if name == "str_length" and not given & {"min_value", "max_value", "exact_value"}:
        doc.fail(where, "'str_length' needs min_value, max_value or exact_value")


def _argument_shape(name: str, spec: tuple[Arg, ...]) -> str:
    if not spec:
        return f"'{name}' takes no arguments; write '{name}:' or '{name}: {{}}'"
    example = f"{name}: {{{spec[0].name}: ...}}"
    return f"'{name}' takes {_arg_list(spec)}; write them as a mapping, e.g. '{example}'"


def _arg_list(args: list[Arg] | tuple[Arg, ...]) -> str:
    return ", ".join(f"{a.name} ({_KIND_HELP[a.kind]})" for a in args)


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or type(a) is type(b)


def _check_arg(
    arg: Arg, value: Any, doc: Document, where: KeyPath, dtype_kind: str | None, check: str
) -> None:
    if arg.kind == "value":
        _check_scalar(value, doc, where, dtype_kind, f"{check}.{arg.name}")
    elif arg.kind == "values":
        if not isinstance(value, list) or not value:
            doc.fail(
                where,
                f"{check}.{arg.name} should be a non-empty list of values, not {_kind_of(value)}",
            )
        for i, item in enumerate(value):
            _check_scalar(item, doc, (*where, i), dtype_kind, f"{check}.{arg.name}[{i}]")
    elif arg.kind == "pattern":
        _check_value("str", value, doc, where)
        try:
            re.compile(value)
        except re.error as exc:
            doc.fail(where, f"{check}.{arg.name} is not a valid regular expression ({exc})")
    else:
        _check_value(arg.kind, value, doc, where)


def _check_scalar(
    value: Any, doc: Document, where: KeyPath, dtype_kind: str | None, what: str
) -> None:
    """A value compared with the column's values: its type must fit the column's dtype."""
    ok: bool
    if dtype_kind == "number":
        ok = _is_number(value)
        if ok and math.isnan(value):
            doc.fail(where, f"{what} is NaN, which never compares true; give a number")
        expected = "a number"
    elif dtype_kind == "string":
        ok, expected = isinstance(value, str), "a string"
    elif dtype_kind == "bool":
        ok, expected = isinstance(value, bool), "true or false"
    elif dtype_kind == "datetime":
        ok = isinstance(value, str | date)
        expected = "a date or time such as '2024-01-01 00:00:00'"
    else:
        ok = value is not None and isinstance(value, str | int | float | bool | date)
        expected = "a single value"
    if not ok:
        doc.fail(where, f"{what} should be {expected} for this column, not {_kind_of(value)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- plain values ------------------------------------------------------------------------------
_KIND_HELP = {
    "bool": "true or false",
    "column": "a column name",
    "fraction_or_null": "a fraction between 0 and 1, or null",
    "positive_or_null": "a positive number, or null",
    "quarantine_outliers": f"one of {', '.join(QUARANTINE_OUTLIERS)}",
    "joint_score": f"one of {', '.join(JOINT_SCORES)}",
    "severities": "a mapping of check name to error, warning or off",
    "str": "a string",
    "str_or_null": "a string",
    "scalar_or_null": "a single value",
    "count": "a non-negative integer",
    "count_or_null": "a non-negative integer or null",
    "fraction": "a fraction between 0 and 1",
    "positive": "a positive number",
    "method": f"one of {', '.join(OUTLIER_METHODS)}",
    "duplicates": "one of exclude_first, exclude_last, all",
    "schema_type": "dataframe",
    "api": "pandas",
    "strict": "true, false or filter",
    "names_or_null": "a column name or a list of them",
    "unsupported_index": "absent",
    "unsupported_dtype": "absent",
    "value": "a value of the column's type",
    "values": "a list of values",
    "pattern": "a regular expression",
}

_VALIDATORS: dict[str, Callable[[Any], bool]] = {
    "bool": lambda v: isinstance(v, bool),
    "column": lambda v: isinstance(v, str),
    "fraction_or_null": lambda v: v is None or (_is_number(v) and 0.0 <= v <= 1.0),
    "positive_or_null": lambda v: v is None or (_is_number(v) and v > 0 and math.isfinite(v)),
    "quarantine_outliers": lambda v: v in QUARANTINE_OUTLIERS,
    "joint_score": lambda v: v in JOINT_SCORES,
    "severities": lambda v: isinstance(v, dict),
    "str": lambda v: isinstance(v, str),
    "str_or_null": lambda v: v is None or isinstance(v, str),
    "scalar_or_null": lambda v: v is None or isinstance(v, str | int | float | bool | date),
    "count": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "count_or_null": lambda v: (
        v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
    ),
    "fraction": lambda v: _is_number(v) and 0.0 <= v <= 1.0,
    "positive": lambda v: _is_number(v) and v > 0 and math.isfinite(v),
    "method": lambda v: v in OUTLIER_METHODS,
    "duplicates": lambda v: v in ("exclude_first", "exclude_last", "all"),
    "schema_type": lambda v: v == "dataframe",
    "api": lambda v: v == "pandas",
    "strict": lambda v: isinstance(v, bool) or v == "filter",
    "names_or_null": lambda v: (
        v is None
        or isinstance(v, str)
        or (isinstance(v, list) and all(isinstance(x, str) for x in v))
    ),
    "unsupported_index": lambda v: v is None,
    "unsupported_dtype": lambda v: v is None,
}

_UNSUPPORTED = {
    "unsupported_index": "a pandas index is not supported: batchguard reads tables, whose "
    "rows have no index; remove it",
    "unsupported_dtype": "a dataframe-wide dtype is not supported; give each column its dtype",
}


def _check_value(kind: str, value: Any, doc: Document, where: KeyPath) -> None:
    if kind == "dtype":
        _check_dtype(value, doc, where)
        return
    if _VALIDATORS[kind](value):
        return
    if kind in _UNSUPPORTED:
        doc.fail(where, _UNSUPPORTED[kind])
    doc.fail(where, f"should be {_KIND_HELP[kind]}, not {_kind_of(value)}")


#: a number in exponent form that YAML 1.1 reads as a string (no dot, or no sign in the exponent)
_EXPONENT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        if _EXPONENT.fullmatch(value):
            # YAML 1.1, which PyYAML and so pandera read, takes 1e6 for text.
            return f"the string {value!r} (YAML reads it as text: write it as 1.0e+6 does)"
        return f"the string {value!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


# -- the dataset block -------------------------------------------------------------------------
def check_metadata(value: Any, doc: Document) -> None:
    """``metadata:``: free-form for the user, except batchguard's own block."""
    if value is None:
        return
    if not isinstance(value, dict):
        doc.fail(("metadata",), f"should be a mapping, not {_kind_of(value)}")
    for key in value:
        if key != DATASET_KEY and did_you_mean(str(key), [DATASET_KEY]):
            doc.fail(
                ("metadata", key), f"unknown key '{key}'; did you mean '{DATASET_KEY}'?", key=True
            )
    if DATASET_KEY in value:
        check_settings(value[DATASET_KEY], doc, ("metadata", DATASET_KEY))


def _check_drift(value: Any, doc: Document, where: KeyPath) -> None:
    """The drift block, read as :class:`~pipeline.drift.DriftConfig` reads it (errors at a line)."""
    from ..drift import DriftConfig

    def fail(path: tuple[Any, ...], problem: str) -> NoReturn:
        doc.fail((*where, *path), problem)

    DriftConfig.from_mapping(value, fail)


def check_settings(block: Any, doc: Document, where: KeyPath) -> dict[str, Any]:
    """Validate the dataset block; return it as ValidationOptions keyword arguments."""
    if block is None:
        return {}
    if not isinstance(block, dict):
        doc.fail(where, f"should be a mapping of settings, not {_kind_of(block)}")
    known = ", ".join([*DATASET_SETTINGS, DRIFT_KEY])
    for key, value in block.items():
        here = (*where, key)
        if key == DRIFT_KEY:
            _check_drift(value, doc, here)
            continue
        if key not in DATASET_SETTINGS:
            doc.fail(
                here,
                key=True,
                problem=f"unknown setting '{key}'"
                + (
                    did_you_mean(str(key), [*DATASET_SETTINGS, DRIFT_KEY])
                    or f"; settings are {known}"
                ),
            )
        kind = DATASET_SETTINGS[key]
        if not _VALIDATORS[kind](value):
            doc.fail(here, f"should be {_KIND_HELP[kind]}, not {_kind_of(value)}")
        if key == "severities":
            for code, level in value.items():
                if code not in REASONS:
                    doc.fail(
                        (*here, code),
                        f"unknown check '{code}'{did_you_mean(str(code), list(REASONS))}",
                        key=True,
                    )
                if level not in SEVERITY_CHOICES:
                    doc.fail(
                        (*here, code), f"should be error, warning or off, not {_kind_of(level)}"
                    )
    return dict(block)
