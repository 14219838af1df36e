"""``guard``: check every live training batch, drop or report bad rows, trace loss spikes.

:func:`guard` wraps any DataLoader (or any iterable of batches) without
subclassing it; iteration yields batches of the same structure, and ``len``,
attributes, ``state_dict``/``load_state_dict`` pass through to the loader.
:func:`guarded_collate` runs the same checks inside a ``collate_fn``, for
frameworks that rebuild loaders (Lightning, accelerate).

Checks, in torch on the batch's own device, cheap path first: the per-column
minima and maxima of the features (``amin``/``amax``, one transfer to the host)
answer "any NaN/inf?", "any column constant?" and "any value out of range?" at
once; rows are only located when one of them trips.

- ``nan`` / ``inf`` (rows): non-finite features.
- ``out_of_range`` (rows): a value beyond the dataset profile's outlier fences.
- ``batch_constant`` (batch): a feature constant within the batch although it
  varies in the dataset.
- ``batch_single_class`` (batch): one class only, although the dataset has several.
- ``loss_spike`` (batch, via :meth:`Guard.observe_loss`): the loss is not finite,
  or exceeds the median of recent losses by ``loss_threshold`` robust
  standard deviations (1.4826 x MAD).

``on_bad="drop"`` removes only the bad rows — never whole batches, so every rank
of a distributed job keeps the same step count — and logs batch-level
findings; ``"raise"`` raises :class:`~pipeline.errors.BadBatchError` naming
the rows; ``"warn"`` logs and yields the batch unchanged.
"""

from __future__ import annotations

import itertools
import logging
import numbers
import operator
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._batch_records import batch_records, row_ids_at
from .errors import BadBatchError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from .quarantine import QuarantineParts

__all__ = [
    "ALL_CHECKS",
    "ON_BAD",
    "BatchChecker",
    "Guard",
    "GuardStats",
    "guard",
    "guarded_collate",
]

log = logging.getLogger("batchguard")

ON_BAD = ("drop", "raise", "warn")
ALL_CHECKS = ("nonfinite", "out_of_range", "batch_constant", "batch_single_class")
_FEATURE_KEYS = ("features", "x", "inputs", "input")
_LABEL_KEYS = ("label", "labels", "y", "target", "targets")
_ROW_ID_KEYS = ("row_id", "_row_id", "row_ids", "index")
_FLOAT_MAX = float(np.finfo(np.float64).max)
#: label batches up to this length are compared as Python lists (see _single_class)
_LIST_LABELS = 2048
#: label dtypes numpy can view without a copy (not bfloat16, float8, ...)
_NUMPY_LABELS = frozenset(
    {torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool}
    | {torch.float64, torch.float32, torch.float16}
)


@dataclass
class GuardStats:
    """What the guard has seen so far."""

    batches: int = 0
    rows: int = 0
    rows_dropped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    skipped_steps: int = 0


@dataclass
class _Layout:
    """Where features, label and row ids sit in a batch: a key, an index, or the batch itself."""

    features: Any
    label: Any
    row_id: Any

    @staticmethod
    def detect(batch: Any, features: Any, label: Any, row_id: Any) -> _Layout:
        if isinstance(batch, torch.Tensor):
            return _Layout(None, None, None)
        if isinstance(batch, Mapping):
            keys = list(batch)
            return _Layout(
                _pick(features, keys, _FEATURE_KEYS, required=True),
                _pick(label, keys, _LABEL_KEYS),
                _pick(row_id, keys, _ROW_ID_KEYS),
            )
        if isinstance(batch, Sequence):
            fields = getattr(batch, "_fields", None)
            if fields is not None:  # a named tuple, e.g. pipeline.loader.Batch
                names = list(fields)
                return _Layout(
                    names.index(_pick(features, names, _FEATURE_KEYS) or names[0]),
                    _index(_pick(label, names, _LABEL_KEYS), names),
                    _index(_pick(row_id, names, _ROW_ID_KEYS), names),
                )
            return _Layout(
                0 if features is None else features,
                (1 if len(batch) > 1 else None) if label is None else label,
                row_id,
            )
        raise UsageError(
            f"guard cannot read batches of type {type(batch).__name__}; "
            "yield tensors, tuples/lists or dicts of tensors"
        )

    def get(self, batch: Any, where: Any) -> Any:
        if where is None:
            return None
        return batch[where]


