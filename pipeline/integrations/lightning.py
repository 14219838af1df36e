"""``StabilityCallback``: a :class:`~pipeline.StabilityMonitor` in ``lightning.pytorch.Trainer``.

::

    from pipeline.integrations.lightning import StabilityCallback

    trainer = lightning.pytorch.Trainer(callbacks=[StabilityCallback()])
    trainer.fit(module, loader)            # a make_loader loader names the rows
    callback.verdicts                      # every verdict, in step order

Where each piece comes from, in the order Lightning calls its hooks in one step
(``lightning/pytorch/plugins/precision/precision.py`` and ``amp.py``):

1. ``on_train_batch_start(batch)``: the batch's row ids (``batch.row_id`` of a
   :class:`~pipeline.Batch`, or ``batch["row_id"]``).
2. ``training_step``, then ``on_before_backward(loss)``: the loss that is about to be
   back-propagated (already divided by ``accumulate_grad_batches``). For row-level
   verdicts, set ``self.per_row_loss = loss_fn(..., reduction="none")`` in
   ``training_step``: the callback takes that instead (and clears it).
3. backward, ``on_after_backward``; under AMP the scaler unscales the gradients here.
4. ``on_before_optimizer_step(optimizer)``: the callback calls
   :meth:`StabilityMonitor.check <pipeline.StabilityMonitor.check>` on unscaled
   gradients that are not clipped yet (``gradient_clip_val`` acts after this hook).
   ``on_train_batch_end`` comes only after the optimizer step, too late to skip it.

A verdict with ``skip=True`` skips the step the way a callback can: every gradient
of that optimizer is set to None, so ``optimizer.step()`` leaves the weights and the
optimizer's state untouched (a ``training_step`` that returns None is the module's
own way; a callback cannot make it return None). The step still counts in
``trainer.global_step`` and a scheduler still steps. Each verdict is logged with
``pl_module.log`` as running counts ``stability/verdicts`` and ``stability/skipped``
(numbers only; the verdicts themselves are on ``callback.verdicts`` and in the
``batchguard`` logger), and the monitor's state travels in the checkpoint through
the callback's ``state_dict``.

Lightning is imported when ``StabilityCallback`` is first looked up, not with this
module. The class derives from ``lightning.pytorch.Callback`` (or, without the
``lightning`` package, from ``pytorch_lightning.Callback``).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from typing import Any

from ._common import StepLosses, drop_grads, import_extra, make_monitor, row_ids_of

# The one name is built on first use from lightning's own base class, so it exists only where
# lightning is installed (found without importing it).
_FOUND = any(importlib.util.find_spec(name) for name in ("lightning", "pytorch_lightning"))
__all__ = ["StabilityCallback"] if _FOUND else []


class _StabilityHooks:
    """Check every training step with a :class:`~pipeline.StabilityMonitor`.

    The hooks of ``StabilityCallback``, which mixes them into Lightning's ``Callback``.

    Parameters
    ----------
    monitor : StabilityMonitor, optional
        A monitor built by the caller; by default one is built over the
        ``LightningModule`` and its only optimizer at ``on_fit_start`` (with several
        optimizers, none is given to it and only the first one's steps are checked).
    per_row_loss : str or None, default "per_row_loss"
        The ``LightningModule`` attribute that ``training_step`` may set to the
        per-row loss of the batch; None to use the scalar loss only.
    log_prefix : str, default "stability"
        Prefix of the names logged with ``pl_module.log``.
    **monitor_options
        Passed to :class:`~pipeline.StabilityMonitor` (``skip_on``, ``quarantine``, ...).

    Attributes
    ----------
    monitor : StabilityMonitor or None
        None until ``on_fit_start``.
    skipped : int
        Steps skipped so far.
    """

    def __init__(
        self,
        monitor: Any = None,
        *,
        per_row_loss: str | None = "per_row_loss",
        log_prefix: str = "stability",
        **monitor_options: Any,
    ):
        super().__init__()
        self.monitor = monitor
        self.per_row_loss = per_row_loss
        self.log_prefix = log_prefix
        self.monitor_options = monitor_options
        self.skipped = 0
        self._losses = StepLosses()
        self._rows: Any = None
        self._saved: dict[str, Any] | None = None  # a checkpoint's state, before on_fit_start

    @property
    def verdicts(self) -> list[Any]:
        """The monitor's verdicts so far (empty before ``on_fit_start``)."""
        return [] if self.monitor is None else self.monitor.verdicts

    # -- hooks, in the order Lightning calls them --------------------------------------------------
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self.monitor is None:
            optimizers = trainer.optimizers
            optimizer = optimizers[0] if len(optimizers) == 1 else None
            self.monitor = make_monitor(pl_module, optimizer, self.monitor_options)
        if self._saved is not None:  # restored from a checkpoint before the monitor existed
            self.monitor.load_state_dict(self._saved)
            self._saved = None

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        self._rows = row_ids_of(batch)

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
        name = self.per_row_loss
        per_row = getattr(pl_module, name, None) if name else None
        if name and per_row is not None:
            setattr(pl_module, name, None)  # consumed: never reused on a later step
        self._losses.add(loss if per_row is None else per_row, self._rows)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer's own
        if self.monitor is None or optimizer is not trainer.optimizers[0]:
            return
        loss, rows = self._losses.take()
        if loss is None:  # nothing was back-propagated (training_step returned None)
            return
        verdict = self.monitor.check(loss, row_ids=rows)
        if verdict is None:
            return
        if verdict.skip:
            drop_grads(optimizer)
            self.skipped += 1
        prefix = self.log_prefix
        counts = {f"{prefix}/verdicts": float(len(self.monitor.verdicts))}
        counts[f"{prefix}/skipped"] = float(self.skipped)
        pl_module.log_dict(counts, on_step=True, on_epoch=False, batch_size=1)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.monitor is not None and hasattr(self.monitor, "close"):
            self.monitor.close()  # its hooks on the module; its verdicts and state stay

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        monitor = self._saved if self.monitor is None else self.monitor.state_dict()
        return {"monitor": monitor, "skipped": self.skipped}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
        saved = state_dict.get("monitor")
        if saved is None:
            return
        if self.monitor is None:
            self._saved = dict(saved)
        else:
            self.monitor.load_state_dict(saved)


@functools.cache
def _callback_class() -> type:
    try:
        callback = import_extra("lightning.pytorch", "lightning").Callback
    except ImportError:
        try:
            callback = import_extra("pytorch_lightning", "lightning").Callback
        except ImportError:
            raise ImportError(
                "StabilityCallback needs lightning: pip install 'batchguard[lightning]'"
            ) from None

    class StabilityCallback(_StabilityHooks, callback):  # type: ignore[misc, valid-type]
        __doc__ = _StabilityHooks.__doc__
        __module__ = __name__
        __qualname__ = "StabilityCallback"  # Lightning's state_key, and pickling by name

    return StabilityCallback


def __getattr__(name: str) -> Any:
    if name == "StabilityCallback":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
