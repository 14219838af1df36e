"""The public names of ``pipeline``: pinned, resolvable, and cheap to import."""

from __future__ import annotations

import subprocess
import sys

import pipeline
from tests.conftest import ROOT

PUBLIC = [
    "BadBatchError", "Batch", "BatchguardError", "ColumnProfile", "Finding", "Guard", "Profile",
    "Report", "RobustScaler", "Schema", "SchemaFileError", "Source", "SourceError",
    "StratifiedBatchSampler", "UsageError", "ValidationOptions", "__version__", "guard",
    "guarded_collate", "infer_schema", "load_schema", "make_loader", "open_source", "profile",
    "validate",
]  # fmt: skip


def test_public_names_are_pinned_and_resolve():
    assert pipeline.__all__ == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(pipeline, name) is not None


def test_functions_stay_functions_after_their_modules_load():
    """A submodule named like a public function must not shadow it once imported."""
    code = (
        "import pipeline, pipeline.validation, pipeline.loader\n"
        "import importlib\n"
        "for name in ('profile', 'guard', 'validate', 'make_loader', 'infer_schema'):\n"
        "    assert callable(getattr(pipeline, name)) and not isinstance(\n"
        "        getattr(pipeline, name), type(importlib)), name\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_import_is_light():
    code = (
        "import sys, pipeline\n"
        "heavy = [m for m in ('torch', 'pandas', 'pandera', 'sklearn', 'pyarrow', 'numpy', 'ray')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