def _pick(given: Any, keys: list[Any], candidates: tuple[str, ...], required: bool = False) -> Any:
    if given is not None:
        if given not in keys:
            raise UsageError(f"guard: batch has no {given!r}; it has {keys}")
        return given
    for name in candidates:
        if name in keys:
            return name
    if required:
        raise UsageError(
            f"guard: cannot tell which of {keys} holds the features; pass features=<key>"
        )
    return None


def _index(name: Any, names: list[str]) -> int | None:
    return None if name is None else names.index(name)


class BatchChecker:
    """The per-batch checks, shared by :class:`Guard` and :func:`guarded_collate`.

    Parameters are those of :func:`guard`.
    """

    def __init__(
        self,
        *,
        on_bad: str = "drop",
        quarantine: str | os.PathLike[str] | None = None,
        checks: Iterable[str] = ALL_CHECKS,
        bounds: tuple[Any, Any] | None = None,
        varied: Any = None,
        num_classes: int | None = None,
        features: Any = None,
        label: Any = None,
        row_id: Any = None,
        min_rows_constant: int = 8,
    ):
        if on_bad not in ON_BAD:
            raise UsageError(f"on_bad should be one of {', '.join(ON_BAD)}, but got {on_bad!r}")
        if isinstance(checks, str):  # one check named on its own, not its letters
            checks = (checks,)
        unknown = set(checks) - set(ALL_CHECKS)
        if unknown:
            raise UsageError(f"unknown guard check {sorted(unknown)[0]!r}; known: {ALL_CHECKS}")
        self.on_bad = on_bad
        self.checks = frozenset(checks)
        self.quarantine: QuarantineParts | None = None
        if quarantine is not None:
            # Imported here: quarantine.py needs pyarrow, which a guard without one does not.
            from .quarantine import QuarantineParts

            self.quarantine = QuarantineParts(quarantine)
        self._bounds = bounds
        self._varied = None if varied is None else np.asarray(varied, dtype=bool)
        self._num_classes = num_classes
        self._keys = (features, label, row_id)
        self._layout: _Layout | None = None
        self.min_rows_constant = min_rows_constant
        self.stats = GuardStats()
        self._seen_varying: np.ndarray | None = None
        self._labels_seen: set[Any] = set()
        #: limits of the clean-batch test, per number of feature columns (see _clean)
        self._limits: dict[int, tuple[list[float], list[float]] | None] = {}

    # -- the hot path --------------------------------------------------------------------------
    def passed(self, batch: Any) -> Any:
        """Count a batch already found clean where it was fetched (see :class:`_FusedCheck`)."""
        if self._layout is None:
            self._layout = _Layout.detect(batch, *self._keys)
        self.stats.batches += 1
        self.stats.rows += int(batch[0].shape[0])
        if len(self._labels_seen) < 2 and "batch_single_class" in self.checks:
            # Learn the labels as the exact checks do, so a later batch is judged alike.
            y = _tensor_or_none(self._layout.get(batch, self._layout.label))
            if y is not None and y.numel() >= 2:
                self._single_class(y)
        return batch

    def __call__(self, batch: Any, index: int) -> Any:
        """Check one batch; returns it (bad rows dropped under ``on_bad="drop"``)."""
        if self._layout is None:
            self._layout = _Layout.detect(batch, *self._keys)
        lay = self._layout
        x = batch if lay.features is None else lay.get(batch, lay.features)
        if not isinstance(x, torch.Tensor):
            raise UsageError(f"guard: the features of a batch are {type(x).__name__}, not a tensor")
        y = _tensor_or_none(lay.get(batch, lay.label))
        ids = _tensor_or_none(lay.get(batch, lay.row_id))
        dims = x.dim()
        n = int(x.shape[0]) if dims else 0
        self.stats.batches += 1
        self.stats.rows += n
        if n == 0:
            return batch
        flat = x if dims == 2 else x.reshape(n, -1)
        if not torch.is_floating_point(x):
            # Integer features (token ids, codes) hold no NaN or inf, and the fitted ranges
            # are of float features; the label's check still applies.
            problem = self._single_class_problem(y, n)
            if problem is None:
                return batch
            return self._handle(batch, index, flat, y, ids, n, [], [problem])
        # Per-column min and max (NaN propagates) answer "any NaN/inf?", "anything out of
        # range?" and "any column constant?" at once. torch.amin + torch.amax beat
        # torch.aminmax(dim=0) ~4x on CPU; one transfer from other devices.
        low, high = torch.amin(flat, 0), torch.amax(flat, 0)
        if flat.is_cpu:
            lows, highs = low.tolist(), high.tolist()
        else:
            lows, highs = torch.stack((low, high)).tolist()
        if self._clean(lows, highs, y, n):
            return batch
        # Something may be wrong: the exact checks decide on their own.
        col_min, col_max = np.array(lows, dtype=np.float64), np.array(highs, dtype=np.float64)
        row_problems: list[tuple[str, torch.Tensor, str]] = []
        batch_problems: list[tuple[str, str]] = []
        finite = bool(np.isfinite(col_min).all() and np.isfinite(col_max).all())
        if not finite and "nonfinite" in self.checks:
            nan = torch.isnan(flat).any(dim=1)
            inf = torch.isinf(flat).any(dim=1)
            if bool(nan.any()):
                row_problems.append(("nan", nan, "finite"))
            if bool(inf.any()):
                row_problems.append(("inf", inf, "finite"))
        if "out_of_range" in self.checks and self._bounds is not None:
            lo, hi = self._bounds
            with np.errstate(invalid="ignore"):
                tripped = (col_min < lo) | (col_max > hi)
            if tripped.any():
                lo_t = torch.as_tensor(lo, dtype=flat.dtype, device=flat.device)
                hi_t = torch.as_tensor(hi, dtype=flat.dtype, device=flat.device)
                mask = ((flat < lo_t) | (flat > hi_t)).any(dim=1)
                if bool(mask.any()):
                    row_problems.append(("out_of_range", mask, "profile fences"))
        if "batch_constant" in self.checks and n >= self.min_rows_constant:
            constant = col_min == col_max
            varied = self._dataset_varied(col_min, col_max)
            bad_cols = np.flatnonzero(constant & varied)
            if bad_cols.size:
                batch_problems.append(
                    ("batch_constant", f"features {bad_cols[:10].tolist()} are constant in the "
                     "batch but vary in the dataset; shuffle or stratify the loader")
                )  # fmt: skip
        problem = self._single_class_problem(y, n)
        if problem is not None:
            batch_problems.append(problem)
        if not row_problems and not batch_problems:
            return batch
        return self._handle(batch, index, flat, y, ids, n, row_problems, batch_problems)

    def _single_class_problem(self, y: torch.Tensor | None, n: int) -> tuple[str, str] | None:
        """The ``batch_single_class`` problem of a batch, if it has one."""
        if "batch_single_class" not in self.checks or y is None or n < 2:
            return None
        single = self._single_class(y)
        if single is None:
            return None
        return (
            "batch_single_class", f"every row has label {single}; the dataset has several "
            "classes; use a stratified sampler (pipeline.StratifiedBatchSampler)",
        )  # fmt: skip

    def _clean(self, lows: list[float], highs: list[float], y: Any, n: int) -> bool:
        """True when the batch passes every check; decided from the column minima and maxima.

        The usual case, so it runs on Python lists with C-level ``map`` loops: on a few dozen
        values that costs less than numpy calls, whose fixed cost grows several-fold inside a
        training loop (cold caches). False means only "maybe not": the exact checks follow.
        Side effects are those of the exact checks on a clean batch.
        """
        width = len(lows)
        if width not in self._limits:
            self._limits[width] = self._quick_limits(width)
        limits = self._limits[width]
        if limits is None:
            return False
        # lo <= min and max <= hi, with the limits finite: also false for NaN and +-inf.
        if not (all(map(operator.ge, lows, limits[0])) and all(map(operator.le, highs, limits[1]))):
            return False
        if "batch_constant" in self.checks and n >= self.min_rows_constant:
            if any(map(operator.eq, lows, highs)):
                return False
            if self._varied is None:  # every column varies in this batch
                self._seen_varying = np.ones(len(lows), dtype=bool)
        if "batch_single_class" in self.checks and y is not None and n >= 2:
            return self._single_class(y) is None
        return True

    def _quick_limits(self, width: int) -> tuple[list[float], list[float]] | None:
        """Per-column (low, high) limits of :meth:`_clean`; None: leave it to the exact checks."""
        if "out_of_range" not in self.checks or self._bounds is None:
            return [-_FLOAT_MAX] * width, [_FLOAT_MAX] * width
        lo = np.maximum(np.asarray(self._bounds[0], dtype=np.float64), -_FLOAT_MAX)
        hi = np.minimum(np.asarray(self._bounds[1], dtype=np.float64), _FLOAT_MAX)
        if lo.shape != (width,) or hi.shape != (width,):  # e.g. broadcasting bounds
            return None
        return lo.tolist(), hi.tolist()

    def _dataset_varied(self, col_min: np.ndarray, col_max: np.ndarray) -> np.ndarray:
        """Columns known to vary: from the profile, else from earlier batches."""
        if self._varied is not None:
            return self._varied
        seen = self._seen_varying
        now = col_min != col_max
        self._seen_varying = now if seen is None else (seen | now)
        return seen if seen is not None else np.zeros_like(now)

    def _single_class(self, y: torch.Tensor) -> Any:
        if len(self._labels_seen) >= 2 and y.is_cpu:
            # Two labels seen already: a batch with two different labels needs no more work.
            # Inside a training loop, where caches are cold at every step, a batch's labels
            # as a Python list answer that in about 15 us, a numpy comparison in about 70 and
            # torch ops slower still; numpy wins on long batches. NaN counts as different.
            if y.numel() <= _LIST_LABELS:
                listed = y.reshape(-1).tolist()
                if listed and listed.count(listed[0]) != len(listed):
                    return None
            elif y.dtype in _NUMPY_LABELS:
                labels = y.detach().numpy().reshape(-1)
                if bool((labels != labels[0]).any()):
                    return None
        lo, hi = torch.aminmax(y.reshape(-1))
        lo_v, hi_v = torch.stack((lo, hi)).tolist()  # one transfer from the device
        if lo_v != hi_v:
            if len(self._labels_seen) < 2:
                self._labels_seen.update((lo_v, hi_v))
            return None
        several = (self._num_classes or 0) >= 2 or len(self._labels_seen | {lo_v}) >= 2
        self._labels_seen.add(lo_v)
        return lo_v if several else None

    # -- when something tripped ----------------------------------------------------------------
    def _handle(
        self,
        batch: Any,
        index: int,
        flat: torch.Tensor,
        y: Any,
        ids: Any,
        n: int,
        row_problems: list[tuple[str, torch.Tensor, str]],
        batch_problems: list[tuple[str, str]],
    ) -> Any:
        for check, message in batch_problems:
            self.stats.reasons[check] += 1
            if self.on_bad != "raise":
                log.warning("batchguard: batch %d: %s: %s", index, check, message)
        bad = torch.zeros(n, dtype=torch.bool, device=flat.device)
        for check, mask, _ in row_problems:
            bad |= mask
            self.stats.reasons[check] += int(mask.sum())
        bad_pos = torch.nonzero(bad).flatten().cpu().numpy()
        row_ids = row_ids_at(ids, bad_pos, n)
        if self.on_bad == "raise":
            raise BadBatchError(_describe(index, row_problems, batch_problems, row_ids, bad_pos))
        if bad_pos.size:
            if self.quarantine is not None:
                self.quarantine.add(batch_records(index, flat, y, ids, bad_pos, row_problems))
            if self.on_bad == "warn":
                log.warning("batchguard: %s", _describe(index, row_problems, [], row_ids, bad_pos))
                return batch
            self.stats.rows_dropped += int(bad_pos.size)
            return _select(batch, ~bad, n)
        return batch

    def flush(self) -> None:
        if self.quarantine is not None:
            self.quarantine.flush()


