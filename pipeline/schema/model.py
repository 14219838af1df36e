"""A schema: a pandera ``DataFrameSchema`` plus batchguard's dataset settings.

The settings (label column, gate thresholds, outlier defaults) live in the
schema's ``metadata`` under the key ``batchguard``. pandera 0.35 reads
``metadata`` from YAML into ``DataFrameSchema.metadata`` (and ignores unknown
top-level keys), so a schema loaded by pandera itself keeps them, and
``validate(source, that_schema)`` behaves exactly like ``validate(source,
"schemas/x.yaml")``. pandera's own ``to_yaml`` does not write ``metadata``;
:meth:`Schema.to_yaml` does.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SchemaFileError
from ..options import DATASET_SETTINGS
from . import registered
from ._yaml import YamlRefused, load
from .spec import CHECK_ARGS, DATASET_KEY, DRIFT_KEY, Document, check_document, check_settings

if TYPE_CHECKING:
    from pandera.api.pandas.container import DataFrameSchema

    from ..drift import DriftConfig

__all__ = ["MAX_SCHEMA_BYTES", "SETTINGS", "Schema", "load_schema", "schema_from_dict"]

#: refuse schema files larger than this: a schema is a page of text, not data
MAX_SCHEMA_BYTES = 4 << 20

#: dataset settings in the order they are written (drift thresholds last)
SETTINGS = (*DATASET_SETTINGS, DRIFT_KEY)


@dataclass
class Schema:
    """What a dataset must look like: pandera column checks plus dataset-level settings.

    Parameters
    ----------
    pandera : pandera.DataFrameSchema
        Columns, dtypes, nullability and checks; the dataset settings are in
        ``pandera.metadata["batchguard"]``.
    path : str, optional
        The file it was read from.
    notes : list of str
        What inference wants the user to know (e.g. columns holding NaN).

    Examples
    --------
    >>> import pipeline, pandera.pandas as pa
    >>> schema = Schema(pa.DataFrameSchema({"x": pa.Column(float, pa.Check.is_finite())},
    ...                                    metadata={"batchguard": {"label": "y"}}))
    >>> schema.settings
    {'label': 'y'}
    """

    pandera: DataFrameSchema
    path: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def settings(self) -> dict[str, Any]:
        """The dataset-level settings (``metadata.batchguard``), as ValidationOptions keywords.

        The drift thresholds are not among them: see :attr:`drift`.
        """
        settings = self._block()
        settings.pop(DRIFT_KEY, None)
        return settings

    @property
    def drift(self) -> DriftConfig | None:
        """The drift thresholds of the dataset block (``drift:``), or ``None``."""
        block = self._block().get(DRIFT_KEY)
        if block is None:
            return None
        from ..drift import DriftConfig

        return DriftConfig.from_mapping(block)

    def _block(self) -> dict[str, Any]:
        block = (self.pandera.metadata or {}).get(DATASET_KEY) or {}
        return check_settings(block, Document(self.path or "schema"), ("metadata", DATASET_KEY))

    @property
    def columns(self) -> list[str]:
        """The column names (or patterns) the schema describes."""
        return [str(name) for name in self.pandera.columns]

    def to_dict(self) -> dict[str, Any]:
        """The schema as pandera's YAML layout (flat checks) plus ``metadata``."""
        from pandera.io.pandas_io import serialize_schema

        out = serialize_schema(self.pandera)
        for spec in (out.get("columns") or {}).values():
            if isinstance(spec, dict):
                _tidy_checks(spec)
        metadata = dict(self.pandera.metadata or {})
        if DATASET_KEY in metadata:
            block = metadata[DATASET_KEY] or {}
            metadata[DATASET_KEY] = {k: block[k] for k in SETTINGS if k in block}
        if metadata:
            out["metadata"] = metadata
        return out

    def to_yaml(self, path: str | os.PathLike[str] | None = None, *, header: str = "") -> str:
        """The schema as YAML; also written to ``path`` (atomically) when given.

        Parameters
        ----------
        path : str or os.PathLike, optional
        header : str
            Comment lines put at the top (each is prefixed with ``# ``).

        Returns
        -------
        str
        """
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)
        # `is_finite:` reads better than pandera's `is_finite: null` (both load the same).
        text = _NO_ARGUMENTS.sub(r"\1:", text)
        if header:
            text = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + text
        if path is not None:
            from .._atomic import write_text

            write_text(path, text)
        return text


