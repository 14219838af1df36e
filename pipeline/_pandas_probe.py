"""pyarrow's pandas probe, answered without importing pandas: for the command line's runs.

pyarrow imports pandas on its first conversion of any kind (``pa.array``,
``pa.scalar``, reading a parquet file into a table, ...) only to ask whether the
input is a pandas object. In a process that has not loaded pandas, that import
takes 0.5-0.7 s and about 100 MB: a fifth of a whole ``validate`` run on 5M
rows, spent on a question whose answer is "no", since the command hands pyarrow
files and numpy arrays only.

:func:`defer_pandas_probe` runs the probe once while ``import pandas`` fails, so
that pyarrow records "no pandas". Its Python side is switched back on the moment
anything imports pandas, so Series and DataFrames still convert as pandas
objects (nulls stay nulls, categoricals stay dictionaries). Its C++ side keeps
the answer for the process: pandas' missing-value markers (``pd.NA``,
``pd.NaT``) inside Python lists and object arrays are no longer recognised.
That is why the ``validate`` command calls it only for runs that load no pandas
by design (no schema, whose checks run on pandas Series; the local engine,
since Ray loads pandas), and a library call never does.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

__all__ = ["defer_pandas_probe"]


class _RefusePandas:
    """A finder under which ``import pandas`` fails, for the one probe."""

    def find_spec(self, name: str, path: Sequence[str] | None = None, target: Any = None) -> None:
        if name == "pandas":
            raise ModuleNotFoundError("pandas is not imported for pyarrow's probe")


class _RearmOnPandas:
    """A finder that lets pandas load as usual, then switches pyarrow's pandas support on."""

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: Any = None
    ) -> ModuleSpec | None:
        if name != "pandas":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)  # the real one, from the finders left
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        load = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            load(module)
            _rearm_pyarrow()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _rearm_pyarrow() -> None:
    import pyarrow.lib

    # ``compat`` retries the import when the probe found no pandas; pandas is in
    # sys.modules by now, so this only records it.
    try:
        pyarrow.lib._pandas_api.compat  # noqa: B018
    except ImportError:  # a pandas that pyarrow does not support: as without the probe
        pass


def defer_pandas_probe() -> bool:
    """Answer pyarrow's pandas probe without importing pandas, until pandas is imported.

    Returns
    -------
    bool
        Whether the probe was answered (not when pandas is already loaded: then
        the cost is paid).
    """
    if "pandas" in sys.modules:
        return False
    import pyarrow as pa

    refuse = _RefusePandas()
    sys.meta_path.insert(0, refuse)
    try:
        pa.array([0])  # both of pyarrow's probes (its Cython and its C++ side) run here
    finally:
        sys.meta_path.remove(refuse)
    if "pandas" in sys.modules:  # it was loaded after all (another thread)
        _rearm_pyarrow()
        return False
    sys.meta_path.insert(0, _RearmOnPandas())
    return True
