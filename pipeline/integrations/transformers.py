"""``StabilityCallback``: a :class:`~pipeline.StabilityMonitor` inside ``transformers.Trainer``.

::

    from pipeline.integrations.transformers import StabilityCallback

    callback = StabilityCallback()
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data,
                                   callbacks=[callback])
    trainer.train()
    callback.verdicts                      # every verdict, in step order

A ``TrainerCallback`` is handed neither the loss nor the batch, so the callback reads
them where the trainer's ``compute_loss`` reads the loss: a forward hook on the model
(registered at ``on_train_begin``, removed at ``on_train_end``) takes, on training
forward passes, the output's ``loss`` (an output mapping or attribute, as a
``ModelOutput`` has), an optional per-row loss under ``per_row_loss`` for row-level
verdicts, and the batch's ``row_id`` argument if the model takes one. A loss that
``compute_loss_func`` or a ``Trainer`` subclass computes outside the model is not
seen; then no step is checked and a warning says so once.

The check runs on the gradients as the backward pass left them, before the trainer
clips them (``max_grad_norm``, 1.0 by default; with 0 it still runs
``clip_grad_norm_`` with an infinite bound to measure the norm): clipping scales every
layer alike, but an infinite norm zeroes every finite gradient and a NaN turns all of
them NaN, so after it the layer at fault cannot be told. No callback event falls
between the backward pass and the clipping (``on_pre_optimizer_step`` comes after it,
in ``transformers/trainer.py``), so the forward hook, on the forward pass of a step's
last micro-batch (accelerate's ``GradientState().sync_gradients``), hooks the loss's
gradient, and that hook queues the check to run when the autograd engine finishes the
backward pass (``Variable._execution_engine.queue_callback``, as PyTorch's FSDP does
for its post-backward work). ``on_pre_optimizer_step`` then logs the verdict. When that
hook never fired (the loss that was back-propagated is not the model's output), the
check runs in ``on_pre_optimizer_step`` on the clipped gradients, as a fallback.

A verdict with ``skip=True`` skips the step: every gradient is set to None, so
``optimizer.step()`` leaves the weights and the optimizer's state untouched (the
learning-rate scheduler still steps and ``state.global_step`` still counts it). Each
verdict is appended to ``state.log_history`` (keys ``stability/cause``, ``/kind``,
``/layer``, ``/rows``, ...) and asks for the step's usual log line
(``control.should_log``). The callback is an ``ExportableState``: the monitor's state
is saved in ``trainer_state.json`` with each checkpoint and restored on resume when
``TrainingArguments(restore_callback_states_from_checkpoint=True)``; the trainer then
builds a new callback from it, so read the verdicts from
``trainer.callback_handler.callbacks`` rather than from the original object.

transformers is imported when ``StabilityCallback`` is first looked up, not with this
module.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from collections.abc import Mapping
from typing import Any

import torch

from ._common import StepLosses, drop_grads, import_extra, make_monitor, record

# The one name is built on first use from transformers's own base class, so it exists only where
# transformers is installed (found without importing it).
__all__ = ["StabilityCallback"] if importlib.util.find_spec("transformers") is not None else []

log = logging.getLogger("batchguard")


class _StabilityHooks:
    """Check each optimizer step of ``transformers.Trainer`` with a ``StabilityMonitor``.

    Parameters
    ----------
    monitor : StabilityMonitor, optional
        A monitor built by the caller; by default one is built at ``on_train_begin``
        over the trainer's model and optimizer.
    loss_key : str, default "loss"
        The model output's scalar loss.
    per_row_key : str, default "per_row_loss"
        The model output's per-row loss, when it gives one (rows first).
    row_id_key : str, default "row_id"
        The forward argument holding the batch's dataset row ids, when the model takes one.
    **monitor_options
        Passed to :class:`~pipeline.StabilityMonitor` (``skip_on``, ``sync_every``, ...);
        those that are plain JSON values are saved with the checkpoint's callback state.

    Attributes
    ----------
    monitor : StabilityMonitor or None
        None until ``on_train_begin``.
    skipped : int
        Steps skipped so far.
    """

    def __init__(
        self,
        monitor: Any = None,
        *,
        loss_key: str = "loss",
        per_row_key: str = "per_row_loss",
        row_id_key: str = "row_id",
        **monitor_options: Any,
    ):
        self.monitor = monitor
        self.loss_key = loss_key
        self.per_row_key = per_row_key
        self.row_id_key = row_id_key
        self.monitor_options = monitor_options
        self.skipped = 0
        self.monitor_state: dict[str, Any] | None = None  # set by the trainer on resume
        self._losses = StepLosses()
        self._handle: Any = None
        self._warned = False
        self._checked = False  # this step was checked at the end of its backward pass
        self._verdict: Any = None  # what that check found, logged at on_pre_optimizer_step

    @property
    def verdicts(self) -> list[Any]:
        """The monitor's verdicts so far (empty before ``on_train_begin``)."""
        return [] if self.monitor is None else self.monitor.verdicts

    # -- hooks -------------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = kwargs["model"]
        if self.monitor is None:
            self.monitor = make_monitor(model, kwargs.get("optimizer"), self.monitor_options)
        if self.monitor_state is not None:
            self.monitor.load_state_dict(self.monitor_state)
            self.monitor_state = None
        if self._handle is None:
            self._handle = model.register_forward_hook(self._capture, with_kwargs=True)

    def _capture(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        """Forward hook: keep a training forward pass's loss and row ids for the step's check."""
        if not (module.training and torch.is_grad_enabled()):
            return  # evaluation, or a replay of the batch under no_grad
        scalar = _field(output, self.loss_key)
        loss = _field(output, self.per_row_key)
        if loss is None:
            loss = scalar
        if not isinstance(loss, torch.Tensor):
            return
        self._losses.add(loss, kwargs.get(self.row_id_key))
        if _last_micro_batch():
            watched = scalar if isinstance(scalar, torch.Tensor) else loss
            if watched.requires_grad:
                watched.register_hook(self._backward_started)

    def _backward_started(self, grad: torch.Tensor) -> None:
        """The loss's gradient hook: check once the whole backward pass has finished."""
        _queue_after_backward(self._check_before_clipping)

    def _check_before_clipping(self) -> None:
        """At the end of the last micro-batch's backward pass, before the trainer clips."""
        loss, rows = self._losses.take()
        if self.monitor is None or loss is None:
            return
        self._checked = True
        self._verdict = self.monitor.check(loss, row_ids=rows)
        if self._verdict is not None and self._verdict.skip:
            _drop_grads_of(self.monitor.model)  # clipping and the step find no gradient

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.monitor is None:
            return control
        if self._checked:
            verdict, self._verdict, self._checked = self._verdict, None, False
        else:  # the hook never fired: check the clipped gradients
            loss, rows = self._losses.take()
            if loss is None:
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "batchguard: StabilityCallback saw no %r in the model's output, so it "
                        "checks no step; return the loss from forward() (as models given "
                        "labels do)",
                        self.loss_key,
                    )
                return control
            verdict = self.monitor.check(loss, row_ids=rows)
        if verdict is None:
            return control
        if verdict.skip:
            drop_grads(kwargs["optimizer"])
            self.skipped += 1
        # the step being taken is logged as global_step + 1 (counted after the step)
        state.log_history.append({**record(verdict), "step": state.global_step + 1})
        control.should_log = True
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self.monitor is not None and hasattr(self.monitor, "close"):
            self.monitor.close()  # its hooks on the model; its verdicts and state stay

    # -- checkpoints (transformers' ExportableState) ---------------------------------------------
    def state(self) -> dict[str, Any]:
        """The arguments to rebuild this callback and the monitor's state, as JSON values."""
        arguments = {
            "loss_key": self.loss_key,
            "per_row_key": self.per_row_key,
            "row_id_key": self.row_id_key,
            **{k: v for k, v in self.monitor_options.items() if _is_json(v)},
        }
        monitor = self.monitor_state if self.monitor is None else self.monitor.state_dict()
        return {
            "args": arguments,
            "attributes": {"monitor_state": monitor, "skipped": self.skipped},
        }