_NO_ARGUMENTS = re.compile(
    r"^(\s+(?:" + "|".join(registered.STATISTICAL_CHECKS) + r")): null$", re.MULTILINE
)


def _tidy_checks(spec: dict[str, Any]) -> None:
    """Drop what pandera writes but would rebuild the same way on reading.

    pandera serialises in_range's default ``include_min/max: true``, and for
    our checks ``ignore_na: false`` (their default, not pandera's) and an
    ``error`` text equal to the default one: noise in a file people edit.
    """
    for name, value in list(spec.items()):
        if name == "in_range" and isinstance(value, dict):
            for bound in ("include_min", "include_max"):
                if value.get(bound) is True:  # pandera's default
                    del value[bound]
        if name not in registered.STATISTICAL_CHECKS or not isinstance(value, dict):
            continue
        if value.get("ignore_na") is False:
            del value["ignore_na"]
        if str(value.get("error", "")).startswith(f"{name}("):
            del value["error"]
        stats = registered.STATISTICAL_CHECKS[name]
        if not value:
            spec[name] = None
        elif len(value) == 1 and len(stats) == 1 and stats[0] in value:
            spec[name] = value[stats[0]]


def load_schema(path: str | os.PathLike[str]) -> Schema:
    """Read and strictly validate a schema file.

    Parameters
    ----------
    path : str or os.PathLike
        A pandera YAML schema (see ``docs/schemas.md``).

    Returns
    -------
    Schema

    Raises
    ------
    SchemaFileError
        The file is missing or unreadable, is not safe plain YAML (aliases,
        Python tags, duplicate keys), or has an unknown key, an unknown or
        misspelt check, an argument of the wrong type, or an invalid setting.
        The message names the file, the line, the key or column, and what is
        expected.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "s.yaml")
    >>> _ = open(path, "w").write("columns:\\n  x:\\n    dtype: float64\\n    greter_than: 0\\n")
    >>> try:
    ...     load_schema(path)
    ... except SchemaFileError as exc:
    ...     print(str(exc).split(": ", 1)[1])
    column 'x' (line 4): unknown check or option 'greter_than'; did you mean 'greater_than'?
    """
    name = os.fspath(path)
    text = _read(name)
    try:
        data, lines = load(text)
    except YamlRefused as exc:
        raise SchemaFileError(f"{name}: {exc}") from None
    return schema_from_dict(data, Document(name, lines))


def _read(name: str) -> str:
    target = Path(name)
    if not target.is_file():
        what = (
            "is a directory" if target.is_dir()
            else "is not a regular file" if target.exists() else "no such file"
        )  # fmt: skip
        raise SchemaFileError(f"{name}: {what}; pass a schema YAML file (see schemas/)")
    if target.stat().st_size > MAX_SCHEMA_BYTES:
        raise SchemaFileError(
            f"{name}: {target.stat().st_size:,} bytes is too large for a schema "
            f"(limit {MAX_SCHEMA_BYTES:,}); is this the data file?"
        )
    try:
        return target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaFileError(f"{name}: cannot read the schema ({exc})") from exc


def schema_from_dict(data: Any, doc: Document) -> Schema:
    """Validate a parsed schema document and build it with pandera.

    Raises
    ------
    SchemaFileError
        As :func:`load_schema`.
    """
    registered.register()
    check_document(data, doc)
    from pandera.io.pandas_io import deserialize_schema

    try:
        # pandera pops keys out of the mappings it reads: give it a copy.
        built = deserialize_schema(copy.deepcopy(data))
    except Exception as exc:  # noqa: BLE001 - whatever pandera rejects, name the file
        raise SchemaFileError(
            f"{doc.path}: pandera cannot build this schema ({type(exc).__name__}: {exc})"
        ) from exc
    _check_custom_arguments(built, doc)
    return Schema(built, path=doc.path)


def _check_custom_arguments(built: DataFrameSchema, doc: Document) -> None:
    """User-registered checks: pandera passes unknown arguments on to the check function
    and fails only when it runs; catch them here instead."""
    for name, column in built.columns.items():
        for check in column.checks:
            if check.name in CHECK_ARGS:  # validated before pandera built them
                continue
            extra = sorted(getattr(check, "_check_kwargs", None) or {})
            if extra:
                known = ", ".join(check.statistics or {}) or "no arguments"
                doc.fail(
                    ("columns", name, check.name),
                    f"'{check.name}' has no argument '{extra[0]}'; it takes {known}",
                )
