"""Public names that a package imports only when they are first used (PEP 562).

:mod:`pipeline` and :mod:`pipeline.schema` use this so that importing them stays
cheap: numpy, pyarrow and the rest load with the submodule that needs them. Only
the standard library is imported here, for the same reason.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(
    package: str, names: Mapping[str, str], namespace: MutableMapping[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each public name from its submodule on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : mapping of str to str
        Public name -> the submodule of ``package`` that defines it (``"errors"``
        for ``package.errors``).
    namespace : mutable mapping
        The package's ``globals()``: a name is stored there once loaded, so
        ``__getattr__`` is not called for it again.

    Returns
    -------
    callable
        ``__getattr__(name)``; raises :class:`AttributeError` for a name not in ``names``.

    Examples
    --------
    >>> __getattr__ = lazy_getattr(__name__, {"Schema": "model"}, globals())  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    return __getattr__
