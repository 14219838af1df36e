"""What both callbacks share: the step's losses, row ids, skipping a step, verdict records."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["StepLosses", "drop_grads", "import_extra", "make_monitor", "record", "row_ids_of"]

#: row ids kept in a logged verdict record (a scalar loss blames the whole batch)
RECORD_ROWS = 20


def import_extra(module: str, extra: str) -> Any:
    """Import an optional framework, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"this callback needs {module.split('.')[0]}: pip install 'batchguard[{extra}]'"
        ) from exc


def make_monitor(model: torch.nn.Module, optimizer: Any, options: Mapping[str, Any]) -> Any:
    """A :class:`~pipeline.StabilityMonitor` over ``model`` (imported here: it loads torch)."""
    from ..monitor import StabilityMonitor

    return StabilityMonitor(model, optimizer, **options)


def row_ids_of(batch: Any, key: str = "row_id") -> Any:
    """The dataset row ids of a :class:`~pipeline.Batch` or a dict batch, else None."""
    if isinstance(batch, Mapping):
        return batch.get(key)
    return getattr(batch, key, None)


def drop_grads(optimizer: Any) -> None:
    """Skip the coming ``optimizer.step()``: parameters without a gradient are left alone.

    torch's optimizers pass over a parameter whose ``grad`` is None, so its value and
    its optimizer state (momentum, Adam's moments and step count) stay as they are;
    zeroed gradients would still move momentum and decay the weights.
    """
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            parameter.grad = None


def record(verdict: Any) -> dict[str, Any]:
    """A verdict as JSON-able fields for a trainer's log (at most ``RECORD_ROWS`` row ids)."""
    rows = [r.item() if isinstance(r, torch.Tensor) else r for r in list(verdict.rows)]
    return {
        "stability/step": verdict.step,
        "stability/cause": verdict.cause,
        "stability/kind": verdict.kind,
        "stability/layer": verdict.layer,
        "stability/rows": rows[:RECORD_ROWS],
        "stability/n_rows": len(rows),
        "stability/skip": bool(verdict.skip),
        "stability/advice": verdict.advice,
    }


class StepLosses:
    """The losses and row ids of the micro-batches of one optimizer step.

    With gradient accumulation a step back-propagates several micro-batches before
    the one optimizer step that the monitor checks: their per-row losses are joined
    (with their row ids), or their scalar losses averaged.
    """

    def __init__(self) -> None:
        self._losses: list[torch.Tensor] = []
        self._rows: list[Any] = []

    def add(self, loss: torch.Tensor, rows: Any) -> None:
        self._losses.append(loss.detach())
        self._rows.append(rows)

    def take(self) -> tuple[torch.Tensor | None, Any]:
        """The step's loss (None when nothing was back-propagated) and row ids; then empty."""
        losses, rows = self._losses, self._rows
        self._losses, self._rows = [], []
        if len(losses) <= 1:
            return (losses[0], rows[0]) if losses else (None, None)
        if all(loss.ndim == 1 for loss in losses):
            return torch.cat(losses), _joined(rows)
        mean = torch.stack([loss.float().mean() for loss in losses]).mean()
        return mean, _joined(rows)


def _joined(rows: list[Any]) -> Any:
    if any(r is None for r in rows):
        return None
    if all(isinstance(r, torch.Tensor) for r in rows):
        return torch.cat([r.reshape(-1) for r in rows])
    return [item for r in rows for item in (r.tolist() if hasattr(r, "tolist") else list(r))]
