"""The fitted preprocessing: one small object for training, validation, test and serving.

:func:`fit` validates the training data once and keeps what it decided in a
:class:`Preprocessor`: the features (degenerate ones left out, with the reason),
the robust scaler fitted on the clean rows, the label's classes, the profile and
the outlier fences. Everything downstream uses that state and never refits:

- :meth:`Preprocessor.loader` over the fitted data serves its clean rows, as
  :func:`pipeline.make_loader` does (which is ``fit(...).loader(...)``); over any
  other dataset (validation, test) it sets aside only the rows the model cannot
  take (a non-finite or null feature, a null or unseen label), says which and how
  many, and keeps every other row, outliers included: an evaluation set must not
  be filtered by the training set's judgement;
- :meth:`Preprocessor.transform` maps raw rows (numpy, pyarrow, pandas) to the
  scaled float32 features, and :meth:`Preprocessor.to_torch` gives the same map
  as a ``torch.nn.Module`` for serving;
- :meth:`Preprocessor.save` / :meth:`Preprocessor.load` keep it as JSON files in
  a folder (no pickle); the folder is also a ``--baseline`` for drift checks.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._atomic import StagedFile, remove_file
from .errors import UsageError
from .fences import Fences
from .loader import (
    DEGENERATE,
    Batch,
    build_loader,
    feature_values,
    plain_labels,
    scale_features,
    select_features,
)
from .profiling import Profile, column_kind, is_feature_type
from .source import ROW_ID, Source, open_source

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch.utils.data import DataLoader

    from .report import Report
    from .scaler import RobustScaler

__all__ = ["FORMAT_VERSION", "LoaderReport", "Preprocessor", "fit", "make_loader"]

log = logging.getLogger("batchguard")

#: the saved folder's format; a newer one is refused with a clear message
FORMAT_VERSION = 1
_STATE = "preprocessor.json"
_SCALER = "scaler.json"
_PROFILE = "profile.json"


@dataclass
class LoaderReport:
    """What a loader over data other than the fitted data set aside, and why.

    Attributes
    ----------
    dataset : str
    rows : int
        Rows read.
    rows_served : int
        Rows the loader serves (every row but those set aside).
    set_aside : dict of str to int
        Rows set aside per reason: ``nan``, ``inf``, ``null`` (a feature), ``null_label``,
        ``nonfinite_label`` (a regression target), ``unseen_label``. A row counts once,
        under its first reason in that order.
    sample_rows : dict of str to list of int
        The first few row ids set aside per reason.
    unseen_classes : list
        Label values that training never saw.
    """

    dataset: str
    rows: int = 0
    rows_served: int = 0
    set_aside: dict[str, int] = field(default_factory=dict)
    sample_rows: dict[str, list[int]] = field(default_factory=dict)
    unseen_classes: list[Any] = field(default_factory=list)

    def summary(self) -> str:
        """One line: how many rows are served and what was set aside."""
        if not self.set_aside:
            return f"{self.dataset}: serving all {self.rows:,} rows"
        why = ", ".join(f"{n:,} {reason}" for reason, n in self.set_aside.items())
        unseen = f" (unseen classes {self.unseen_classes[:5]})" if self.unseen_classes else ""
        return (
            f"{self.dataset}: serving {self.rows_served:,} of {self.rows:,} rows; set aside "
            f"rows the model cannot take: {why}{unseen}"
        )


class Preprocessor:
    """The state :func:`fit` decided, applied to any data without refitting.

    Build it with :func:`fit`, or :meth:`load` a saved one.

    Attributes
    ----------
    features : list of str
        The raw feature columns, in the order of the feature tensor's columns.
    dropped_features : dict of str to str
        Degenerate features left out, with the check that found them.
    label : str or None
    classes : list or None
        The label's classes in code order (``None`` without a label or for a regression
        target). Integer labels are served as they are, string labels as their position here.
    scaler : RobustScaler or None
        Fitted on the training data's clean rows.
    profile : Profile
        The training data's profile.
    fences : dict of str to Fences
        The outlier fences the training run applied, per column.
    dtypes : dict of str to str
        Each feature's Arrow type in the training data.
    report : Report or None
        The training run's validation report (``None`` after :meth:`load`).
    """

    def __init__(
        self,
        *,
        features: list[str],
        dropped_features: dict[str, str],
        label: str | None,
        classes: list[Any] | None,
        scaler: RobustScaler | None,
        profile: Profile,
        fences: dict[str, Fences],
        dtypes: dict[str, str],
        label_dtype: str | None = None,
        report: Report | None = None,
    ):
        self.features = features
        self.dropped_features = dropped_features
        self.label = label
        self.classes = classes
        self.scaler = scaler
        self.profile = profile
        self.fences = fences
        self.dtypes = dtypes
        self.label_dtype = label_dtype
        self.report = report
        # The fitted data's clean rows (fit only): its loader serves them as they are.
        self._fitted: tuple[object, Source, tempfile.TemporaryDirectory[str] | None] | None = None

    def __repr__(self) -> str:
        scaler = "robust" if self.scaler is not None else None
        return (
            f"Preprocessor(features={self.features!r}, label={self.label!r}, "
            f"classes={self.classes!r}, scaler={scaler!r}, "
            f"dropped_features={self.dropped_features!r})"
        )

    # -- serving -------------------------------------------------------------------------------
    def transform(self, data: Any) -> np.ndarray:
        """The scaled float32 features of raw rows.

        Parameters
        ----------
        data : numpy.ndarray, pyarrow.Table, pyarrow.RecordBatch or pandas.DataFrame
            Tables and frames are read by column name (any column order, extra
            columns ignored); a 2-D array must hold :attr:`features` in that order.

        Returns
        -------
        numpy.ndarray of float32, shape (rows, len(features))
            NaN stays NaN; the same values a loader of this preprocessor serves.

        Raises
        ------
        UsageError
            A fitted feature is missing, or an array has the wrong width.
        """
        return self._scale(self._raw_matrix(data))

    def to_torch(self, non_finite: str = "raise") -> torch.nn.Module:
        """The transform as a ``torch.nn.Module``: raw feature tensor -> scaled tensor.

        Parameters
        ----------
        non_finite : {"raise", "impute"}, default "raise"
            ``raise``: a NaN or inf input raises ``ValueError``. ``impute``: such
            values become the training median, and the module returns
            ``(scaled, imputed)`` with a boolean mask of the imputed entries.

        Returns
        -------
        torch.nn.Module
            Float32 buffers (``.to("cuda")`` moves them); scriptable with
            ``torch.jit.script``.
        """
        if non_finite not in ("raise", "impute"):
            raise UsageError(
                f"non_finite should be 'raise' or 'impute', but got non_finite={non_finite!r}"
            )
        from ._preprocess_torch import build

        center, scale = self._center_scale()
        median = np.array([self._median(f) for f in self.features], dtype=np.float64)
        return build(
            non_finite, center, scale, median, None if self.scaler is None else self.scaler.clip
        )

    def loader(
        self,
        source: str | os.PathLike[str] | Source,
        *,
        batch_size: int = 256,
        shuffle: bool = True,
        stratify: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        bins: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        unseen_labels: str = "set_aside",
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> DataLoader[Batch]:
        """A DataLoader of ``source``'s rows, with this preprocessor's features and scaling.

        Parameters
        ----------
        source : str, os.PathLike or Source
            The fitted data (its clean rows are served), or any dataset with the
            fitted feature columns (every row is served but those the model
            cannot take; ``loader.batchguard.report`` says which and how many).
        batch_size : int, default 256
        shuffle : bool, default True
            Without stratification: a random order per ``seed``; ``False`` keeps the
            dataset's row order (the usual choice for evaluation).
        stratify : bool, default True
            With a label and ``shuffle``: every batch holds the classes in dataset
            proportions (:class:`~pipeline.sampler.StratifiedBatchSampler`).
        drop_last, seed, bins, num_workers, pin_memory, num_replicas, rank : optional
            As for :func:`pipeline.make_loader`.
        unseen_labels : {"set_aside", "raise"}, default "set_aside"
            Rows whose label training never saw: set aside and counted, or a
            one-line ``UsageError`` naming the classes.
        cache_dir : path, optional
            Where the feature cache goes (default: a temporary directory removed
            with the loader's dataset).

        Returns
        -------
        torch.utils.data.DataLoader
            Yields :class:`~pipeline.loader.Batch` ``(features, label, row_id)``;
            ``loader.batchguard`` (:class:`~pipeline.loader.LoaderInfo`) holds this
            preprocessor.

        Raises
        ------
        UsageError
            A fitted feature (or the label) is missing or changed type, or an unseen
            label under ``unseen_labels="raise"``.
        """
        if unseen_labels not in ("set_aside", "raise"):
            raise UsageError(
                "unseen_labels should be 'set_aside' or 'raise', "
                f"but got unseen_labels={unseen_labels!r}"
            )
        fitted = self._fitted_rows(source)
        report: Report | LoaderReport | None = self.report
        keep = None
        if fitted is None:
            src = self._checked_source(source)
            report, unseen, keep = self._serving_filter(src)
        loader = build_loader(
            self, fitted if fitted is not None else src, report,
            batch_size=batch_size, shuffle=shuffle, stratify=stratify, drop_last=drop_last,
            seed=seed, bins=bins, num_workers=num_workers, pin_memory=pin_memory,
            num_replicas=num_replicas, rank=rank, cache_dir=cache_dir, keep=keep,
        )  # fmt: skip
        if isinstance(report, LoaderReport):
            self._close(report, unseen, unseen_labels)
        return loader

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the preprocessor to folder ``path`` as JSON files (no pickle).

        ``preprocessor.json`` (format and batchguard versions, features, classes,
        fences, dtypes), ``scaler.json`` (:meth:`RobustScaler.save`) and
        ``profile.json`` (the training profile, usable as a drift baseline). All
        three are written under temporary names first and renamed only once every
        one is complete, so a save whose writing fails (a full disk) leaves the
        earlier files as they were, never one preprocessor's scaler beside another's
        state.

        Raises
        ------
        UsageError
            ``path`` is a file, or lies under one.
        """
        from importlib.metadata import version

        folder = Path(path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise UsageError(
                f"cannot save to {folder}: it, or a folder above it, is a file; pass a folder"
            ) from exc
        state = {
            "format_version": FORMAT_VERSION,
            "batchguard_version": version("batchguard"),
            "features": self.features,
            "dropped_features": self.dropped_features,
            "label": self.label,
            "label_dtype": self.label_dtype,
            "classes": self.classes,
            "dtypes": self.dtypes,
            "fences": {name: asdict(f) for name, f in self.fences.items()},
            "scaler": self.scaler is not None,
        }
        texts = {
            _PROFILE: json.dumps(self.profile.to_dict(), default=str) + "\n",
            _STATE: json.dumps(state, indent=2, default=_json_value) + "\n",
        }
        names = [*([_SCALER] if self.scaler is not None else []), *texts]
        staged = {name: StagedFile(folder / name) for name in names}
        try:
            if self.scaler is not None:
                self.scaler.save(staged[_SCALER].temp)
            for name, text in texts.items():
                staged[name].temp.write_text(text, encoding="utf-8")
            for file in staged.values():
                file.sync()
            for file in staged.values():
                file.publish()
        except BaseException:
            for file in staged.values():
                file.discard()
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Preprocessor:
        """Read a preprocessor written by :meth:`save`.

        Raises
        ------
        UsageError
            The folder is missing, damaged, or from a newer format.
        """
        from .scaler import RobustScaler

        folder = Path(path)
        state = _read_json(folder / _STATE, "a saved preprocessor")
        found = state.get("format_version") if isinstance(state, dict) else None
        if not isinstance(found, int):
            raise UsageError(f"{folder / _STATE}: not a saved preprocessor (no format_version)")
        if found > FORMAT_VERSION:
            raise UsageError(
                f"{folder}: saved with preprocessor format {found} (batchguard "
                f"{state.get('batchguard_version')}); this batchguard reads format "
                f"{FORMAT_VERSION}: upgrade batchguard to load it"
            )
        try:
            profile = Profile.from_dict(_read_json(folder / _PROFILE, "a saved profile"))
            scaler = RobustScaler.load(folder / _SCALER) if state["scaler"] else None
            if scaler is not None and scaler.n_features_in_ != len(state["features"]):
                raise UsageError(
                    f"{folder}: {_SCALER} scales {scaler.n_features_in_} features but "
                    f"{_STATE} names {len(state['features'])}; the files come from different "
                    "saves, save it again"
                )
            return cls(
                features=list(state["features"]),
                dropped_features=dict(state["dropped_features"]),
                label=state["label"],
                classes=state["classes"],
                scaler=scaler,
                profile=profile,
                fences={name: Fences(**f) for name, f in state["fences"].items()},
                dtypes=dict(state["dtypes"]),
                label_dtype=state.get("label_dtype"),
            )
        except UsageError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(
                f"{folder}: a damaged saved preprocessor ({type(exc).__name__}: {exc}); "
                "save it again with Preprocessor.save"
            ) from exc

    # -- helpers -------------------------------------------------------------------------------
    def _center_scale(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.features)
        if self.scaler is None:
            return np.zeros(n), np.ones(n)
        center = self.scaler.center_ if self.scaler.center_ is not None else np.zeros(n)
        scale = self.scaler.scale_ if self.scaler.scale_ is not None else np.ones(n)
        return np.asarray(center, np.float64), np.asarray(scale, np.float64)

    def _median(self, name: str) -> float:
        median = self.profile.stats(name).median
        return 0.0 if median is None else float(median)

    def _scale(self, x: np.ndarray) -> np.ndarray:
        """Scale a float64 matrix of the raw features as the loaders' caches do."""
        return scale_features(x, self.scaler)

    def _raw_matrix(self, data: Any) -> np.ndarray:
        if isinstance(data, np.ndarray):
            try:
                x = np.atleast_2d(np.asarray(data, dtype=np.float64))
            except (TypeError, ValueError) as exc:
                raise UsageError(
                    f"the array holds values that are not numbers ({exc}); pass the raw "
                    "numeric features"
                ) from exc
            if x.shape[1] != len(self.features):
                raise UsageError(
                    f"an array of {x.shape[1]} columns; this preprocessor takes "
                    f"{len(self.features)} features in this order: {', '.join(self.features)}"
                )
            return x
        table = _as_arrow(data)
        self._check_columns(table.schema, "the data")
        x = np.empty((table.num_rows, len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            x[:, j] = feature_values(table.column(name))
        return x

    def _check_columns(self, schema: pa.Schema, where: str) -> None:
        """Refuse data without a fitted feature (or label), or where one changed kind."""
        wanted = [*self.features, *([self.label] if self.label else [])]
        for name in wanted:
            if name not in schema.names:
                raise UsageError(
                    f"{where} has no column {name!r}, which this preprocessor was fitted "
                    f"with; columns are {', '.join(n for n in schema.names if n != ROW_ID)}"
                )
        for name in self.features:
            typ = schema.field(name).type
            fitted = self.dtypes.get(name)
            if not is_feature_type(typ) or (fitted is not None and _kind(typ) != _kind_of(fitted)):
                raise UsageError(
                    f"column {name!r} of {where} is {typ}, but this preprocessor was fitted "
                    f"on {fitted}; cast it back upstream"
                )

    def _checked_source(self, source: str | os.PathLike[str] | Source) -> Source:
        src = open_source(source)
        self._check_columns(src.schema, src.path)
        if self.classes is not None and self.label is not None and self.label_dtype is not None:
            typ = src.schema.field(self.label).type
            if _label_kind(str(typ)) != _label_kind(self.label_dtype):
                # Classes are matched by value: a class label read as float (pandas turns an
                # int column with a NaN into float64) would miscount every row.
                raise UsageError(
                    f"label {self.label!r} of {src.path} is {typ}, but this preprocessor was "
                    f"fitted on {self.label_dtype}; cast it back upstream"
                )
        return src

    def _fitted_rows(self, source: Any) -> Source | None:
        """The fitted data's clean rows, when ``source`` is the data :func:`fit` read."""
        if self._fitted is None:
            return None
        key, clean, _ = self._fitted
        return clean if _source_key(source) == key and os.path.exists(clean.path) else None

    def _serving_filter(
        self, src: Source
    ) -> tuple[LoaderReport, set[Any], Callable[[pa.RecordBatch], np.ndarray]]:
        """A ``keep`` for the cache writer that also counts what it sets aside, and why.

        The counts are taken in the one pass that writes the loader's cache.
        """
        report = LoaderReport(src.path)
        unseen: set[Any] = set()

        def keep(batch: pa.RecordBatch) -> np.ndarray:
            reasons, found = _first_reasons(self, batch)
            unseen.update(found)
            report.rows += batch.num_rows
            ids = batch.column(ROW_ID).to_numpy(zero_copy_only=False)
            for code, reason in enumerate(_REASONS):
                mask = reasons == code
                n = int(mask.sum())
                if n:
                    report.set_aside[reason] = report.set_aside.get(reason, 0) + n
                    shown = report.sample_rows.setdefault(reason, [])
                    shown.extend(ids[mask][: 5 - len(shown)].tolist())
            return reasons < 0

        return report, unseen, keep

    def _close(self, report: LoaderReport, unseen: set[Any], unseen_labels: str) -> None:
        """Finish the counts of :meth:`_serving_filter`: raise on unseen classes, or log."""
        report.set_aside = {r: report.set_aside[r] for r in _REASONS if r in report.set_aside}
        report.unseen_classes = sorted(unseen, key=str)
        report.rows_served = report.rows - sum(report.set_aside.values())
        if unseen and unseen_labels == "raise":
            raise UsageError(
                f"{report.dataset}: label {self.label!r} holds classes training never saw: "
                f"{', '.join(map(repr, report.unseen_classes[:10]))}; pass "
                "unseen_labels='set_aside' to leave those rows out"
            )
        if report.set_aside:
            log.warning("batchguard: %s", report.summary())


#: why a row is set aside, in the order a row's first reason is taken
_REASONS = ("nan", "inf", "null", "null_label", "nonfinite_label", "unseen_label")


def _first_reasons(prep: Preprocessor, batch: pa.RecordBatch) -> tuple[np.ndarray, set[Any]]:
    """Per row, the index in :data:`_REASONS` of its first reason to be set aside (-1: none).

    Also returns the unseen label values of the batch.
    """
    n = batch.num_rows
    reason = np.full(n, -1, dtype=np.int8)

    def mark(code: int, mask: np.ndarray) -> None:
        reason[(reason < 0) & mask] = code

    nan, inf, null = (np.zeros(n, dtype=bool) for _ in range(3))
    for name in prep.features:
        arr = batch.column(name)
        x = feature_values(arr)
        nan |= np.isnan(x) & ~_nulls(arr)
        inf |= np.isinf(x)
        null |= _nulls(arr)
    for code, mask in enumerate((nan, inf, null)):
        mark(code, mask)
    unseen: set[Any] = set()
    if prep.label is not None:
        y = plain_labels(batch.column(prep.label))
        mark(3, _nulls(y))
        if prep.classes is None:  # a regression target: NaN or inf is no target
            mark(4, ~np.isfinite(feature_values(y)) & ~_nulls(y))
        else:
            known = pc.is_in(y, value_set=pa.array(prep.classes, y.type))
            outside = ~np.asarray(known.to_numpy(zero_copy_only=False), bool) & ~_nulls(y)
            if outside.any():
                unseen = set(pc.unique(y.filter(pa.array(outside))).to_pylist())
            mark(5, outside)
    return reason, unseen


def _nulls(arr: pa.Array) -> np.ndarray:
    if not arr.null_count:
        return np.zeros(len(arr), dtype=bool)
    return np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), dtype=bool)


def _as_arrow(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    from ._frames import as_arrow, is_frame

    if is_frame(data):  # pandas, polars, ...: converted as validate converts them
        frame = as_arrow(data)
        if frame.table is not None:
            return frame.table
        with pa.ipc.open_file(frame.path) as spooled:  # a one-pass stream, spooled
            return spooled.read_all()
    raise UsageError(
        f"cannot transform a {type(data).__name__}; pass a numpy array, a pyarrow Table or "
        "RecordBatch, or a pandas or polars DataFrame"
    )


def _kind(typ: pa.DataType) -> str:
    """Integer, floating, boolean or decimal: a feature may change width, not kind."""
    if pa.types.is_dictionary(typ):
        return _kind(typ.value_type)
    for name, test in (
        ("boolean", pa.types.is_boolean),
        ("integer", pa.types.is_integer),
        ("floating", pa.types.is_floating),
        ("decimal", pa.types.is_decimal),
    ):
        if test(typ):
            return name
    return column_kind(typ)


def _kind_of(dtype: str) -> str:
    """:func:`_kind` of a type written as ``str(pa.DataType)`` (what :meth:`save` keeps)."""
    if dtype.startswith("dictionary<values="):
        return _kind_of(dtype[len("dictionary<values=") :].split(",", 1)[0])
    for prefix, kind in (
        ("bool", "boolean"), ("int", "integer"), ("uint", "integer"), ("decimal", "decimal"),
        ("halffloat", "floating"), ("float", "floating"), ("double", "floating"),
    ):  # fmt: skip
        if dtype.startswith(prefix):
            return kind
    return dtype


def _label_kind(dtype: str) -> str:
    """:func:`_kind_of`, with every string type one kind (a label's classes are its values)."""
    kind = _kind_of(dtype)
    return "string" if kind in ("string", "large_string", "string_view") else kind


def _source_key(source: Any) -> object:
    """What identifies the data :func:`fit` read: its files as they are now, or the object.

    A file rewritten since (same path, other rows) is other data: its loader must not
    serve the rows cached at fit time.
    """
    if isinstance(source, (str, os.PathLike)):
        return _files_key(os.path.realpath(os.fspath(source)))
    if isinstance(source, Source) and not source.path.startswith("<"):
        return _files_key(os.path.realpath(source.path))
    from ._frames import identity_key  # in memory: the same object, not the same kind

    return identity_key(source)


def _files_key(path: str) -> tuple[Any, ...]:
    """``path`` with the size and modification time of every file in it (or of it).

    Hidden and underscore entries are skipped, as :class:`~pipeline.source.Source` skips
    them (writer metadata); a URL is its text alone.
    """

    def stamp(file: str) -> tuple[str, int, int]:
        try:
            st = os.stat(file)
        except OSError:  # a dangling link: no data of the dataset
            return file, -1, -1
        return file, st.st_size, st.st_mtime_ns

    if os.path.isdir(path):
        files = []
        for folder, subfolders, names in os.walk(path):
            subfolders[:] = [d for d in subfolders if not d.startswith((".", "_"))]
            files += [os.path.join(folder, n) for n in names if not n.startswith((".", "_"))]
        return (path, *map(stamp, sorted(files)))
    return (path, *([stamp(path)] if os.path.isfile(path) else []))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{path}: cannot read {what} ({exc}); pass a folder written by save"
        ) from exc


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def fit(
    source: str | os.PathLike[str] | Source,
    *,
    label: str | None = None,
    features: Sequence[str] | None = None,
    schema: Any = None,
    scaler: str | RobustScaler | None = "robust",
    drop_degenerate: bool = True,
    quarantine: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    **validate_options: Any,
) -> Preprocessor:
    """Validate the training data and fit the preprocessing on its clean rows.

    Parameters
    ----------
    source : str, os.PathLike or Source
        The training dataset.
    label : str, optional
        Integer or string labels are classes (strings coded ``0..k-1`` in sorted
        order); float labels are regression targets.
    features : sequence of str, optional
        Feature columns; default: every numeric or boolean column but the label
        (:func:`pipeline.profiling.is_feature_type`).
    schema : optional
        Passed to :func:`pipeline.validate`.
    scaler : "robust", RobustScaler or None, default "robust"
        Fitted on the clean rows; pass a configured
        :class:`~pipeline.scaler.RobustScaler` (e.g. with ``clip``).
    drop_degenerate : bool, default True
        Leave out constant, near-constant and zero-IQR features (logged, and in
        :attr:`Preprocessor.dropped_features`).
    quarantine : path, optional
        Write the training data's quarantined rows here.
    cache_dir : path, optional
        Where the clean rows are kept for the training loader (default: a
        temporary directory removed with the preprocessor).
    **validate_options
        Passed to :func:`pipeline.validate` (``max_bad_rows``, ``outlier_threshold``, ...).

    Returns
    -------
    Preprocessor

    Examples
    --------
    >>> prep = fit("train.parquet", label="y")  # doctest: +SKIP
    >>> train = prep.loader("train.parquet", batch_size=256)  # doctest: +SKIP
    >>> val = prep.loader("val.parquet", batch_size=1024, shuffle=False)  # doctest: +SKIP
    >>> prep.save("prep/")  # doctest: +SKIP
    """
    from .validation import validate

    tmpdir = None
    if cache_dir is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="batchguard-")
        cache_dir = tmpdir.name
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    # A name of its own: fits sharing a cache_dir (folds, sweeps) keep their own rows.
    clean_path = str(cache / f"clean-{os.urandom(4).hex()}.arrow")
    src = open_source(source)
    # Nulls in the columns the model sees would become NaN features or bogus labels:
    # quarantine them too, schema or not.
    wanted = select_features(src, features, label)
    validate_options.setdefault("not_null", tuple(wanted) + ((label,) if label else ()))
    report = validate(  # src, not source: a RecordBatchReader can be read only once
        src, schema, label=label, clean=clean_path, quarantine=quarantine, **validate_options
    )
    if not report.rows_clean:
        causes = "; ".join(f.message for f in report.errors[:3])
        raise UsageError(
            f"{report.dataset}: no clean rows to train on ({report.rows:,} rows, "
            f"{report.rows_quarantined:,} quarantined){': ' + causes if causes else ''}"
        )
    if report.errors:
        log.warning(
            "batchguard: %s; training on the %s clean rows",
            report.verdict(),
            f"{report.rows_clean:,}",
        )
    clean = Source(clean_path)
    chosen = select_features(clean, features, label)
    dropped: dict[str, str] = {}
    if drop_degenerate:
        for f in report.findings:
            if f.check in DEGENERATE and f.column in chosen and f.column not in dropped:
                dropped[f.column] = f.check
        if dropped:
            log.warning(
                "batchguard: leaving out degenerate features %s",
                ", ".join(f"{k} ({v})" for k, v in dropped.items()),
            )
        chosen = [c for c in chosen if c not in dropped]
    if not chosen:
        raise UsageError(f"{report.dataset}: no usable numeric feature columns left")
    prep = Preprocessor(
        features=chosen,
        dropped_features=dropped,
        label=label,
        classes=_label_classes(report, label, clean),
        scaler=_fit_scaler(scaler, clean, chosen),
        profile=report.profile,
        fences=report.fences,
        dtypes={name: str(src.schema.field(name).type) for name in chosen},
        label_dtype=None if label is None else str(src.schema.field(label).type),
        report=report,
    )
    prep._fitted = (_source_key(source), clean, tmpdir)
    # The clean rows are removed with the preprocessor: its temporary folder, or the file
    # of its own in the caller's cache_dir (see ArrowMatrixDataset).
    if tmpdir is not None:
        weakref.finalize(prep, tmpdir.cleanup)
    else:
        weakref.finalize(prep, remove_file, clean_path)
    return prep


def _fit_scaler(
    scaler: str | RobustScaler | None, clean: Source, features: list[str]
) -> RobustScaler | None:
    if scaler is None:
        return None
    from .scaler import RobustScaler

    if isinstance(scaler, str):
        if scaler != "robust":
            raise UsageError(f"scaler should be 'robust', a RobustScaler or None, got {scaler!r}")
        scaler = RobustScaler()
    return scaler.fit(clean, columns=features)


def _label_classes(report: Report, label: str | None, clean: Source) -> list[Any] | None:
    """The sorted classes of a categorical label; ``None`` for a regression target."""
    if label is None or pa.types.is_floating(clean.schema.field(label).type):
        return None
    counts = report.profile.label_counts(label)
    if counts is None:
        raise UsageError(
            f"label {label!r} has too many distinct values to be classes; "
            "cast it to float to treat it as a regression target"
        )
    return sorted(counts)


def make_loader(
    source: str | os.PathLike[str] | Source,
    *,
    features: Sequence[str] | None = None,
    label: str | None = None,
    batch_size: int = 256,
    schema: Any = None,
    scaler: str | RobustScaler | None = "robust",
    stratify: bool = True,
    drop_degenerate: bool = True,
    shuffle: bool = True,
    drop_last: bool = False,
    seed: int = 0,
    bins: int | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    num_replicas: int | None = None,
    rank: int | None = None,
    quarantine: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    **validate_options: Any,
) -> DataLoader[Batch]:
    """A DataLoader over the clean rows of a dataset, robust-scaled and stratified.

    ``make_loader(source, ...)`` is ``fit(source, ...).loader(source, ...)``: the
    fitted :class:`Preprocessor` is ``loader.batchguard.preprocessor``, ready for
    validation and test loaders (:meth:`Preprocessor.loader`) and serving
    (:meth:`Preprocessor.to_torch`).

    Parameters
    ----------
    source : str, os.PathLike or Source
        The dataset (parquet, CSV, Arrow IPC, or a directory of parquet files).
    features, label, schema, scaler, drop_degenerate, quarantine : optional
        As for :func:`fit`.
    batch_size : int, default 256
    stratify : bool, default True
        With a label (and ``shuffle``): every batch holds the classes in dataset
        proportions (``loader.sampler`` serves the batches of a
        :class:`~pipeline.sampler.StratifiedBatchSampler`, ``loader.sampler.stratified``,
        as int64 numpy arrays rather than lists, and passes on its ``set_epoch``,
        ``state_dict``, ``load_state_dict`` and attributes).
    shuffle, drop_last, seed : optional
        Order of batches when not stratified (``shuffle=False``: row order); the
        stratified sampler is shuffled with ``seed`` (call ``loader.sampler.set_epoch(epoch)``).
    bins : int, optional
        Quantile bins for stratifying a continuous label (default 10 for floats).
    num_workers, pin_memory : optional
        As for :class:`torch.utils.data.DataLoader`.
    num_replicas, rank : int, optional
        Distributed training: each rank gets disjoint rows and the same number of batches.
    cache_dir : path, optional
        Where the clean-row and feature caches go (default: temporary directories
        removed with the preprocessor and the loader's dataset).
    **validate_options
        Passed to :func:`pipeline.validate` (``max_bad_rows``, ``outlier_threshold``, ...).

    Returns
    -------
    torch.utils.data.DataLoader
        Yields :class:`~pipeline.loader.Batch` ``(features, label, row_id)``.
        ``loader.batchguard`` (:class:`~pipeline.loader.LoaderInfo`) holds the
        features used, those dropped and why, the validation report, the fitted
        scaler and the preprocessor.

    Examples
    --------
    >>> loader = make_loader("train.parquet", label="y", batch_size=512)  # doctest: +SKIP
    >>> for x, y, row_id in loader:  # doctest: +SKIP
    ...     loss = criterion(model(x), y)
    """
    prep = fit(
        source, label=label, features=features, schema=schema, scaler=scaler,
        drop_degenerate=drop_degenerate, quarantine=quarantine, cache_dir=cache_dir,
        **validate_options,
    )  # fmt: skip
    return prep.loader(
        source, batch_size=batch_size, shuffle=shuffle, stratify=stratify, drop_last=drop_last,
        seed=seed, bins=bins, num_workers=num_workers, pin_memory=pin_memory,
        num_replicas=num_replicas, rank=rank, cache_dir=cache_dir,
    )  # fmt: skip