def _last_micro_batch() -> bool:
    """Whether the forward pass running now is the last of its optimizer step.

    The trainer tells accelerate before each micro-batch (``_set_sync_gradients``); its
    ``GradientState`` is shared by every instance.
    """
    try:
        from accelerate.state import GradientState
    except ImportError:  # pragma: no cover - transformers' Trainer needs accelerate
        return True
    return bool(GradientState().sync_gradients)


def _queue_after_backward(callback: Any) -> None:
    """Run ``callback`` when the autograd engine finishes the running backward pass."""
    torch.autograd.Variable._execution_engine.queue_callback(callback)


def _drop_grads_of(model: torch.nn.Module) -> None:
    """Every parameter's gradient set to None (as ``_common.drop_grads`` does)."""
    for parameter in model.parameters():
        parameter.grad = None


def _field(output: Any, key: str) -> Any:
    if isinstance(output, Mapping):
        return output.get(key)
    return getattr(output, key, None)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


@functools.cache
def _callback_class() -> type:
    callbacks = import_extra("transformers.trainer_callback", "transformers")
    base, exportable = callbacks.TrainerCallback, callbacks.ExportableState

    class StabilityCallback(_StabilityHooks, base, exportable):  # type: ignore[misc, valid-type]
        __doc__ = _StabilityHooks.__doc__
        __module__ = __name__
        __qualname__ = "StabilityCallback"  # the key of its saved state, and pickling by name

    return StabilityCallback


def __getattr__(name: str) -> Any:
    if name == "StabilityCallback":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