def _tensor_or_none(value: Any) -> torch.Tensor | None:
    return value if isinstance(value, torch.Tensor) else None


def _describe(
    index: int,
    row_problems: list[tuple[str, torch.Tensor, str]],
    batch_problems: list[tuple[str, str]],
    row_ids: list[int | None],
    positions: np.ndarray,
) -> str:
    parts = []
    if positions.size:
        shown = []
        for pos, rid in list(zip(positions.tolist(), row_ids, strict=True))[:10]:
            why = [c for c, mask, _ in row_problems if bool(mask[pos])]
            who = f"row {rid}" if rid is not None else f"position {pos}"
            shown.append(f"{who} ({', '.join(why)})")
        more = ", ..." if positions.size > 10 else ""
        parts.append(f"{positions.size} bad rows: {', '.join(shown)}{more}")
    parts.extend(f"{check}: {message}" for check, message in batch_problems)
    return f"batch {index}: " + "; ".join(parts)


def _select(batch: Any, keep: torch.Tensor, n: int) -> Any:
    """The batch with only the ``keep`` rows, in the same structure."""
    if isinstance(batch, torch.Tensor):
        return batch[keep.to(batch.device)] if batch.shape[:1] == (n,) else batch
    if isinstance(batch, Mapping):
        return type(batch)({k: _select(v, keep, n) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_select(v, keep, n) for v in batch))
    if isinstance(batch, (tuple, list)):
        if len(batch) == n and all(isinstance(v, _ROW_SCALARS) for v in batch):
            # One value per row (default_collate leaves strings, such as file paths, a list).
            return type(batch)(v for v, kept in zip(batch, keep.tolist(), strict=True) if kept)
        return type(batch)(_select(v, keep, n) for v in batch)
    return batch


