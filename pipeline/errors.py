"""Exceptions raised by batchguard.

Every exception is both a :class:`BatchguardError` and the matching builtin,
so callers can catch either::

    BatchguardError
    ├── UsageError(ValueError)         bad options or arguments       -> exit 2
    ├── SourceError(ValueError)        missing, unreadable, malformed input -> exit 2
    ├── SchemaFileError(ValueError)    a schema file that cannot be used -> exit 2
    └── BadBatchError(ValueError)      guard(on_bad="raise") found bad rows

Messages follow one shape: what failed, where (file, column, rows), what was
found against what was expected, and what to do next.
"""

from __future__ import annotations

__all__ = ["BadBatchError", "BatchguardError", "SchemaFileError", "SourceError", "UsageError"]


class BatchguardError(Exception):
    """Base class of every error batchguard raises on purpose (the command line exits 2)."""


class UsageError(BatchguardError, ValueError):
    """An option or argument has a value batchguard cannot use.

    Example: ``batch_size should be a positive integer value, but got batch_size=0``.
    """


class SourceError(BatchguardError, ValueError):
    """The dataset cannot be read.

    Example: ``data.parquet: not a parquet file (no PAR1 magic bytes); pass a
    .parquet, .csv, .arrow/.feather file or a directory of them``.
    """


class SchemaFileError(BatchguardError, ValueError):
    """A schema file is malformed or does not fit the data's structure.

    Example: ``schemas/train.yaml: column 'age': unknown check 'greter_than';
    did you mean 'greater_than'?``.
    """


class BadBatchError(BatchguardError, ValueError):
    """A live training batch failed the guard and ``on_bad="raise"`` was asked for.

    Example: ``batch 12 has 2 bad rows: row 4101 (nan in 'age'), row 4177 (inf in 'fare')``.
    """
