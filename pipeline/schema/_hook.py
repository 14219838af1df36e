"""Register batchguard's checks with pandera as soon as pandera is imported.

``import pipeline`` must stay light (no pandas, no pandera: the ``validate``
command starts in a fraction of a second), yet a user who then writes
``DataFrameSchema.from_yaml("schemas/credit.yaml")`` needs our checks
registered. So: if pandera is already imported, register now; otherwise put a
one-shot finder first on ``sys.meta_path`` that lets the normal finders locate
pandera and wraps its loader, registering right after pandera's own module
code has run.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType
from typing import Any


def register_now() -> None:
    """Register the checks; warn instead of failing, so ``import pandera`` never breaks."""
    try:
        from .registered import register

        register()
    except Exception as exc:  # noqa: BLE001 - the user's import must survive
        warnings.warn(
            f"batchguard could not register its checks with pandera ({exc}); schema files "
            "using them will not load in pandera",
            RuntimeWarning,
            stacklevel=2,
        )


# Plain classes, not importlib.abc subclasses: importing importlib.abc costs the
# command line several milliseconds at every start, and the import system only
# needs these methods.
class _AfterPanderaLoads:
    """pandera's own loader, followed by :func:`register_now`."""

    def __init__(self, loader: Any):
        self._loader = loader

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        register_now()

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class PanderaImportHook:
    """Finds nothing itself; wraps the loader of the first ``import pandera``."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "pandera":
            return None
        if self in sys.meta_path:  # one shot: later imports are sys.modules hits
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _AfterPanderaLoads(spec.loader)
        return spec


def install() -> None:
    """Register with pandera now if it is loaded, else when it is first imported."""
    if "pandera" in sys.modules:
        register_now()
    elif not any(isinstance(f, PanderaImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, PanderaImportHook())
