"""Robust scaling: centre each feature on its median, divide by a quantile range.

:class:`RobustScaler` follows scikit-learn's estimator contract and gives the
same ``center_`` and ``scale_`` as :class:`sklearn.preprocessing.RobustScaler`,
with three additions for training pipelines:

* ``fit`` also takes a dataset source (a path or :class:`pipeline.source.Source`)
  and computes the *exact* medians and quantiles in a bounded amount of memory,
  streaming the data, usually once, instead of loading it (the algorithm:
  :func:`pipeline._quantiles.exact_quantiles`);
* features whose quantile range is zero get scale 1, as in scikit-learn, and a
  ``zero_iqr`` :class:`~pipeline.findings.Finding` that says so;
* :meth:`RobustScaler.to_torch` turns the fitted scaler into a
  ``torch.nn.Module`` (``TorchRobustScaler``) whose ``center``/``scale`` buffers
  move to the GPU with the model.

torch is imported only when ``to_torch`` or ``TorchRobustScaler`` is first used.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import FLOAT_DTYPES, check_array, check_is_fitted, validate_data

from ._atomic import write_text
from ._quantiles import ChunkReader, close_iterator, exact_quantiles, inf_error
from .errors import UsageError
from .findings import Finding
from .profiling import is_feature_type
from .source import Source, open_source

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

# TorchRobustScaler subclasses torch.nn.Module, so __getattr__ (at the end) makes it on
# first use, and torch loads only then.
__all__ = ["RobustScaler", "TorchRobustScaler"]  # noqa: F822

_SAVE_FORMAT = "batchguard.RobustScaler"
_SAVE_VERSION = 1

#: tiny source batches are joined up to this many rows so that per-batch overheads stay small
_MIN_CHUNK_ROWS = 1 << 16


# --------------------------------------------------------------------------------------------
# Reading a source column by column, float32 kept as float32
# --------------------------------------------------------------------------------------------
def _source_columns(src: Source, columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        chosen = [c for c in src.columns if is_feature_type(src.schema.field(c).type)]
        if not chosen:
            raise UsageError(
                f"{src.path}: no numeric columns to scale (columns are {src.columns}); "
                "RobustScaler scales integer, floating-point, decimal and boolean columns"
            )
        return chosen
    if isinstance(columns, str):
        raise UsageError(f"columns should be a list of column names, but got columns={columns!r}")
    chosen = list(columns)
    for name in chosen:
        if name not in src.columns:
            raise UsageError(f"{src.path}: no column named {name!r}; columns are {src.columns}")
        typ = src.schema.field(name).type
        if not is_feature_type(typ):
            raise UsageError(
                f"{src.path}: column {name!r} is {typ}, not numeric; "
                "RobustScaler scales integer, floating-point, decimal and boolean columns: "
                "leave it out of columns"
            )
    if not chosen:
        raise UsageError("columns should name at least one column, but got columns=[]")
    return chosen


def _as_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float32 and float64 columns without a copy where possible; others as float64.

    Nulls become NaN. float16 widens to float32; integers, decimals, booleans (0/1) and
    dictionary-encoded columns become float64 (``safe=False``: int64 beyond 2**53 and
    decimals with more digits round, as numpy's ``astype(float)`` does).
    """
    typ = array.type
    if pa.types.is_float16(typ):
        array = array.cast(pa.float32())
    elif not (pa.types.is_float32(typ) or pa.types.is_float64(typ)):
        array = array.cast(pa.float64(), safe=False)
    return np.asarray(array.to_numpy(zero_copy_only=False))


def _source_reader(src: Source, columns: list[str]) -> ChunkReader:
    def read() -> Iterator[list[np.ndarray]]:
        pending: list[list[np.ndarray]] = []
        rows = 0
        batches = src.iter_batches(columns=columns)
        try:
            for batch in batches:
                # Select by name: the batch also carries the `_row_id` column.
                pending.append([_as_numpy(batch.column(name)) for name in columns])
                rows += batch.num_rows
                if rows >= _MIN_CHUNK_ROWS:
                    yield _join(pending)
                    pending, rows = [], 0
        finally:
            close_iterator(batches)  # stop the source's read-ahead when the pass stops early
        if pending:
            yield _join(pending)

    return read