#: what a per-row list of a collated batch holds (it has no tensors or structures)
_ROW_SCALARS = (str, bytes, int, float, bool, type(None))


class _FusedCheck:
    """The guard's checks inside the batch fetch of a loader that batchguard built.

    Such a loader gathers each batch from its feature cache in one step. Before the
    first batch, the rows that could trip ``nonfinite`` or ``out_of_range`` are found
    once for the whole cache (usually none: they were quarantined or set aside). The
    dataset then calls this on every batch it fetches, on the arrays it has just
    gathered, and a batch is vouched for when none of those rows is in it, no
    column that varies in the dataset has the same value in all its rows (looked at
    only where the first two rows agree), and it holds two labels or more. Any other
    batch, or one that did not come from this fetch (worker processes, pinned
    copies), goes through :class:`BatchChecker` as before, which decides alone.
    """

    def __init__(self, dataset: Any, checker: BatchChecker) -> None:
        self.dataset = dataset
        self.checker = checker
        bounds = checker._bounds if "out_of_range" in checker.checks else None
        low, high = (None, None) if bounds is None else _per_column(bounds, dataset.num_features)
        suspect = dataset.suspect_rows(low, high)
        # A mask over the rows, so that a batch takes one gather to ask; None when empty.
        self._suspect: np.ndarray | None = None
        if suspect.size:
            self._suspect = np.zeros(len(dataset), dtype=bool)
            self._suspect[suspect] = True
        width = dataset.num_features
        varied = checker._varied
        known = varied is not None and varied.shape == (width,)
        self._varied = varied if known else np.ones(width, dtype=bool)
        self._constant = "batch_constant" in checker.checks
        self._classes = "batch_single_class" in checker.checks
        self._vouched: Any = None

    def attach(self) -> None:
        self.dataset.batch_hook = self

    def detach(self) -> None:
        if self.dataset.batch_hook is self:
            self.dataset.batch_hook = None
        self._vouched = None

    def __call__(
        self, idx: np.ndarray, x: np.ndarray, labels: np.ndarray | None, batch: Any
    ) -> None:
        self._vouched = batch if self._clean(idx, x, labels) else None

    def _clean(self, idx: np.ndarray, x: np.ndarray, labels: np.ndarray | None) -> bool:
        n = idx.shape[0]
        if n == 0 or (self._suspect is not None and self._suspect[idx].any()):
            return False
        if self._constant and n >= self.checker.min_rows_constant:
            same = (x[0] == x[1]) & self._varied
            if same.any():
                cols = np.flatnonzero(same)
                if not (x[:, cols] != x[0, cols]).any(axis=0).all():
                    return False
        if self._classes and labels is not None and n >= 2 and labels[0] == labels[-1]:
            return bool((labels != labels[0]).any())
        return True

    def vouches_for(self, batch: Any) -> bool:
        """Whether ``batch`` is the one just fetched, and clean."""
        vouched, self._vouched = self._vouched, None
        return vouched is not None and vouched is batch


