"""``StabilityMonitor``: a verdict for every loss spike, blow-up or stall of a training run.

A loss spike has one of a few usual causes, and each has its remedy: a few bad rows
in the batch (quarantine them), gradients that explode or vanish in a layer (clip,
re-initialise, normalise), a learning rate that is too high (lower it, warm up),
dead or saturated activations. :class:`StabilityMonitor` watches the statistics
that tell them apart and returns a :class:`Verdict` naming the cause, the layer and
the rows, with the numbers behind it::

    mon = StabilityMonitor(model, optimizer)
    for x, y, row_id in loader:
        per_row = loss_fn(model(x), y, reduction="none")
        optimizer.zero_grad()
        per_row.mean().backward()
        verdict = mon.check(per_row, row_ids=row_id)  # after backward, before step
        if verdict is not None and verdict.skip:
            continue
        optimizer.step()

What is watched each step, on the loss's device (one fused norm over every
parameter's gradient and one comparison with the bounds of the last read; no host
read on healthy steps, one every ``sync_every`` steps, when the per-module norms and
the loss statistics are judged on the host):

- the batch loss, its largest row and its median row, each against its own recent
  window (median plus 6 robust standard deviations, and 5x the window's largest): a
  spike of the batch loss, a run of them, or a slow rise is an event; the other two
  say who moved;
- each module's gradient norm against the largest of its recent norms, and against
  the norm of its weights (``exploding``); the first layer's gradient per element
  against the last layer's (``vanishing``);
- non-finite losses or gradients: the forward pass of the batch is replayed with hooks
  to name the first module whose output went non-finite, or the input rows that carry
  one (nothing is paid on healthy steps); with a finite loss, the module where the
  backward pass went non-finite;
- optionally (``activations=True``), ReLU units that never fire and sigmoid/tanh units
  that never leave saturation over a window of steps.

Attribution, in this order:

1. ``data``: the largest row spiked and the median row did not, and the rows beyond
   what recent batches' worst rows reached are at most a quarter of the batch (their
   ids are the verdict's ``rows``). Right after the learning rate rose, or when the
   gradients blew up past the first layer, those rows must also have outlying inputs.
2. ``learning_rate``: the learning rate rose 2x or more within the loss window.
3. ``gradients``/``exploding``: some layers' gradients blew up far apart from the rest
   (the first of them is named), or a gradient is 100x the weights it updates.
4. ``learning_rate``: the last update was large for the weights (a median layer moved
   by a tenth of its norm).
5. ``data`` for the whole batch when the loss is a scalar (rows cannot be told apart);
   ``unknown`` otherwise.

Non-finite values always trip and never enter the running statistics, so one NaN
costs one skipped step and the next spike is still caught.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["ADVICE", "CAUSES", "KINDS", "LossSpikeDetector", "StabilityMonitor", "Verdict"]

log = logging.getLogger("batchguard")

CAUSES = ("data", "gradients", "learning_rate", "activations", "unknown")
KINDS = ("non_finite", "spike", "exploding", "vanishing", "dead", "saturated")

#: the usual remedy for each (cause, kind); ``(cause, None)`` for any other kind
ADVICE: dict[tuple[str, str | None], str] = {
    ("data", "spike"): "These rows dominate the batch loss: check them at the source; "
    "they are quarantined and the step is skipped.",
    ("data", "non_finite"): "These rows carry non-finite values into the model or the loss: "
    "fix or drop them upstream.",
    ("gradients", "non_finite"): "Guard this module's operations against invalid inputs "
    "(clamp before log, sqrt or division) and skip the step.",
    ("gradients", "exploding"): "Clip gradients (clip_grad_norm_ with max_norm about 1.0) "
    "and check this layer's initialisation scale.",
    ("gradients", "vanishing"): "Use ReLU-family activations, add normalisation or residual "
    "connections, or a better initialisation (e.g. Kaiming).",
    ("learning_rate", None): "Lower the learning rate, or add or lengthen warm-up.",
    ("activations", "dead"): "Lower the learning rate, use LeakyReLU or GELU, or re-initialise "
    "this layer.",
    ("activations", "saturated"): "Normalise this layer's inputs, scale down its initialisation, "
    "or use a ReLU-family activation.",
    ("unknown", None): "No single cause stands out: lowering the learning rate or clipping "
    "gradients is the safe first step.",
}

_DEAD = (nn.ReLU, nn.ReLU6)
#: |pre-activation| beyond which a unit is saturated (its derivative is below ~0.007)
_SATURATION = ((nn.Sigmoid, 5.0), (nn.Tanh, 2.5))
_MAD = 1.4826  # MAD -> standard deviation of a normal distribution
#: the loss statistics of a step, in the order of its statistics vector
_LOSS_STATS = ("loss", "top_row", "median_row")
_NL = len(_LOSS_STATS)


@dataclass
class Verdict:
    """Why a step tripped, and what to do about it.

    Attributes
    ----------
    step : int
        The monitor's step (0 for the first :meth:`StabilityMonitor.check`).
    cause : {"data", "gradients", "learning_rate", "activations", "unknown"}
    kind : {"non_finite", "spike", "exploding", "vanishing", "dead", "saturated"}
    layer : str or None
        A name from ``model.named_modules()``; None when no layer is at fault.
    rows : list
        Row ids of a ``data`` verdict (positions in the batch when none were given).
    evidence : dict of str to float
        The numbers behind the verdict.
    advice : str
        The usual remedy, in one sentence.
    skip : bool
        Whether the optimizer step should be skipped (the monitor's ``skip_on`` policy).
    """

    step: int
    cause: str
    kind: str
    layer: str | None = None
    rows: list[Any] = field(default_factory=list)
    evidence: dict[str, float] = field(default_factory=dict)
    advice: str = ""
    skip: bool = False

    def __str__(self) -> str:
        where = f" in {self.layer}" if self.layer else ""
        rows = f", {len(self.rows)} rows {self.rows[:8]}" if self.rows else ""
        shown = ", ".join(f"{k}={_short(v)}" for k, v in list(self.evidence.items())[:6])
        action = "skip" if self.skip else "continue"
        return (
            f"step {self.step}: {self.cause}/{self.kind}{where}{rows} ({shown}); "
            f"{action}. {self.advice}"
        )


def _short(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _median(values: Iterable[float]) -> float:
    """The median as ``np.median`` computes it (mean of the middle two for an even count)."""
    s = sorted(values)
    k = len(s)
    return s[k // 2] if k % 2 else (s[k // 2 - 1] + s[k // 2]) / 2


class LossSpikeDetector:
    """Robust windowed loss-spike detector that a non-finite loss never poisons.

    A loss spikes when it is not finite, or exceeds the median of the last ``window``
    accepted losses by more than ``threshold`` robust standard deviations
    (1.4826 x MAD; the spread is floored at 1e-3 of the median). Spikes never enter
    the history, so one NaN costs one spike and the next real spike is still caught.

    Parameters
    ----------
    window : int, default 50
        Accepted losses kept.
    threshold : float, default 6.0
        Robust standard deviations above the median that make a spike.
    min_history : int, default 10
        Accepted losses needed before a finite loss can spike.
    peak_ratio : float, optional
        A finite spike must also exceed this multiple of the largest accepted loss
        in the window. Training losses are heavy-tailed (a hard row or batch comes
        back every epoch), and the median and MAD alone call those spikes; on clean
        runs of small MLPs no loss came within 4x of its window's largest. None (the
        guard's rule): median and MAD only.
    patience : int, optional
        After this many spikes in a row the rise is *persistent*: the history is
        re-based on those losses so the new level stops counting as spikes. None (the
        guard's rule) never re-bases.
    rise_ratio : float, optional
        With ``patience``, a slow rise is persistent too: the median of the newest
        ``2 * patience`` accepted losses above ``rise_ratio`` times the largest of the
        oldest ``2 * patience`` in a full window (then the history re-bases). None: off.
    """

    def __init__(
        self,
        window: int = 50,
        threshold: float = 6.0,
        min_history: int = 10,
        *,
        peak_ratio: float | None = None,
        patience: int | None = None,
        rise_ratio: float | None = None,
    ):
        self.window = window
        self.threshold = threshold
        self.min_history = min_history
        self.peak_ratio = peak_ratio
        self.patience = patience
        self.rise_ratio = rise_ratio
        self._history: deque[float] = deque(maxlen=window)
        self._run: list[float] = []  # the current run of finite spikes
        #: the bound the last finite loss was compared with (inf when it could not spike;
        #: for a loss already under ``peak_ratio`` times the largest, that product alone)
        self.bound = math.inf
        #: the median of the history the last loss was compared with (NaN when not needed)
        self.median = math.nan
        #: whether the last loss made the rise persistent
        self.persistent = False

    def observe(self, value: float) -> bool:
        """Record one loss; True when it spikes."""
        self.persistent = False
        if not math.isfinite(value):
            return True  # never enters the history, and neither breaks nor extends a run
        self.bound = self._bound(value)
        if value <= self.bound:
            self._run.clear()
            self._history.append(value)
            self._check_rise()
            return False
        self._run.append(value)
        if self.patience is not None and len(self._run) >= self.patience:
            self.persistent = True
            self._rebase(self._run)
        return True

    def bound_for(self) -> float:
        """The value a finite loss must exceed to spike now (inf without enough history)."""
        return self._bound(math.inf)

    def _bound(self, value: float) -> float:
        self.median = math.nan
        if len(self._history) < self.min_history:
            return math.inf
        if self.peak_ratio is not None:
            # The bound is at least this: a loss under it is accepted without the median
            # and MAD (two sorts of the window), which is every healthy step.
            peak = self.peak_ratio * max(self._history)
            if value <= peak:
                return peak
        # Pure Python on the few recent losses: ~4x faster than np.median here, same floats.
        median = self.median = _median(self._history)
        # At or below the median a loss cannot spike (spread > 0, threshold >= 0).
        if not (value > median or self.threshold < 0):
            return math.inf
        spread = _MAD * _median([abs(v - median) for v in self._history])
        spread = max(spread, 1e-3 * abs(median), 1e-12)
        bound = median + self.threshold * spread
        if self.peak_ratio is not None:
            bound = max(bound, self.peak_ratio * max(self._history))
        return bound

    def _check_rise(self) -> None:
        """A slow rise: the newest losses' median well above the oldest ones'."""
        k, ratio = self.patience, self.rise_ratio
        if k is None or ratio is None or len(self._history) < self.window or self.window < 4 * k:
            return
        values = list(self._history)
        new = values[-2 * k :]
        if _median(new) > ratio * max(values[: 2 * k]):
            self.persistent = True
            self._rebase(new)

    def _rebase(self, values: Sequence[float]) -> None:
        self._history.clear()
        self._history.extend(values)
        self._run.clear()

    def state_dict(self) -> dict[str, Any]:
        """The detector's history, enough to make the same decisions after a restart."""
        return {"history": list(self._history), "run": list(self._run)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self._history = deque(state["history"], maxlen=self.window)
        self._run = list(state["run"])


@dataclass
class _Step:
    """What the host knows of one checked step."""

    step: int
    loss: np.ndarray  # batch mean, largest row, median row
    norms: np.ndarray  # gradient norm of each watched module (0 when it has none)
    lr: float | None
    per_row: torch.Tensor | None
    row_ids: Any
    weights: torch.Tensor | None = None  # parameter norms taken at this step, until read


class _Layers:
    """The modules that own parameters, and the fused gradient-norm reduction over them."""

    def __init__(self, model: nn.Module):
        names: list[str] = []
        params: list[nn.Parameter] = []
        owner: list[int] = []
        seen: set[int] = set()
        for name, module in model.named_modules():
            own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
            own = [p for p in own if p.requires_grad]
            if not own:
                continue
            seen.update(id(p) for p in own)
            owner.extend([len(names)] * len(own))
            names.append(name)
            params.extend(own)
        if not params:
            from .errors import UsageError

            raise UsageError(
                f"{type(model).__name__} has no parameter that requires grad, so there are "
                "no gradients to watch; unfreeze the layers being trained, or monitor the "
                "model that holds them"
            )
        self.names = names
        self.params = params
        self.owner = owner
        self.numel = np.array(
            [
                sum(p.numel() for p, o in zip(params, owner, strict=True) if o == k)
                for k in range(len(names))
            ],
            dtype=np.float64,
        )
        modules = dict(model.named_modules())
        # The depth profile compares weight matrices (not norms, biases or embeddings).
        self.depth = [
            k
            for k, n in enumerate(names)
            if not isinstance(modules[n], (nn.Embedding, nn.EmbeddingBag))
            and getattr(getattr(modules[n], "weight", None), "ndim", 0) >= 2
        ]
        # Parameters come module by module: a module's are one contiguous run of columns.
        self.starts = np.flatnonzero(np.diff([-1, *owner])) if owner else np.zeros(0, np.int64)
        counts = np.bincount(owner, minlength=len(names)) if owner else np.zeros(0)
        #: 1 / sqrt(parameters of its module), per parameter: squares sum to 1 per module
        self.share = 1.0 / np.sqrt(counts[owner]) if owner else np.zeros(0)

    def grad_norms(self, dtype: torch.dtype) -> tuple[list[torch.Tensor], list[int] | None]:
        """Each parameter's gradient norm: one fused reduction, no host read.

        Returns the norms (0-d tensors of ``dtype``) and, when some parameters have no
        dense gradient, the positions of those that have one (None when all have).
        """
        all_grads = [p.grad for p in self.params]
        present = None
        if all(g is not None and not g.is_sparse for g in all_grads):
            grads = [g for g in all_grads if g is not None]  # every one (a typed list)
        else:
            present = [k for k, g in enumerate(all_grads) if g is not None and not g.is_sparse]
            grads = [g for g in (all_grads[k] for k in present) if g is not None]
        if not grads:
            return [], present
        # dtype: a float16 gradient's norm overflows float16 at 65504
        return list(torch._foreach_norm(grads, 2, dtype=dtype)), present

    def weight_norms(self) -> list[torch.Tensor]:
        """Each parameter's norm (0-d tensors)."""
        if not self.params:
            return []
        return list(torch._foreach_norm([p.detach() for p in self.params], 2, dtype=torch.float32))

    def by_module(self, param_norms: np.ndarray) -> np.ndarray:
        """Per-parameter norms (rows of steps) as per-module norms, summed in float64.

        Squares are summed over each module's run of columns (``reduceat``, not a product
        with a 0/1 matrix: an infinite norm times 0 would be NaN in every module).
        """
        if param_norms.shape[-1] == 0:
            return param_norms
        sq = np.square(param_norms.astype(np.float64, copy=False))
        return np.sqrt(np.add.reduceat(sq, self.starts, axis=-1))


def _stat_dtype(device: torch.device, *dtypes: torch.dtype) -> torch.dtype:
    """float32 statistics, float64 when the loss or the gradients are (never on MPS)."""
    if device.type != "mps" and torch.float64 in dtypes:
        return torch.float64
    return torch.float32


def _finite_all(tensors: Iterable[Any]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if _float_tensor(t))


def _float_tensor(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())


def _flatten(obj: Any) -> list[Any]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _flatten(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _flatten(v)]
    return []


class _Activations:
    """Forward hooks keeping each unit's largest output (ReLU) or smallest |input| (sigmoid).

    Over the window, on the device: per hooked module and forward, one reduction over
    the rows and one running maximum (minimum); tanh is kept like sigmoid.
    """

    def __init__(self, model: nn.Module):
        self.names: list[str] = []
        self.kinds: list[str] = []
        self.limits: list[float] = []
        self.extremes: list[torch.Tensor | None] = []
        self.handles = []
        for name, module in model.named_modules():
            kind, limit = _activation_kind(module)
            if kind is None:
                continue
            slot = len(self.names)
            self.names.append(name)
            self.kinds.append(kind)
            self.limits.append(limit)
            self.extremes.append(None)
            self.handles.append(module.register_forward_hook(self._hook(slot, kind, limit)))

    def _hook(self, slot: int, kind: str, limit: float):
        dead = kind == "dead"

        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            # Only training forwards count; an evaluation pass does not shift the window.
            if not torch.is_grad_enabled() or not isinstance(output, torch.Tensor):
                return
            with torch.no_grad():
                # A unit fired if its largest output is > 0; it left saturation if its
                # smallest |input| is < limit (reduced over rows first: no mask of the batch).
                if dead:
                    value = _over_units(output, torch.amax)
                else:
                    value = _over_units(inputs[0].abs(), torch.amin)
                prev = self.extremes[slot]
                if prev is None or prev.shape != value.shape:
                    self.extremes[slot] = value
                elif dead:
                    torch.maximum(prev, value, out=prev)
                else:
                    torch.minimum(prev, value, out=prev)

        return hook

    @property
    def seen(self) -> list[torch.Tensor | None]:
        """Per hooked layer, which units fired (left saturation) in the window so far."""
        return [
            None if e is None else (e > 0 if kind == "dead" else e < limit)
            for e, kind, limit in zip(self.extremes, self.kinds, self.limits, strict=True)
        ]

    @seen.setter
    def seen(self, masks: list[torch.Tensor | None]) -> None:
        self.extremes = [
            None
            if m is None
            else (m.float() if kind == "dead" else torch.where(m, 0.0, limit).float())
            for m, kind, limit in zip(masks, self.kinds, self.limits, strict=True)
        ]

    def shares(self) -> list[float]:
        """Each hooked layer's share of units that never fired (or never left saturation)."""
        out = [1.0 - m.float().mean() if m is not None else None for m in self.seen]
        values = [v for v in out if v is not None]
        read = torch.stack(values).tolist() if values else []  # one host read per window
        it = iter(read)
        return [math.nan if v is None else next(it) for v in out]

    def reset(self) -> None:
        self.extremes = [None] * len(self.names)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def _activation_kind(module: nn.Module) -> tuple[str | None, float]:
    if isinstance(module, _DEAD):
        return "dead", 0.0
    for cls, limit in _SATURATION:
        if isinstance(module, cls):
            return "saturated", limit
    return None, 0.0


def _over_units(values: torch.Tensor, reduce: Any) -> torch.Tensor:
    """``reduce`` over everything but the units: dim 1, or the last of 3-D (tokens)."""
    if values.ndim <= 1:
        return values.reshape(-1).clone()
    unit = values.ndim - 1 if values.ndim == 3 else 1
    dims = [d for d in range(values.ndim) if d != unit]
    return reduce(values, dim=dims)


class StabilityMonitor:
    """Watch a training run and give a :class:`Verdict` for every spike, blow-up or stall.

    Call :meth:`check` after ``backward()`` and before ``optimizer.step()``.

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained; its modules name the layers in verdicts.
    optimizer : torch.optim.Optimizer, optional
        Its learning rate (and the change of it) is the evidence for ``learning_rate``
        verdicts; without one that cause is never given.
    loss_window, loss_threshold, loss_min_history : optional
        The loss-spike detector (:class:`LossSpikeDetector`): losses kept, robust
        standard deviations that make a spike, losses seen before judging.
    peak_ratio : float, default 5.0
        A finite spike must also exceed this multiple of the largest accepted loss
        in the window (see :class:`LossSpikeDetector`).
    patience : int, default 5
        Spikes in a row that make a persistent rise (then the loss detector re-bases).
    grad_window, grad_min_history : int, default 50 and 25
        Gradient norms kept per layer, and steps seen before a layer's norm is judged.
    explode_ratio : float, default 10.0
        A layer's gradient norm this many times the largest of its recent norms is a
        blow-up (the largest, not the median: near convergence a batch of hard rows
        lifts gradient norms 100x their median on clean runs, but not 4x their largest).
    grad_weight_ratio : float, default 100.0
        A layer's gradient norm this many times its weights' norm is a blow-up at any
        step, history or not (a step of any sensible size would wreck the layer).
    vanish_orders : float, default 3.0
        Orders of magnitude by which the first layer's gradient (per element) must
        trail the last layer's, ...
    vanish_patience : int, default 20
        ... for this many steps in a row, to be ``vanishing``.
    activations : bool, default False
        Hook ReLU, sigmoid and tanh modules (``nn.ReLU``, ``nn.Sigmoid``, ...; not
        the functional forms) for dead and saturated units.
    activation_window : int, default 100
        Steps over which a unit must never fire (or never leave saturation).
    dead_share, saturated_share : float, default 0.1
        Share of a layer's units dead (or saturated) that makes a verdict.
    skip_on : iterable of str, default ("data", "non_finite")
        Causes and kinds whose verdicts say ``skip=True``: by default bad rows, and
        any non-finite step (its update would write NaN into the weights). Every
        other verdict says what it found and leaves the step to the caller.
    sync_every : int, default 16
        How often the statistics are read on the host. In between, healthy steps never
        synchronise: each step's statistics stay in a device buffer, and a trip flag
        (a non-finite value, or the batch loss or a gradient past the bounds of the
        last read) goes to host memory without blocking; a set flag is read as soon as
        it has landed, which on the CPU is its own step and on a GPU usually the next.
        Every step is judged in order by the same rules whenever it is read, so the
        verdicts do not depend on ``sync_every``; a verdict read after its step says
        ``late`` in its evidence and ``skip=False`` (its step was taken). 1: a read every
        step (a synchronisation on a GPU), so every verdict can skip its own step.
    quarantine : Guard, QuarantineParts or path, optional
        Where the rows of ``data`` verdicts go, with reason ``loss_spike``. A
        :class:`~pipeline.Guard` writes them with the features and labels of the
        batch it served last; otherwise the model's input rows are written.
    weight_every : int, default 10
        Steps between refreshes of the layers' weight norms.

    Attributes
    ----------
    verdicts : list of Verdict
        Every verdict so far, in step order.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        loss_window: int = 50,
        loss_threshold: float = 6.0,
        loss_min_history: int = 10,
        peak_ratio: float = 5.0,
        patience: int = 5,
        grad_window: int = 50,
        grad_min_history: int = 25,
        explode_ratio: float = 10.0,
        grad_weight_ratio: float = 100.0,
        vanish_orders: float = 3.0,
        vanish_patience: int = 20,
        activations: bool = False,
        activation_window: int = 100,
        dead_share: float = 0.1,
        saturated_share: float = 0.1,
        skip_on: Iterable[str] = ("data", "non_finite"),
        sync_every: int = 16,
        quarantine: Any = None,
        weight_every: int = 10,
    ):
        from .errors import UsageError

        if not isinstance(sync_every, int) or isinstance(sync_every, bool) or sync_every < 1:
            raise UsageError(f"sync_every must be an integer >= 1, got {sync_every!r}")
        if isinstance(skip_on, str):
            skip_on = (skip_on,)
        names = sorted({part for key in ADVICE for part in key if part is not None})
        unknown = sorted(set(skip_on) - set(names))
        if unknown:  # a typo ("nonfinite") would silently stop skipping those steps
            raise UsageError(
                f"skip_on: no cause or kind {unknown[0]!r}; they are {', '.join(names)}"
            )
        self.model = model
        self.optimizer = optimizer
        self.skip_on = frozenset(skip_on)
        self.sync_every = sync_every
        self.explode_ratio = explode_ratio
        self.grad_weight_ratio = grad_weight_ratio
        self.grad_min_history = grad_min_history
        self.vanish_orders = vanish_orders
        self.vanish_patience = vanish_patience
        self.activation_window = activation_window
        self.dead_share = dead_share
        self.saturated_share = saturated_share
        self.weight_every = weight_every
        self.verdicts: list[Verdict] = []
        # One detector each for the batch loss, its largest row and its median row: a
        # few bad rows lift the largest, a bad update lifts the median (every row).
        self._detectors = [
            LossSpikeDetector(
                loss_window,
                loss_threshold,
                loss_min_history,
                peak_ratio=peak_ratio,
                patience=patience,
                rise_ratio=3.0 if name == "loss" else None,
            )
            for name in _LOSS_STATS
        ]
        self._layers = _Layers(model)
        m = len(self._layers.names)
        self._grads = np.zeros((grad_window, m))  # ring of accepted gradient norms
        self._grads_seen = 0
        self._lrs: deque[float] = deque(maxlen=loss_window)
        self._weights = np.full(m, np.nan)  # weight norms, refreshed every weight_every steps
        self._inv_weights = np.zeros(m)  # 1 / weight norm (0 where there is none)
        self._weights_step = -(10**9)  # the step whose weight norms _weights holds
        self._weights_due = -(10**9)  # the last step that took weight norms on the device
        self._last: _Step | None = None  # the last healthy step (the update that followed it)
        self._vanish_run = 0
        self._vanish_armed = True
        self._step = 0
        self._pending: list[_Step] = []
        self._ring: torch.Tensor | None = None
        self._one_device = len({p.device for p in self._layers.params}) <= 1
        self._flags: torch.Tensor | None = None  # host memory: one trip flag per pending step
        self._device_flags: torch.Tensor | None = None  # the same on a GPU, before the copy
        self._flag_view: np.ndarray | None = None
        self._events: list[Any] = []
        self._flags_seen = 0  # pending steps whose flag has landed clear
        self._bounds: tuple[torch.Tensor, torch.Tensor] | None = None  # (low, high), on device
        self._high: np.ndarray | None = None  # the high bounds as uploaded (restored exactly)
        #: the training forward passes of the current step: (args, kwargs) of each
        self._inputs: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self._inputs_step = -1
        self._handles = [model.register_forward_pre_hook(self._capture, with_kwargs=True)]
        self._acts = _Activations(model) if activations else None
        self._act_steps = 0
        self._act_armed = dict.fromkeys(self._acts.names, True) if self._acts else {}
        self._quarantine = quarantine
        if isinstance(quarantine, (str,)) or hasattr(quarantine, "__fspath__"):
            from .quarantine import QuarantineParts

            self._quarantine = QuarantineParts(quarantine)

    # -- the step -------------------------------------------------------------------------

    @property
    def step(self) -> int:
        """Steps checked so far."""
        return self._step

    def check(self, loss: torch.Tensor | float, row_ids: Any = None) -> Verdict | None:
        """Judge the step just back-propagated; None when it is healthy.

        Parameters
        ----------
        loss : torch.Tensor or float
            The per-row loss (``reduction="none"``; rows along the first dimension,
            averaged over the rest) or the scalar batch loss (then a spike that no
            layer or learning rate explains is blamed on the whole batch).
        row_ids : sequence or tensor, optional
            The batch's dataset row ids, named in ``data`` verdicts (positions otherwise).

        Returns
        -------
        Verdict or None
            This step's verdict, or (on a GPU with ``sync_every > 1``) a late one for an
            earlier step; every verdict is also appended to :attr:`verdicts`.
        """
        if isinstance(loss, torch.Tensor) and (not loss.numel() or not loss.is_floating_point()):
            from .errors import UsageError

            raise UsageError(
                f"check: the loss should be a float tensor with a value per row (or one), "
                f"but got a {loss.dtype} tensor of shape {tuple(loss.shape)}"
            )
        step = self._step
        self._step += 1
        per_row, loss_stats = self._loss_stats(loss)
        self._remember(step, per_row, row_ids, loss_stats)
        found = self._read_if_due(step)
        if self._acts is not None:
            found.extend((v, None) for v in self._check_activations(step))
        if not found:
            return None
        for verdict, rec in found:
            self._act_on(verdict, rec)
        return _pick([v for v, _ in found], step)

    def _loss_stats(
        self, loss: torch.Tensor | float
    ) -> tuple[torch.Tensor | None, tuple[torch.Tensor, ...]]:
        """The per-row loss (None for a scalar) and the batch, largest and median row losses."""
        if not isinstance(loss, torch.Tensor):
            params = self._layers.params
            loss = torch.tensor(float(loss), device=params[0].device if params else None)
        value = loss.detach()
        if value.ndim == 0 or value.numel() == 1 and value.ndim <= 1:
            one = value.reshape(())
            return None, (one, one, one)  # rows unseen: all three alike
        per_row = value if value.ndim == 1 else value.reshape(value.shape[0], -1).mean(1)
        # max and median propagate NaN, so a non-finite row always shows
        return per_row, (per_row.mean(), per_row.max(), per_row.median())

    def _remember(
        self, step: int, per_row: Any, row_ids: Any, loss_stats: tuple[torch.Tensor, ...]
    ) -> None:
        """The step's statistics into its row of the device ring; its trip flag raised."""
        layers = self._layers
        device = loss_stats[0].device
        if self._ring is None or self._ring.device != device:
            self._start_ring(device, loss_stats[0].dtype)
        assert self._ring is not None
        slot = len(self._pending)
        row = self._ring[slot]
        norms, present = layers.grad_norms(row.dtype)
        if present is None and self._one_device and norms[0].device == device:
            torch.stack([*loss_stats, *norms], out=row)  # the one copy of a normal step
        else:
            row.zero_()
            torch.stack(loss_stats, out=row[:_NL])
            if norms:
                where = range(len(norms)) if present is None else present
                index = torch.tensor([_NL + k for k in where], device=device)
                row.index_copy_(0, index, torch.stack([n.to(device) for n in norms]))
        weights = None
        if step - self._weights_due >= self.weight_every:
            self._weights_due = step
            weights = torch.stack([w.to(device) for w in layers.weight_norms()]) if norms else None
        self._pending.append(
            _Step(
                step=step,
                loss=np.empty(0),
                norms=np.empty(0),
                lr=self._current_lr(),
                per_row=per_row,
                row_ids=row_ids,
                weights=weights,
            )
        )
        if self.sync_every > 1:
            self._raise_flag(slot, row)

    def _start_ring(self, device: torch.device, loss_dtype: torch.dtype) -> None:
        """Device buffers for ``sync_every`` steps' statistics (pending rows carried over)."""
        dtypes = {p.dtype for p in self._layers.params}
        dtype = _stat_dtype(device, loss_dtype, *dtypes)
        width = _NL + len(self._layers.params)
        old, self._ring = (
            self._ring,
            torch.zeros((self.sync_every, width), dtype=dtype, device=device),
        )
        if old is not None and self._pending:
            self._ring[: len(self._pending)].copy_(old[: len(self._pending)])
        pin = device.type == "cuda"
        self._flags = torch.zeros(self.sync_every, dtype=torch.bool, pin_memory=pin)
        self._flag_view = self._flags.numpy()  # host memory: reading it is not a tensor call
        self._device_flags = (
            None if device.type == "cpu" else torch.zeros_like(self._flags, device=device)
        )
        self._set_bounds()

    def _raise_flag(self, slot: int, row: torch.Tensor) -> None:
        """Whether the step left the bounds of the last read, into host memory, never waiting.

        One clamp to (low, high) and a comparison: NaN, an infinity, or a value past
        its bound comes out changed.
        """
        assert self._flags is not None and self._bounds is not None
        low, high = self._bounds
        changed = torch.clamp(row, low, high).ne_(row)
        if self._device_flags is None:  # the CPU: written straight into host memory
            torch.any(changed, out=self._flags[slot])
            return
        torch.any(changed, out=self._device_flags[slot])
        self._flags[slot : slot + 1].copy_(self._device_flags[slot : slot + 1], non_blocking=True)
        if row.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
            self._events.append(event)

    def _read_if_due(self, step: int) -> list[tuple[Verdict, _Step | None]]:
        due = self.sync_every == 1 or len(self._pending) >= self.sync_every
        if not due and not self._tripped():
            return []
        return self._read(step)

    def _tripped(self) -> bool:
        """Whether a landed trip flag is set; never waits for the device."""
        assert self._flag_view is not None
        n = len(self._pending)
        if self._device_flags is None or not self._events:
            # CPU (or a device without events): every flag has landed; earlier ones were clear
            return bool(self._flag_view[n - 1])
        while self._flags_seen < n:
            if not self._events[self._flags_seen].query():
                return False  # later flags cannot have landed earlier
            if self._flag_view[self._flags_seen]:
                return True
            self._flags_seen += 1
        return False

    def _read(self, step: int) -> list[tuple[Verdict, _Step | None]]:
        """One host read of every pending step's statistics, then each step judged in order.

        The rules are applied step by step whenever the read comes, so the verdicts do
        not depend on ``sync_every``; only a verdict read after its step says so.
        """
        assert self._ring is not None
        n = len(self._pending)
        width = self._ring.shape[1]
        pending, self._pending = self._pending, []
        parts = [self._ring[:n].reshape(-1)]
        parts += [rec.weights.to(self._ring.dtype) for rec in pending if rec.weights is not None]
        flat = parts[0] if len(parts) == 1 else torch.cat(parts)
        values = np.array(flat.tolist())  # the only host read of a normal step
        self._events, self._flags_seen = [], 0
        if self._flag_view is not None:
            self._flag_view[:] = False
        stats = values[: n * width].reshape(n, width)
        params = stats[:, _NL:]
        with np.errstate(over="ignore", invalid="ignore"):
            modules = self._layers.by_module(params)
        weights = values[n * width :]
        p = len(self._layers.params)
        found: list[tuple[Verdict, _Step | None]] = []
        for k, rec in enumerate(pending):
            rec.loss, rec.norms = stats[k, :_NL], modules[k]
            if rec.weights is not None:
                rec.weights = None
                self._set_weights(rec.step, weights[:p])
                weights = weights[p:]
            verdict = self._judge(rec)
            if verdict is None:
                continue
            if rec.step != step:
                verdict.evidence["late"] = float(step - rec.step)
                verdict.skip = False
            found.append((verdict, rec))
        if self.sync_every > 1:
            self._upload_bounds()
        return found

    def _set_weights(self, step: int, param_norms: np.ndarray) -> None:
        self._weights = self._layers.by_module(param_norms)
        with np.errstate(divide="ignore"):
            self._inv_weights = np.where(self._weights > 0, 1.0 / self._weights, 0.0)
        self._weights_step = step

    def _upload_bounds(self) -> None:
        """The bounds a healthy step stays under until the next read, for the trip flag.

        Each is at most what the exact rule can come to within ``sync_every`` steps, so
        every loss spike and gradient blow-up trips its own step (a step past a bound
        that the rule then accepts costs an early read, nothing more): ``peak_ratio``
        times the largest of the losses that stay in the window that long (the spike
        bound is never below it), and ``explode_ratio`` times each module's largest
        norm among the rows that stay in its window, or ``grad_weight_ratio`` times its
        weights. A module's bound goes to each of its parameters over the square root
        of their count: a module past its bound has a parameter past its own.
        """
        layers = self._layers
        n = self.sync_every
        high = np.full(_NL + len(layers.params), np.inf)
        # The largest and median rows only attribute a spike; the batch loss makes one.
        high[0] = self._loss_flag_bound(n)
        bound = np.full(len(layers.names), np.inf)
        kept = self._grads_kept(n)
        if kept is not None:
            bound = self.explode_ratio * kept
        weights = np.where(self._weights > 0, self._weights, np.inf) * self.grad_weight_ratio
        bound = np.minimum(bound, weights)
        high[_NL:] = bound[layers.owner] * layers.share
        self._high = high
        self._set_bounds()

    def _loss_flag_bound(self, n: int) -> float:
        detector = self._detectors[0]
        history = detector._history
        if detector.peak_ratio is None:
            return detector.bound_for()
        if len(history) + n < detector.min_history:
            return math.inf  # no spike can be called before the next read
        drop = max(0, len(history) + n - detector.window)
        kept = list(history)[drop:]
        return detector.peak_ratio * max(kept) if kept else math.inf

    def _grads_kept(self, n: int) -> np.ndarray | None:
        """Each module's largest accepted norm among the rows still in the window n steps on."""
        w = self._grads.shape[0]
        seen = min(self._grads_seen, w)
        if seen + n < self.grad_min_history:
            return None
        keep = min(seen, w - n)
        if keep <= 0:
            return None
        rows = [(self._grads_seen - 1 - j) % w for j in range(keep)]
        return self._grads[rows].max(axis=0)

    def _set_bounds(self) -> None:
        """The device copy of (low, high): infinities as the dtype's largest finite value."""
        if self._ring is None:
            return
        width, dtype = self._ring.shape[1], self._ring.dtype
        top = torch.finfo(dtype).max
        high = np.full(width, np.inf) if self._high is None else self._high
        high = np.minimum(np.nan_to_num(high, nan=top), top)
        bounds = torch.tensor(np.stack([np.full(width, -top), high]), dtype=dtype)
        low, high_t = bounds.to(self._ring.device)
        self._bounds = (low, high_t)

    def _current_lr(self) -> float | None:
        if self.optimizer is None:
            return None
        # A tensor learning rate would need a host read: it is left out.
        lrs = [
            float(g["lr"])
            for g in self.optimizer.param_groups
            if isinstance(g.get("lr"), (int, float))
        ]
        return max(lrs) if lrs else None

    # -- judging one step on the host ---------------------------------------------------

    def _judge(self, rec: _Step) -> Verdict | None:
        verdict = self._judge_stats(rec)
        if rec.lr is not None:
            self._lrs.append(rec.lr)  # the schedule, whatever the step's fate
        return verdict

    def _judge_stats(self, rec: _Step) -> Verdict | None:
        if not (np.isfinite(rec.loss).all() and np.isfinite(rec.norms).all()):
            for d in self._detectors:
                d.observe(math.nan)  # counted, never in the history
            return self._non_finite(rec)
        # Without per-row losses only the batch loss is watched.
        watched = self._detectors if rec.per_row is not None else self._detectors[:1]
        spikes = [d.observe(float(v)) for d, v in zip(watched, rec.loss, strict=False)]
        spikes += [False] * (_NL - len(spikes))
        persistent = any(d.persistent for d in watched)
        peaks = self._grad_peaks()
        ratios = None if peaks is None else rec.norms / np.where(peaks > 0, peaks, np.inf)
        gw = rec.norms * self._inv_weights  # 0 where a module has no weight norm yet
        grad_trip = (
            ratios is not None and ratios.size > 0 and bool(ratios.max() >= self.explode_ratio)
        )
        huge = bool(gw.max() >= self.grad_weight_ratio) if gw.size else False
        # The batch loss is what the optimizer follows: its spike is the event; the largest
        # and median rows' detectors only say who moved (they keep their own histories).
        if not (spikes[0] or grad_trip or huge or persistent):
            self._accept(rec)
            return self._vanishing(rec)
        return self._attribute(rec, spikes, persistent, ratios, gw)

    def _accept(self, rec: _Step) -> None:
        """A healthy step enters the gradient history and becomes the last update's origin."""
        w = self._grads.shape[0]
        self._grads[self._grads_seen % w] = rec.norms
        self._grads_seen += 1
        self._last = rec

    def _grad_peaks(self) -> np.ndarray | None:
        """Each layer's largest accepted gradient norm in the window (None while warming up)."""
        n = min(self._grads_seen, self._grads.shape[0])
        if n < self.grad_min_history:
            return None
        return self._grads[:n].max(axis=0)

    def _attribute(
        self,
        rec: _Step,
        spikes: list[bool],
        persistent: bool,
        ratios: np.ndarray | None,
        gw: np.ndarray,
    ) -> Verdict:
        ev = self._loss_evidence(rec, spikes, persistent)
        spike = spikes[0] or persistent
        names = self._layers.names
        lr_change, update = self._lr_evidence(rec, ev)
        blown = self._blown(ratios, ev)
        # 1. a few rows lifted the batch: they alone exceed what a batch's worst row reaches.
        # Right after the learning rate rose, or when gradients blew up past the first
        # layer (bad rows enter through it), the hardest rows go first: then only rows
        # whose inputs stand out too are blamed.
        rows = self._dominant_rows(rec, spikes, ev)
        inside = blown is not None and not blown[0]
        if rows is not None and (
            (lr_change < 2.0 and not inside) or self._odd_inputs(rec, rows, ev)
        ):
            return self._verdict(rec, "data", "spike", None, _ids(rec.row_ids, rows), ev)
        # 2. the learning rate rose within the window, and the loss or a gradient followed
        if lr_change >= 2.0:
            return self._verdict(rec, "learning_rate", "spike", None, [], ev)
        # 3. some layers' gradients blew up, far apart from the rest: the first of them, in
        # forward order, is where it starts
        if blown is not None:
            k = int(np.flatnonzero(blown)[0])
            return self._verdict(rec, "gradients", "exploding", names[k], [], ev)
        # 4. a gradient dwarfs the weights it updates (a bad initialisation, with or
        # without history)
        if gw.size and float(gw.max()) >= self.grad_weight_ratio:
            k = int(np.argmax(gw))
            ev["grad_weight_ratio"] = float(gw[k])
            return self._verdict(rec, "gradients", "exploding", names[k], [], ev)
        # 5. the whole batch rose after an update far too large for the weights
        if update >= 0.1:
            return self._verdict(rec, "learning_rate", "spike", None, [], ev)
        # 6. a scalar loss cannot point at rows: the batch is the suspect
        if rec.per_row is None and spike:
            ev["by_batch"] = 1.0
            return self._verdict(rec, "data", "spike", None, _all_rows(rec), ev)
        kind = "spike" if spike else "exploding"
        return self._verdict(rec, "unknown", kind, None, [], ev)

    def _blown(self, ratios: np.ndarray | None, ev: dict[str, float]) -> np.ndarray | None:
        """The layers whose gradients blew up apart from the rest, or None.

        Each layer's norm over its window's largest, sorted: the blown layers lie above
        the widest gap, which must be ``explode_ratio`` wide with all of them beyond
        ``explode_ratio``. Gradients that all rose together, by degrees (a batch whose
        every label is wrong), point at no layer.
        """
        if ratios is None or ratios.size < 2:
            return None
        ev["grad_ratio_top"] = float(ratios.max())
        ordered = np.sort(ratios)[::-1]
        gaps = ordered[:-1] / np.maximum(ordered[1:], 1e-12)
        k = int(np.argmax(gaps))
        if gaps[k] < self.explode_ratio or ordered[k] < self.explode_ratio:
            return None
        ev["grad_ratio_gap"] = float(gaps[k])
        return ratios >= ordered[k]

    def _loss_evidence(self, rec: _Step, spikes: list[bool], persistent: bool) -> dict[str, float]:
        ev: dict[str, float] = {}
        for name, d, value, spiked in zip(
            _LOSS_STATS, self._detectors, rec.loss, spikes, strict=True
        ):
            if rec.per_row is None and name != "loss":
                continue
            ev[name] = float(value)
            if spiked and math.isfinite(d.bound):
                ev[f"{name}_bound"] = d.bound
        if persistent:
            ev["persistent"] = 1.0
        return ev

    def _dominant_rows(
        self, rec: _Step, spikes: list[bool], ev: dict[str, float]
    ) -> np.ndarray | None:
        """Positions of rows beyond what recent batches' worst rows reached.

        Only when they are few and the median row is calm; from the loss alone, so a
        gradient trip without a loss spike names no rows.
        """
        if rec.per_row is None or not spikes[1] or spikes[2]:
            return None
        values = np.asarray(rec.per_row.tolist(), dtype=np.float64)
        out = np.flatnonzero(values > self._detectors[1].bound)
        if out.size == 0 or out.size > max(1, values.size // 4):
            return None
        total = float(np.abs(values).sum())
        ev["row_share"] = float(np.abs(values[out]).sum() / total) if total > 0 else 0.0
        ev["rows_flagged"] = float(out.size)
        return out

    def _odd_inputs(self, rec: _Step, rows: np.ndarray, ev: dict[str, float]) -> bool:
        """Whether every flagged row's input norm is a robust outlier of its batch."""
        x = self._input_rows(rec)
        if x is None:
            return False
        norms = np.asarray(x.detach().reshape(x.shape[0], -1).float().norm(dim=1).tolist())
        median = float(np.median(norms))
        spread = max(_MAD * float(np.median(np.abs(norms - median))), 1e-6 * abs(median), 1e-12)
        odd = norms[rows] > median + self._detectors[0].threshold * spread
        ev["rows_odd_inputs"] = float(odd.sum())
        return bool(odd.all())

    def _lr_evidence(self, rec: _Step, ev: dict[str, float]) -> tuple[float, float]:
        """The learning rate's rise over the recent window, and the last update's size."""
        if rec.lr is None:
            return 1.0, 0.0
        ev["lr"] = rec.lr
        low = min(self._lrs) if self._lrs else rec.lr
        change = rec.lr / low if low > 0 else 1.0
        ev["lr_change"] = change
        update = 0.0
        last = self._last
        if last is not None and last.lr is not None and np.isfinite(self._weights).all():
            with np.errstate(divide="ignore", invalid="ignore"):
                size = self._update_size(last)
                ratio = np.where(self._weights > 0, size / self._weights, 0.0)
            update = float(np.median(ratio)) if ratio.size else 0.0
            ev["update_ratio"] = update
        return change, update

    def _update_size(self, last: _Step) -> np.ndarray:
        """Each layer's last update norm: lr x gradient, or lr x sqrt(n) for Adam-like steps."""
        assert last.lr is not None
        adaptive = self.optimizer is not None and any(
            "betas" in g or "alpha" in g for g in self.optimizer.param_groups
        )
        if adaptive:
            return last.lr * np.sqrt(self._layers.numel)
        return last.lr * last.norms

    def _vanishing(self, rec: _Step) -> Verdict | None:
        """The first weight's gradient (per element) orders of magnitude below the last's."""
        depth = self._layers.depth
        if len(depth) < 3:
            return None
        first, last = depth[0], depth[-1]
        rms = rec.norms / np.sqrt(self._layers.numel)
        if rms[last] <= 0:
            return None
        ratio = float(rms[first] / rms[last])
        if ratio <= 10.0**-self.vanish_orders:
            self._vanish_run += 1
        else:
            self._vanish_run = 0
            if ratio > 10.0 ** (1 - self.vanish_orders):
                self._vanish_armed = True  # recovered: a later stall is a new verdict
        if not self._vanish_armed or self._vanish_run < self.vanish_patience:
            return None
        self._vanish_armed = False
        ev = {"grad_rms_ratio": ratio, "orders": -math.log10(max(ratio, 1e-300))}
        ev["steps"] = float(self._vanish_run)
        # Dead or saturated units stop the gradient: when hooked, they are the cause.
        found = self._activation_findings()
        if found:
            name, kind, share = max(found, key=lambda f: f[2])
            self._act_armed[name] = False
            ev[f"{kind}_share"] = share
            return self._verdict(rec, "activations", kind, name, [], ev)
        return self._verdict(rec, "gradients", "vanishing", self._layers.names[first], [], ev)

    # -- non-finite steps ---------------------------------------------------------------

    def _non_finite(self, rec: _Step) -> Verdict:
        names = self._layers.names
        ev: dict[str, float] = {"loss": float(rec.loss[0])}
        bad_norms = np.flatnonzero(~np.isfinite(rec.norms))
        ev["layers_non_finite"] = float(bad_norms.size)
        loss_ok = bool(np.isfinite(rec.loss).all())
        if not loss_ok:
            source, bad_inputs = self._replay(rec)
            if bad_inputs is not None and bad_inputs.size:
                ev["rows_flagged"] = float(bad_inputs.size)
                return self._verdict(
                    rec, "data", "non_finite", None, _ids(rec.row_ids, bad_inputs), ev
                )
            if source is not None:
                return self._verdict(rec, "gradients", "non_finite", source or None, [], ev)
            rows = self._non_finite_rows(rec)
            if rows is not None:
                ev["rows_flagged"] = float(len(rows))
                return self._verdict(rec, "data", "non_finite", None, rows, ev)
            return self._verdict(rec, "unknown", "non_finite", None, [], ev)
        # The loss is finite: the backward pass went non-finite. Gradients flow from the
        # output back, so the module where it started is the last, in registration
        # (forward) order, of those holding non-finite gradients.
        layer = names[int(bad_norms[-1])] if bad_norms.size else None
        return self._verdict(rec, "gradients", "non_finite", layer, [], ev)

    def _non_finite_rows(self, rec: _Step) -> list[Any] | None:
        """Rows whose own loss is non-finite, when they are a minority of the batch."""
        if rec.per_row is None:
            return None
        bad = np.flatnonzero(~np.isfinite(np.asarray(rec.per_row.tolist(), dtype=np.float64)))
        if bad.size == 0 or bad.size > max(1, rec.per_row.numel() // 4):
            return None
        return _ids(rec.row_ids, bad)

    def _capture(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Keep references to the step's training forwards' inputs (no copy, no compute).

        Every forward since the last check is kept: with gradient accumulation a step's
        rows come from several micro-batches, in the order their losses were joined.
        """
        if not torch.is_grad_enabled():
            return
        if self._inputs_step != self._step:
            self._inputs, self._inputs_step = [], self._step
        self._inputs.append((args, kwargs))

    def _step_inputs(self, rec: _Step) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The forwards whose batches make up the step's rows, in order (none when gone).

        All of the step's forwards when their batches add up to its rows (micro-batches),
        else the last one when it alone does; a scalar loss with no row ids: the last.
        """
        if self._inputs_step != rec.step or not self._inputs:
            return []
        forwards = self._inputs
        n = rec.per_row.shape[0] if rec.per_row is not None else _count(rec.row_ids)
        if n is None:
            return forwards[-1:]
        sizes = [_batch_size(f) for f in forwards]
        if sum(sizes) == n:
            return forwards
        return forwards[-1:] if sizes[-1] == n else []

    def _replay(self, rec: _Step) -> tuple[str | None, np.ndarray | None]:
        """Re-run the step's forward passes with hooks: the first module to output non-finite.

        Returns the module's name ('' for the model itself; None when every output is
        finite or the inputs are gone) and the input rows holding non-finite values
        (positions in the step, micro-batches one after the other).
        """
        forwards = self._step_inputs(rec)
        bad, offset = [], 0
        for args, kwargs in forwards:
            rows = _non_finite_input_rows(args, kwargs)
            if rows is not None and rows.size:
                bad.append(rows + offset)
            offset += _batch_size((args, kwargs))
        if bad:
            return None, np.concatenate(bad)
        for args, kwargs in forwards:
            name = self._first_non_finite(rec, args, kwargs)
            if name is not None:
                return name, None
        return None, None

    def _first_non_finite(
        self, rec: _Step, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str | None:
        """One forward pass replayed with hooks: the first module whose output is non-finite."""
        first: list[str] = []

        def hook(name: str):
            def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
                # Hooks fire as modules finish: a child before its parent.
                if not first and not _finite_all(_flatten(output)) and _finite_all(inputs):
                    first.append(name)

            return record

        handles = [m.register_forward_hook(hook(n)) for n, m in self.model.named_modules()]
        # The replay must leave no trace: buffers (BatchNorm statistics) and RNG restored.
        buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
        cuda = sorted({p.device.index or 0 for p in self._layers.params if p.is_cuda})
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=cuda):
                self.model(*args, **kwargs)
        except Exception:  # noqa: BLE001 - a failed replay only loses the module's name
            log.debug("batchguard: replay of step %d failed", rec.step, exc_info=True)
        finally:
            for h in handles:
                h.remove()
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
        return first[0] if first else None

    # -- activations --------------------------------------------------------------------

    def _check_activations(self, step: int) -> list[Verdict]:
        if self._acts is None:
            return []
        self._act_steps += 1
        if self._act_steps < self.activation_window:
            return []
        self._act_steps = 0
        found = []
        for name, kind, share in self._activation_findings(rearm=True):
            self._act_armed[name] = False
            ev = {f"{kind}_share": share, "window": float(self.activation_window)}
            found.append(self._verdict_at(step, "activations", kind, name, [], ev))
        self._acts.reset()
        return found

    def _activation_findings(self, rearm: bool = False) -> list[tuple[str, str, float]]:
        """Hooked layers at or over their dead (saturated) share in the window so far.

        A reported layer is disarmed by the caller; ``rearm``: a layer back under half
        its threshold may be reported again later.
        """
        if self._acts is None:
            return []
        found = []
        shares = self._acts.shares()
        for name, kind, share in zip(self._acts.names, self._acts.kinds, shares, strict=True):
            limit = self.dead_share if kind == "dead" else self.saturated_share
            if not math.isfinite(share):
                continue
            if rearm and share < limit / 2:
                self._act_armed[name] = True
            if share >= limit and self._act_armed[name]:
                found.append((name, kind, share))
        return found

    # -- verdicts -----------------------------------------------------------------------

    def _verdict(
        self,
        rec: _Step,
        cause: str,
        kind: str,
        layer: str | None,
        rows: list[Any],
        ev: dict[str, float],
    ) -> Verdict:
        return self._verdict_at(rec.step, cause, kind, layer, rows, ev)

    def _verdict_at(
        self,
        step: int,
        cause: str,
        kind: str,
        layer: str | None,
        rows: list[Any],
        ev: dict[str, float],
    ) -> Verdict:
        advice = ADVICE.get((cause, kind)) or ADVICE.get((cause, None), "")
        skip = cause in self.skip_on or kind in self.skip_on
        return Verdict(step, cause, kind, layer, rows, ev, advice, skip)

    def _act_on(self, verdict: Verdict, rec: _Step | None) -> None:
        self.verdicts.append(verdict)
        log.warning("batchguard: %s", verdict)
        if verdict.cause == "data" and self._quarantine is not None and rec is not None:
            self._send_to_quarantine(verdict, rec)

    def _send_to_quarantine(self, verdict: Verdict, rec: _Step) -> None:
        """The data verdict's rows, with reason ``loss_spike``."""
        positions = _positions(rec, verdict.rows)
        if positions is None or positions.size == 0:
            return
        target = self._quarantine
        loss = float(rec.loss[0])
        if hasattr(target, "quarantine_loss_spike"):  # a Guard: its last batch holds the rows
            if "late" in verdict.evidence:  # it has served other batches since: count only
                positions = positions[:0]
            target.quarantine_loss_spike(positions, loss, skipped=verdict.skip)
            return
        inputs = self._input_rows(rec)
        if inputs is None:
            return
        from ._batch_records import batch_records

        flat = inputs.detach().reshape(inputs.shape[0], -1)
        target.add(batch_records(rec.step, flat, None, rec.row_ids, positions, [], loss))

    def _input_rows(self, rec: _Step) -> torch.Tensor | None:
        """The step's input rows (its micro-batches' joined), one per per-row loss."""
        if rec.per_row is None:
            return None
        batches = [_batch_tensor(f) for f in self._step_inputs(rec)]
        if not batches or any(b is None for b in batches):
            return None
        if len(batches) == 1:
            return batches[0]
        flat = [b.detach().reshape(b.shape[0], -1) for b in batches if b is not None]
        if len({f.shape[1] for f in flat}) != 1:
            return None
        return torch.cat(flat)

    def close(self) -> None:
        """Remove the monitor's hooks and write out quarantined rows still buffered."""
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._acts is not None:
            self._acts.remove()
        flush = getattr(self._quarantine, "flush", None) or getattr(self._quarantine, "close", None)
        if flush is not None:
            flush()

    # -- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything the decisions depend on, as plain Python values (picklable, JSON-able)."""
        pending = []
        if self._pending:
            assert self._ring is not None
            values = self._ring[: len(self._pending)].tolist()
            for rec, row in zip(self._pending, values, strict=True):
                pending.append(
                    {
                        "step": rec.step,
                        "stats": row,
                        "lr": rec.lr,
                        "per_row": None if rec.per_row is None else rec.per_row.tolist(),
                        "row_ids": _plain(rec.row_ids),
                        "weights": None if rec.weights is None else rec.weights.tolist(),
                    }
                )
        return {
            "layers": list(self._layers.names),
            "step": self._step,
            "loss": [d.state_dict() for d in self._detectors],
            "grads": self._grads.tolist(),
            "grads_seen": self._grads_seen,
            "lrs": list(self._lrs),
            "weights": self._weights.tolist(),
            "weights_step": self._weights_step,
            "weights_due": self._weights_due,
            "last": None if self._last is None else _step_state(self._last),
            "high": None if self._high is None else self._high.tolist(),
            "ring_dtype": None if self._ring is None else str(self._ring.dtype).split(".")[-1],
            "vanish": [self._vanish_run, self._vanish_armed],
            "activations": {
                "steps": self._act_steps,
                "armed": dict(self._act_armed),
                "seen": [None if s is None else s.tolist() for s in self._acts.seen]
                if self._acts
                else [],
            },
            "pending": pending,
            "verdicts": [asdict(v) for v in self.verdicts],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: the monitor then makes the same decisions.

        Raises
        ------
        UsageError
            ``state`` is not a monitor's :meth:`state_dict`, or is one of a model
            with other layers.
        """
        from .errors import UsageError

        if not isinstance(state, dict) or "layers" not in state or "step" not in state:
            kind = sorted(state)[:5] if isinstance(state, dict) else type(state).__name__
            raise UsageError(
                f"not a StabilityMonitor.state_dict() (it holds {kind}); pass what "
                "monitor.state_dict() returned"
            )
        if list(state["layers"]) != self._layers.names:
            raise UsageError("this monitor state belongs to a model with other layers")
        self._step = int(state["step"])
        for d, saved in zip(self._detectors, state["loss"], strict=True):
            d.load_state_dict(saved)
        self._grads = np.array(state["grads"], dtype=np.float64).reshape(self._grads.shape)
        self._grads_seen = int(state["grads_seen"])
        self._lrs = deque(state["lrs"], maxlen=self._lrs.maxlen)
        weights = np.array(state["weights"], dtype=np.float64)
        self._weights = weights
        with np.errstate(divide="ignore", invalid="ignore"):
            self._inv_weights = np.where(weights > 0, 1.0 / weights, 0.0)
        self._weights_step = int(state["weights_step"])
        self._weights_due = int(state.get("weights_due", self._weights_step))
        self._last = None if state["last"] is None else _step_from(state["last"])
        self._high = None if state.get("high") is None else np.array(state["high"], np.float64)
        self._vanish_run, self._vanish_armed = state["vanish"]
        acts = state["activations"]
        self._act_steps = int(acts["steps"])
        self._act_armed.update(acts["armed"])
        if self._acts is not None:
            params = self._layers.params
            device = params[0].device if params else None  # where the hooks will OR into them
            self._acts.seen = [
                None if s is None else torch.tensor(s, dtype=torch.bool, device=device)
                for s in acts["seen"]
            ]
        self._pending, self._ring, self._events, self._flags_seen = [], None, [], 0
        if state["pending"]:
            self._restore_pending(state["pending"], state.get("ring_dtype") or "float32")
        self.verdicts = [Verdict(**v) for v in state["verdicts"]]

    def _restore_pending(self, pending: list[dict[str, Any]], dtype_name: str) -> None:
        """Steps checked but not read yet, back into the device ring, flags and all."""
        params = self._layers.params
        device = params[0].device if params else torch.device("cpu")
        dtype = getattr(torch, dtype_name)
        width = _NL + len(params)
        if any(len(p["stats"]) != width for p in pending):
            from .errors import UsageError

            raise UsageError(
                "this monitor state holds unread steps in an older layout: save it again "
                "right after a read (a step divisible by sync_every)"
            )
        self._start_ring(device, dtype)
        assert self._ring is not None
        for p in pending:
            slot = len(self._pending)
            row = self._ring[slot]
            row.copy_(torch.tensor(p["stats"], dtype=dtype))
            per_row = None if p["per_row"] is None else torch.tensor(p["per_row"], dtype=dtype)
            weights = None if p.get("weights") is None else torch.tensor(p["weights"])
            self._pending.append(
                _Step(p["step"], np.empty(0), np.empty(0), p["lr"], per_row, p["row_ids"], weights)
            )
            if self.sync_every > 1:
                self._raise_flag(slot, row)


def _pick(found: list[Verdict], step: int) -> Verdict | None:
    """This step's verdict first (its loss or gradients before its activations)."""
    if not found:
        return None
    own = [v for v in found if v.step == step]
    return own[0] if own else found[-1]


def _ids(row_ids: Any, positions: np.ndarray) -> list[Any]:
    if row_ids is None:
        return positions.tolist()
    if isinstance(row_ids, torch.Tensor):
        return row_ids.reshape(-1)[torch.as_tensor(positions, device=row_ids.device)].tolist()
    return [_plain_one(row_ids[int(k)]) for k in positions]


def _all_rows(rec: _Step) -> list[Any]:
    if rec.row_ids is None:
        return []
    if isinstance(rec.row_ids, torch.Tensor):
        return rec.row_ids.reshape(-1).tolist()
    return [_plain_one(r) for r in rec.row_ids]


def _positions(rec: _Step, rows: list[Any]) -> np.ndarray | None:
    """Where a verdict's rows sit in their batch."""
    ids = _plain(rec.row_ids)
    if ids is None:
        return np.asarray(rows, dtype=np.int64)
    where = {r: k for k, r in enumerate(ids)}
    return np.asarray([where[r] for r in rows if r in where], dtype=np.int64)


def _plain(row_ids: Any) -> list[Any] | None:
    if row_ids is None:
        return None
    if isinstance(row_ids, torch.Tensor):
        return row_ids.reshape(-1).tolist()
    if isinstance(row_ids, np.ndarray):
        return row_ids.reshape(-1).tolist()
    return [_plain_one(r) for r in row_ids]


def _plain_one(value: Any) -> Any:
    if isinstance(value, (torch.Tensor, np.generic)):
        return value.item()
    return value


def _batch_tensor(forward: tuple[tuple[Any, ...], dict[str, Any]]) -> torch.Tensor | None:
    """The first batched float input of a forward pass (rows along its first dimension)."""
    for t in _flatten(list(forward)):
        if _float_tensor(t) and t.ndim >= 1:
            return t
    return None


def _batch_size(forward: tuple[tuple[Any, ...], dict[str, Any]]) -> int:
    t = _batch_tensor(forward)
    return 0 if t is None else int(t.shape[0])


def _count(row_ids: Any) -> int | None:
    if row_ids is None:
        return None
    if isinstance(row_ids, (torch.Tensor, np.ndarray)):
        return int(row_ids.reshape(-1).shape[0])
    return len(row_ids) if hasattr(row_ids, "__len__") else None


def _non_finite_input_rows(args: tuple[Any, ...], kwargs: dict[str, Any]) -> np.ndarray | None:
    """Rows of the first batched float input that hold a non-finite value."""
    for t in _flatten([args, kwargs]):
        if _float_tensor(t) and t.ndim >= 1 and t.shape[0] > 0:
            bad = ~torch.isfinite(t.detach().reshape(t.shape[0], -1)).all(1)
            return np.flatnonzero(bad.cpu().numpy())
    return None


def _step_state(rec: _Step) -> dict[str, Any]:
    return {"step": rec.step, "loss": rec.loss.tolist(), "norms": rec.norms.tolist(), "lr": rec.lr}


def _step_from(state: dict[str, Any]) -> _Step:
    return _Step(
        step=state["step"],
        loss=np.array(state["loss"], dtype=np.float64),
        norms=np.array(state["norms"], dtype=np.float64),
        lr=state["lr"],
        per_row=None,
        row_ids=None,
    )
