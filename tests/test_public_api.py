"""The public names of ``pipeline``: pinned, resolvable, and cheap to import."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

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
    assert pipeline.__version__ == version("batchguard")
    for name in PUBLIC:
        if name == "__version__":
            continue
        # each lazy name resolves to the class or function of that name in the package
        obj = getattr(pipeline, name)
        assert obj.__name__ == name and obj.__module__.startswith("pipeline."), name
        assert name in dir(pipeline)


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