def _per_column(bounds: tuple[Any, Any], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds broadcast to one (low, high) per feature column."""
    low = np.broadcast_to(np.asarray(bounds[0], dtype=np.float64), (width,))
    high = np.broadcast_to(np.asarray(bounds[1], dtype=np.float64), (width,))
    return low, high


class Guard:
    """An iterable wrapper of a DataLoader that checks every batch. Build it with :func:`guard`.

    Iteration, ``len`` and the loader's own attributes pass through to ``loader``.

    Parameters
    ----------
    loader : iterable
        The wrapped loader.
    checker : BatchChecker
        Checks each batch as it is served.
    loss_window : int, default 50
        Recent losses :meth:`observe_loss` compares a new loss with.
    loss_threshold : float, default 6.0
        Robust standard deviations above the recent median that make a spike.
    loss_min_history : int, default 10
        Losses seen before a spike can be called.
    """

    def __init__(
        self,
        loader: Any,
        checker: BatchChecker,
        *,
        loss_window: int = 50,
        loss_threshold: float = 6.0,
        loss_min_history: int = 10,
    ):
        self.loader = loader
        self.checker = checker
        self.loss_window = loss_window
        self.loss_threshold = loss_threshold
        self.loss_min_history = loss_min_history
        from .monitor import LossSpikeDetector  # the monitor's detector, NaN-proof

        self._loss_detector = LossSpikeDetector(loss_window, loss_threshold, loss_min_history)
        self._last: tuple[int, torch.Tensor, Any, Any] | None = None
        self._index = 0
        self._fused: _FusedCheck | None = None

    @property
    def stats(self) -> GuardStats:
        """Batches and rows seen, rows dropped, reasons counted, steps skipped."""
        return self.checker.stats

    def __iter__(self) -> Iterator[Any]:
        fused = self._fused
        if fused is not None:
            fused.attach()
        try:
            for batch in self.loader:
                if fused is not None and fused.vouches_for(batch):
                    out = self.checker.passed(batch)
                else:
                    out = self.checker(batch, self._index)
                self._remember(out)
                self._index += 1
                yield out
        finally:
            if fused is not None:
                fused.detach()
            self.checker.flush()

    def _remember(self, batch: Any) -> None:
        lay = self.checker._layout
        if lay is None:
            return
        x = batch if lay.features is None else lay.get(batch, lay.features)
        ids = lay.get(batch, lay.row_id)
        self._last = (self._index, x, lay.get(batch, lay.label), ids)

    def quarantine_loss_spike(self, positions: np.ndarray, loss: float, *, skipped: bool) -> None:
        """Send rows of the last batch served to quarantine as ``loss_spike``.

        What a :class:`~pipeline.monitor.StabilityMonitor` built with
        ``quarantine=guard`` calls on a data verdict: ``positions`` index the rows
        of the batch this guard served last.
        """
        self.stats.reasons["loss_spike"] += 1
        if skipped:
            self.stats.skipped_steps += 1
        parts = self.checker.quarantine
        if parts is None or self._last is None:
            return
        index, x, y, ids = self._last
        flat = x.reshape(x.shape[0], -1)
        if positions.size and positions.max() < flat.shape[0]:
            parts.add(batch_records(index, flat, y, ids, positions, [], loss))

    def observe_loss(self, loss: torch.Tensor | float) -> bool:
        """Record the loss of the last batch; returns True when the step should be skipped.

        A loss that is not finite, or exceeds the median of the recent losses by
        more than ``loss_threshold`` robust standard deviations, quarantines the
        batch's rows with reason ``loss_spike``. Spiking losses do not enter the history.
        """
        if isinstance(loss, torch.Tensor) and loss.numel() != 1:
            raise UsageError(
                f"observe_loss takes the batch's loss, one value; got a tensor of shape "
                f"{tuple(loss.shape)} (for a per-row loss, pass loss.mean())"
            )
        if not isinstance(loss, (torch.Tensor, numbers.Real)):
            raise UsageError(f"observe_loss takes the batch's loss, a number; got {loss!r}")
        # .item() rather than float(): no detach() needed, and no warning for a grad tensor.
        value = float(loss.item() if isinstance(loss, torch.Tensor) else loss)
        detector = self._loss_detector
        # The attributes stay live settings, as they were before the detector moved out.
        detector.threshold, detector.min_history = self.loss_threshold, self.loss_min_history
        if not detector.observe(value):
            return False
        self.stats.reasons["loss_spike"] += 1
        self.stats.skipped_steps += 1
        if self._last is not None:
            index, x, y, ids = self._last
            log.warning("batchguard: batch %d: loss_spike: loss %r", index, value)
            if self.checker.quarantine is not None and x.shape[0]:
                flat = x.reshape(x.shape[0], -1)
                positions = np.arange(x.shape[0])
                self.checker.quarantine.add(
                    batch_records(index, flat, y, ids, positions, [], value)
                )
        return True

    def close(self) -> None:
        """Write out quarantined rows still buffered."""
        self.checker.flush()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        # Only called for names Guard lacks: the loader's own attributes pass through.
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped loader's ``state_dict()`` (e.g. torchdata's StatefulDataLoader)."""
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the wrapped loader's state."""
        self.loader.load_state_dict(state)


def _from_loader_info(loader: Any) -> dict[str, Any]:
    """Bounds, varied columns and class count for a loader built by batchguard."""
    info = getattr(loader, "batchguard", None)
    if info is None or info.preprocessor is None:
        return {}
    return _from_preprocessor(info.preprocessor)


def _from_preprocessor(prep: Any) -> dict[str, Any]:
    """What ``fit`` decided, as the checker's bounds: on the scale the loader serves."""
    # The fences the training run applied (a schema's per-column outliers included).
    derived = _bounds(prep.fences, prep.profile, prep.features)
    lo, hi = derived["bounds"]
    if prep.scaler is not None:  # the loader serves scaled features: move the fences too
        center, scale = prep._center_scale()
        lo, hi = (lo - center) / scale, (hi - center) / scale
    # Clean rows lie within the fences; a little slack absorbs float32 rounding.
    slack = 1e-4 * np.maximum(np.abs(lo), np.abs(hi))
    slack[~np.isfinite(slack)] = 0
    derived["bounds"] = (lo - slack, hi + slack)
    derived["num_classes"] = None if prep.classes is None else len(prep.classes)
    return derived


def guard(
    loader: Any,
    *,
    preprocessor: Any = None,
    profile: Any = None,
    feature_names: Sequence[str] | None = None,
    on_bad: str = "drop",
    quarantine: str | os.PathLike[str] | None = None,
    checks: Iterable[str] = ALL_CHECKS,
    features: Any = None,
    label: Any = None,
    row_id: Any = None,
    loss_window: int = 50,
    loss_threshold: float = 6.0,
) -> Guard:
    """Wrap a DataLoader so every batch is checked as it is served.

    Parameters
    ----------
    loader : iterable
        A DataLoader (or any iterable) of tensors, tuples/lists, named tuples or
        dicts of tensors. A loader from :func:`pipeline.make_loader` or
        :meth:`Preprocessor.loader <pipeline.Preprocessor.loader>` brings its
        own profile, feature names and scaler, so ``out_of_range`` works at once.
    preprocessor : Preprocessor, optional
        Take the bounds, feature names, scaler and classes from what
        :func:`pipeline.fit` decided (a loader it built brings its own), so the
        training-time checks match the fitted state: pass it to guard a loader
        that batchguard did not build but that serves the preprocessor's features.
    profile : Profile, optional
        The dataset profile (e.g. ``pipeline.profile(path)``); with
        ``feature_names`` it gives the ``out_of_range`` fences and tells which
        features vary in the dataset.
    feature_names : sequence of str, optional
        Profile column of each feature column, in order.
    on_bad : {"drop", "raise", "warn"}, default "drop"
    quarantine : path, optional
        A directory; bad rows are appended in batched parquet part files with
        their reasons and dataset row ids.
    checks : iterable of str
        Any of ``nonfinite``, ``out_of_range``, ``batch_constant``, ``batch_single_class``.
    features, label, row_id : key or index, optional
        Where these sit in a batch; found by name (``features``/``x``, ``label``/``y``,
        ``row_id``) or position (0, 1) when not given.
    loss_window, loss_threshold : optional
        Recent losses kept, and robust standard deviations that make a spike.

    Returns
    -------
    Guard
        Iterate it like the loader; ``guard.observe_loss(loss)`` after each step.

    Examples
    --------
    >>> g = guard(loader, on_bad="drop", quarantine="runs/quarantine")  # doctest: +SKIP
    >>> for x, y, row_id in g:  # doctest: +SKIP
    ...     loss = criterion(model(x), y)
    ...     if g.observe_loss(loss):
    ...         continue  # skip the step; the rows went to quarantine
    """
    derived = _from_loader_info(loader)
    if preprocessor is not None:
        derived.update(_from_preprocessor(preprocessor))
    if profile is not None:
        derived.update(_from_profile(profile, feature_names))
    checker = BatchChecker(
        on_bad=on_bad,
        quarantine=quarantine,
        checks=checks,
        features=features,
        label=label,
        row_id=row_id,
        **derived,
    )
    wrapped = Guard(loader, checker, loss_window=loss_window, loss_threshold=loss_threshold)
    if _fetches_here(loader) and features is None and label is None and row_id is None:
        wrapped._fused = _FusedCheck(loader.dataset, checker)
    return wrapped


def _fetches_here(loader: Any) -> bool:
    """A batchguard loader whose batches are fetched in this process, as the dataset made them."""
    from torch.utils.data import DataLoader

    from .loader import ArrowMatrixDataset

    return (
        isinstance(loader, DataLoader)
        and isinstance(loader.dataset, ArrowMatrixDataset)
        and loader.num_workers == 0
        and not loader.pin_memory
    )


def _from_profile(profile: Any, feature_names: Sequence[str] | None) -> dict[str, Any]:
    """Per-feature bounds from a bare profile's default outlier fences, and which features vary."""
    if feature_names is None:
        raise UsageError("guard(profile=...) needs feature_names=[...], one per feature column")
    from .fences import outlier_fences
    from .options import ValidationOptions

    return _bounds(outlier_fences(profile, ValidationOptions()), profile, feature_names)


def _bounds(fences: Any, profile: Any, feature_names: Sequence[str]) -> dict[str, Any]:
    """Outlier fences as per-feature bounds (unbounded without a fence), and which features vary."""
    lo = np.array([fences[f].low if f in fences else -np.inf for f in feature_names])
    hi = np.array([fences[f].high if f in fences else np.inf for f in feature_names])
    varied = np.array([profile.stats(f).distinct > 1 for f in feature_names])
    return {"bounds": (lo, hi), "varied": varied}


def guarded_collate(
    collate_fn: Callable[[list[Any]], Any] | None = None, **options: Any
) -> Callable[[list[Any]], Any]:
    """A ``collate_fn`` that collates, then checks the batch (inside worker processes).

    Parameters
    ----------
    collate_fn : callable, optional
        The collate function to wrap (default: torch's ``default_collate``).
    **options
        ``on_bad``, ``quarantine`` (a directory; each process writes its own
        part files), ``checks``, ``profile`` + ``feature_names``, ``features``,
        ``label``, ``row_id``.

    Returns
    -------
    callable
    """
    from torch.utils.data import default_collate

    inner = collate_fn or default_collate
    profile = options.pop("profile", None)
    names = options.pop("feature_names", None)
    derived = _from_profile(profile, names) if profile is not None else {}
    checker = BatchChecker(**options, **derived)
    counter = itertools.count()

    def collate(samples: list[Any]) -> Any:
        out = checker(inner(samples), next(counter))
        checker.flush()  # a worker may end at any time: leave nothing buffered
        return out

    return collate
