"""batchguard: validate training data before it destabilises PyTorch training.

Public names are imported lazily, so ``import pipeline`` (and the ``validate``
command's start-up) stays fast: torch, pandas, pandera and scikit-learn load
only when the name that needs them is first used.

``import pipeline`` also makes batchguard's statistical checks (``is_finite``,
``max_nan_fraction``, ...) known to pandera, so ``DataFrameSchema.from_yaml``
can read a batchguard schema file: at once if pandera is already imported,
otherwise the moment it is (pandera is not imported on our account).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr as _lazy_getattr

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "BatchguardError": "errors",
    "SchemaFileError": "errors",
    "SourceError": "errors",
    "UsageError": "errors",
    "BadBatchError": "errors",
    "Source": "source",
    "open_source": "source",
    "Profile": "profiling",
    "ColumnProfile": "profiling",
    "profile": "profiling",
    "Finding": "findings",
    "Report": "report",
    "validate": "validation",
    "RobustScaler": "scaler",
    "StratifiedBatchSampler": "sampler",
    "make_loader": "preprocess",
    "fit": "preprocess",
    "Preprocessor": "preprocess",
    "Batch": "loader",
    "guard": "guarding",
    "guarded_collate": "guarding",
    "Guard": "guarding",
    "ValidationOptions": "options",
    "Schema": "schema",
    "load_schema": "schema",
    "infer_schema": "schema",
    "lr_find": "lr_finder",
    "StabilityMonitor": "monitor",
    "Verdict": "monitor",
}

__all__ = sorted([*_LAZY, "__version__"])


__getattr__ = _lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from .errors import BadBatchError, BatchguardError, SchemaFileError, SourceError, UsageError
    from .findings import Finding
    from .guarding import Guard, guard, guarded_collate
    from .loader import Batch
    from .options import ValidationOptions
    from .preprocess import Preprocessor, fit, make_loader
    from .profiling import ColumnProfile, Profile, profile
    from .report import Report
    from .sampler import StratifiedBatchSampler
    from .scaler import RobustScaler
    from .schema import Schema, infer_schema, load_schema
    from .source import Source, open_source
    from .validation import validate

# Let pandera read schema files that use batchguard's checks (see pipeline/schema/_hook.py).
from .schema import install_pandera_hook as _install_pandera_hook  # noqa: E402

_install_pandera_hook()