def _join(parts: list[list[np.ndarray]]) -> list[np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return [np.concatenate(column) for column in zip(*parts, strict=True)]


# --------------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------------
def _reject_inf(X: np.ndarray, names: Sequence[str]) -> None:
    # A cheap whole-array test first; locate the column only when it trips (NaN trips it too).
    if X.size == 0 or np.isfinite(X.sum()):
        return
    bad = np.flatnonzero(np.isinf(X).any(axis=0))
    if bad.size:
        raise inf_error(names[bad[0]], "Input X contains infinity: ")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise UsageError(f"{name} should be True or False, but got {name}={value!r}")


def _is_source(X: Any) -> bool:
    return isinstance(X, (str, os.PathLike, Source))


class RobustScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Centre features on their median and scale them by a quantile range.

    The scikit-learn estimator, with the same parameters and results as
    :class:`sklearn.preprocessing.RobustScaler` (dense input), plus streamed exact
    fitting from a dataset source, a ``zero_iqr`` finding per degenerate feature,
    optional clipping, a torch module and JSON persistence.

    Parameters
    ----------
    with_centering : bool, default True
        Subtract the median.
    with_scaling : bool, default True
        Divide by the quantile range ``q_max - q_min``.
    quantile_range : tuple of float, default (25.0, 75.0)
        ``(q_min, q_max)``, percentiles with ``0 <= q_min <= q_max <= 100``.
    copy : bool, default True
        False scales float arrays in place where possible.
    unit_variance : bool, default False
        Also divide by the quantile range of the standard normal distribution, so that
        normally distributed features get variance 1 (needs ``0 < q_min < q_max < 100``).
    clip : float or None, default None
        After scaling, clip values to ``[-clip, clip]`` (NaN stays NaN). Clipped values do
        not come back from :meth:`inverse_transform`.

    Attributes
    ----------
    center_ : ndarray of shape (n_features,) or None
        Per-feature median (NaN ignored); None without centering.
    scale_ : ndarray of shape (n_features,) or None
        Per-feature quantile range; 1 where it is below 10 machine epsilons (as
        scikit-learn's ``_handle_zeros_in_scale``); None without scaling.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame or a source.
    zero_iqr_features_ : ndarray of int
        Indices of the features whose quantile range was zero (scale set to 1).
    findings_ : list of Finding
        One ``zero_iqr`` warning per such feature.

    Notes
    -----
    NaN is ignored when fitting and kept when transforming; +inf or -inf raise a
    ``ValueError`` (quarantine those rows with ``validate`` first). Sparse input is
    not supported.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [-2.0, 1.0], [4.0, 2.0], [np.nan, 3.0]])
    >>> scaler = RobustScaler().fit(X)
    >>> scaler.center_.tolist(), scaler.scale_.tolist()
    ([1.0, 1.5], [3.0, 1.5])
    >>> scaler.transform([[4.0, 3.0], [np.nan, 0.0]]).tolist()
    [[1.0, 1.0], [nan, -1.0]]
    """

    def __init__(
        self,
        *,
        with_centering: bool = True,
        with_scaling: bool = True,
        quantile_range: tuple[float, float] = (25.0, 75.0),
        copy: bool = True,
        unit_variance: bool = False,
        clip: float | None = None,
    ) -> None:
        self.with_centering = with_centering
        self.with_scaling = with_scaling
        self.quantile_range = quantile_range
        self.copy = copy
        self.unit_variance = unit_variance
        self.clip = clip

    # -- parameters ------------------------------------------------------------------------------
    def _checked_range(self) -> tuple[float, float]:
        for name in ("with_centering", "with_scaling", "copy", "unit_variance"):
            _check_bool(name, getattr(self, name))
        self._check_clip()
        qr = self.quantile_range
        ok = (
            isinstance(qr, Sequence)
            and len(qr) == 2
            and all(isinstance(q, Real) and not isinstance(q, bool) for q in qr)
            and 0 <= qr[0] <= qr[1] <= 100
        )
        if not ok:
            raise UsageError(
                "quantile_range should be a pair (q_min, q_max) with 0 <= q_min <= q_max <= 100, "
                f"but got quantile_range={qr!r}"
            )
        if self.unit_variance and not 0 < qr[0] < qr[1] < 100:
            # The normal quantiles of 0 and 100 are infinite: every scale would become 0.
            raise UsageError(
                "unit_variance=True needs 0 < q_min < q_max < 100, but got "
                f"quantile_range={qr!r}; narrow the range or set unit_variance=False"
            )
        return float(qr[0]), float(qr[1])

    def _check_clip(self) -> None:
        c = self.clip
        if c is not None and not (isinstance(c, Real) and not isinstance(c, bool) and c > 0):
            raise UsageError(f"clip should be None or a positive number, but got clip={c!r}")

    def _names(self, n_features: int) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            return [f"x{i}" for i in range(n_features)]
        return [str(n) for n in names]

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *, columns: Sequence[str] | None = None) -> RobustScaler:
        """Compute the median and quantile range of every feature.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), DataFrame, path or Source
            In-memory data, or a dataset source (a parquet/CSV/Arrow file or directory,
            or a :class:`~pipeline.source.Source`). A source is streamed, never loaded
            whole, and gives exact results (those of the data as float64) in bounded
            memory (see :func:`pipeline._quantiles.exact_quantiles`: usually one pass;
            at most 4M collected values plus a 65,536-value sample per column); float32
            columns are compared as float32, other numeric columns (integers, decimals,
            booleans as 0/1) read as float64; nulls count as NaN.
        y : None
            Ignored.
        columns : list of str, optional
            For a source: the columns to scale; default all numeric and boolean columns
            (:func:`pipeline.profiling.is_feature_type`, the rule ``make_loader`` follows).

        Returns
        -------
        RobustScaler
            ``self``, fitted.

        Raises
        ------
        ValueError
            +inf or -inf in the data; a parameter out of range (:class:`UsageError`).
        """
        q_min, q_max = self._checked_range()
        if _is_source(X):
            center, quantiles = self._fit_source(X, columns)
        else:
            if columns is not None:
                raise UsageError(
                    "columns= applies to a dataset source; for a DataFrame, select the "
                    "columns first: scaler.fit(df[columns])"
                )
            X = validate_data(self, X, dtype=FLOAT_DTYPES, ensure_all_finite=False, reset=True)
            _reject_inf(X, self._names(X.shape[1]))
            center = np.nanmedian(X, axis=0) if self.with_centering else None
            quantiles = np.nanpercentile(X, [q_min, q_max], axis=0) if self.with_scaling else None
        self.center_ = center
        self._set_scale(quantiles, q_min, q_max)
        return self

    def _fit_source(self, X: Any, columns: Sequence[str] | None) -> tuple[Any, Any]:
        src = open_source(X)
        names = _source_columns(src, columns)
        center, quantiles, counts = exact_quantiles(
            _source_reader(src, names),
            names,
            list(self.quantile_range) if self.with_scaling else [],
            median=self.with_centering,
            where=f"{src.path}: ",
            read_columns=lambda idx: _source_reader(src, [names[j] for j in idx]),
        )
        for j in np.flatnonzero(counts == 0):
            warnings.warn(
                f"{src.path}: column {names[j]!r} has no non-NaN values; its center and scale "
                "are NaN and transform will give NaN for it",
                RuntimeWarning,
                stacklevel=3,
            )
        self.n_features_in_ = len(names)
        self.feature_names_in_ = np.asarray(names, dtype=object)
        return center, (quantiles if self.with_scaling else None)

    def _set_scale(self, quantiles: np.ndarray | None, q_min: float, q_max: float) -> None:
        self.zero_iqr_features_ = np.empty(0, dtype=np.intp)
        self.findings_: list[Finding] = []
        if quantiles is None:
            self.scale_ = None
            return
        scale = np.asarray(quantiles[1] - quantiles[0])
        # scikit-learn's _handle_zeros_in_scale: ranges this small would blow values up.
        zero = scale < 10 * np.finfo(scale.dtype).eps
        scale[zero] = 1.0
        if self.unit_variance:
            from scipy.special import ndtri  # scipy.stats.norm.ppf, without importing stats

            scale = scale / (ndtri(q_max / 100.0) - ndtri(q_min / 100.0))
        self.scale_ = scale
        self.zero_iqr_features_ = np.flatnonzero(zero)
        names = self._names(scale.shape[0])
        for j in self.zero_iqr_features_.tolist():
            lo, hi = float(quantiles[0][j]), float(quantiles[1][j])
            observed = (
                f"q{q_min:g} = q{q_max:g} = {lo:.6g}"
                if lo == hi
                else (f"q{q_min:g} = {lo:.6g} and q{q_max:g} = {hi:.6g} differ by {hi - lo:.3g}")
            )
            self.findings_.append(
                Finding(
                    check="zero_iqr",
                    column=names[j],
                    severity="warning",
                    count=1,
                    fraction=hi - lo,
                    message=(
                        f"column {names[j]!r} has zero quantile range ({observed}), so robust "
                        "scaling is undefined; its scale was set to 1 (centred only): leave the "
                        "column out or check why it is (nearly) constant"
                    ),
                )
            )

    # -- transforming ----------------------------------------------------------------------------
    def transform(self, X: Any) -> np.ndarray:
        """Centre and scale ``X`` (NaN stays NaN).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Raw features, in the columns (and with the names, if any) seen by ``fit``.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            ``(X - center_) / scale_``, clipped to ``[-clip, clip]`` when ``clip`` is set.
        """
        check_is_fitted(self)
        self._check_clip()
        X = self._input(X, check_names=True)
        # Apply what was learned, whatever the parameters say now.
        if self.center_ is not None:
            X -= self.center_
        if self.scale_ is not None:
            X /= self.scale_
        if self.clip is not None:
            np.clip(X, -self.clip, self.clip, out=X)
        return X

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Undo :meth:`transform` (except clipping).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Scaled features, as :meth:`transform` returns them.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            ``X * scale_ + center_``: back on the scale of the raw features.
        """
        check_is_fitted(self)
        X = self._input(X, check_names=False)
        if self.scale_ is not None:
            X *= self.scale_
        if self.center_ is not None:
            X += self.center_
        return X

    def _input(self, X: Any, *, check_names: bool) -> np.ndarray:
        """``X`` as a writeable float array of the fitted width (a copy if ``copy``), no infinity.

        ``check_names``: compare feature names with ``fit``'s as well (``transform``).
        ``inverse_transform`` takes the unnamed arrays that ``transform`` returns, so
        it checks only the width, as scikit-learn's does.
        """
        options = {
            "copy": self.copy,
            "dtype": FLOAT_DTYPES,
            "force_writeable": True,
            "ensure_all_finite": False,
        }
        if check_names:
            X = validate_data(self, X, reset=False, **options)
        else:
            X = check_array(X, **options)
            if X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[1]} features, but RobustScaler is expecting "
                    f"{self.n_features_in_} features as input"
                )
        _reject_inf(X, self._names(X.shape[1]))
        return X

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    # -- torch -----------------------------------------------------------------------------------
    def to_torch(self) -> nn.Module:
        """The fitted scaling as a ``torch.nn.Module``.

        Returns
        -------
        TorchRobustScaler
            ``(x - center) / scale``, then clipping; ``center`` and ``scale`` are float32
            buffers, so ``.to("cuda")`` moves them with the model.

        Examples
        --------
        >>> import torch
        >>> module = RobustScaler().fit([[0.0], [1.0], [2.0]]).to_torch()
        >>> module(torch.tensor([[3.0]]))
        tensor([[2.]])
        """
        check_is_fitted(self)
        n = self.n_features_in_
        center = np.zeros(n) if self.center_ is None else self.center_
        scale = np.ones(n) if self.scale_ is None else self.scale_
        return _torch_scaler_class()(center, scale, clip=self.clip)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the parameters and the fitted state to a JSON file, atomically.

        Parameters
        ----------
        path : str or os.PathLike
            The file; replaced in one step (a reader never sees half a file).
        """
        check_is_fitted(self)
        names = getattr(self, "feature_names_in_", None)
        params = self.get_params()
        params["quantile_range"] = [float(q) for q in params["quantile_range"]]
        state = {
            "format": _SAVE_FORMAT,
            "version": _SAVE_VERSION,
            "params": params,
            "n_features_in_": int(self.n_features_in_),
            "feature_names_in_": None if names is None else [str(n) for n in names],
            "center_": _to_json_floats(self.center_),
            "scale_": _to_json_floats(self.scale_),
            "zero_iqr_features_": [int(j) for j in self.zero_iqr_features_],
            "findings_": [f.to_dict() for f in self.findings_],
        }
        write_text(path, json.dumps(state, indent=2, allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RobustScaler:
        """Read a scaler written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        RobustScaler
            Fitted, equal to the one saved.

        Raises
        ------
        UsageError
            When the file is missing or is not a saved RobustScaler.
        """
        try:
            state = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"{os.fspath(path)}: cannot read a saved RobustScaler ({exc}); "
                "pass a file written by RobustScaler.save"
            ) from exc
        if not isinstance(state, dict) or state.get("format") != _SAVE_FORMAT:
            raise UsageError(
                f'{os.fspath(path)}: not a saved RobustScaler (no "format": "{_SAVE_FORMAT}"); '
                "pass a file written by RobustScaler.save"
            )
        where = os.fspath(path)
        version = state.get("version")
        if isinstance(version, int) and version > _SAVE_VERSION:
            raise UsageError(
                f"{where}: saved with RobustScaler format {version}; this batchguard reads "
                f"{_SAVE_VERSION}: upgrade batchguard to load it"
            )
        try:
            params = dict(state["params"])
            params["quantile_range"] = tuple(params["quantile_range"])
            scaler = cls(**params)
            scaler.n_features_in_ = int(state["n_features_in_"])
            if state["feature_names_in_"] is not None:
                scaler.feature_names_in_ = np.asarray(state["feature_names_in_"], dtype=object)
            scaler.center_ = _from_json_floats(state["center_"])
            scaler.scale_ = _from_json_floats(state["scale_"])
            scaler.zero_iqr_features_ = np.asarray(state["zero_iqr_features_"], dtype=np.intp)
            scaler.findings_ = [Finding(**f) for f in state["findings_"]]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(
                f"{where}: a damaged saved RobustScaler ({type(exc).__name__}: {exc}); "
                "save it again"
            ) from exc
        for name in ("center_", "scale_"):
            values = getattr(scaler, name)
            if values is not None and np.shape(values) != (scaler.n_features_in_,):
                raise UsageError(
                    f"{where}: {name} holds {np.size(values)} values for "
                    f"{scaler.n_features_in_} features; the file was edited or damaged, "
                    "save it again"
                )
        scale = None if scaler.scale_ is None else np.asarray(scaler.scale_, dtype=np.float64)
        if scale is not None and (np.isinf(scale) | (scale <= 0)).any():
            # A scale of 0 would serve inf; a fitted scaler gives a zero IQR 1 (and a column
            # without values NaN).
            raise UsageError(f"{where}: scale_ holds values that are not positive; save it again")
        return scaler


def _to_json_floats(values: np.ndarray | None) -> list[float | None] | None:
    # JSON has no NaN; null stands for it (a column without any non-NaN value).
    if values is None:
        return None
    return [None if np.isnan(v) else float(v) for v in values.tolist()]


def _from_json_floats(values: list[float | None] | None) -> np.ndarray | None:
    if values is None:
        return None
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


# --------------------------------------------------------------------------------------------
# The torch module, built on first use so that importing this module does not import torch
# --------------------------------------------------------------------------------------------
@functools.cache
def _torch_scaler_class() -> type[nn.Module]:
    import torch
    from torch import nn

    class TorchRobustScaler(nn.Module):
        """``(x - center) / scale``, then optional clipping to ``[-clip, clip]``.

        Parameters
        ----------
        center, scale : array-like of shape (n_features,)
            Stored as float32 buffers (they follow ``.to(device)`` and ``state_dict``).
        clip : float or None, default None
        """

        center: torch.Tensor
        scale: torch.Tensor

        def __init__(self, center: Any, scale: Any, clip: float | None = None) -> None:
            super().__init__()
            self.register_buffer("center", torch.as_tensor(np.asarray(center, dtype=np.float32)))
            self.register_buffer("scale", torch.as_tensor(np.asarray(scale, dtype=np.float32)))
            self.clip = None if clip is None else float(clip)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = (x - self.center) / self.scale
            if self.clip is not None:
                out = out.clamp(-self.clip, self.clip)  # NaN stays NaN
            return out

        def extra_repr(self) -> str:
            return f"n_features={self.center.numel()}, clip={self.clip}"

    # Importable and picklable as pipeline.scaler.TorchRobustScaler (see __getattr__ below).
    TorchRobustScaler.__module__ = __name__
    TorchRobustScaler.__qualname__ = "TorchRobustScaler"
    return TorchRobustScaler


def __getattr__(name: str) -> Any:
    if name == "TorchRobustScaler":
        return _torch_scaler_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
