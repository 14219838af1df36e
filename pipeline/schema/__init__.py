"""Declarative schemas: pandera YAML files with batchguard's statistical checks.

A schema file is pandera's own YAML format (what ``DataFrameSchema.to_yaml``
writes), so pandera can load it too once :mod:`pipeline` has been imported
(that registers ``is_finite``, ``max_nan_fraction``, ``max_null_fraction``,
``not_constant``, ``max_top_value_fraction`` and ``outliers`` with pandera).
batchguard's dataset-level settings live in ``metadata: batchguard:``.
See ``docs/schemas.md`` for the format.

Modules: :mod:`~.registered` (the pandera checks), :mod:`~._yaml` (safe
reading), :mod:`~.spec` (strict validation), :mod:`~.model` (``Schema``,
``load_schema``), :mod:`~.plan` (``SchemaPlan``: what the streaming engine
runs), :mod:`~.infer` (``infer_schema``).

Names are imported lazily: :mod:`pipeline` imports :mod:`.registered` the
moment pandera is imported, and that should not pull in the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr as _lazy_getattr

_LAZY = {
    "Schema": "model",
    "load_schema": "model",
    "SchemaPlan": "plan",
    "as_plan": "plan",
    "infer_schema": "infer",
}

__all__ = sorted([*_LAZY, "install_pandera_hook"])


def install_pandera_hook() -> None:
    """Register batchguard's checks with pandera as soon as pandera is imported.

    :mod:`pipeline` calls this on import; see :mod:`pipeline.schema._hook`.
    """
    from ._hook import install

    install()


__getattr__ = _lazy_getattr(__name__, _LAZY, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers; the names load lazily above
    from .infer import infer_schema  # noqa: F401
    from .model import Schema, load_schema  # noqa: F401
    from .plan import SchemaPlan, as_plan  # noqa: F401
