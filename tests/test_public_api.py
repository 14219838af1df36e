"""The public names of ``pipeline``: pinned, resolvable, and cheap to import."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from importlib.metadata import version

import pipeline
from tests.conftest import ROOT

PUBLIC = [
    "BadBatchError", "Batch", "BatchguardError", "ColumnProfile", "Finding", "Guard",
    "Preprocessor", "Profile", "Report", "RobustScaler", "Schema", "SchemaFileError", "Source",
    "SourceError", "StratifiedBatchSampler", "UsageError", "ValidationOptions", "__version__",
    "fit", "guard", "guarded_collate", "infer_schema", "load_schema", "lr_find", "make_loader",
    "open_source", "profile", "validate",
    "StabilityMonitor", "Verdict",
]  # fmt: skip


#: the public functions, and the modules they are defined in
FUNCTIONS = ["fit", "guard", "guarded_collate", "infer_schema", "load_schema", "lr_find",
             "make_loader", "open_source", "profile", "validate"]  # fmt: skip
FUNCTION_MODULES = ["pipeline.validation", "pipeline.loader", "pipeline.preprocess",
                    "pipeline.profiling", "pipeline.guarding", "pipeline.source",
                    "pipeline.schema", "pipeline.lr_finder"]  # fmt: skip


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
    # Importing a submodule sets it as an attribute of the package, whatever was looked
    # up before, so checking in this process after the imports is enough.
    for module in FUNCTION_MODULES:
        importlib.import_module(module)
    for name in FUNCTIONS:
        obj = getattr(pipeline, name)
        assert callable(obj) and not isinstance(obj, types.ModuleType), name


def test_import_is_light():
    code = (
        "import sys, pipeline\n"
        "heavy = [m for m in ('torch', 'pandas', 'pandera', 'sklearn', 'pyarrow', 'numpy', 'ray')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
