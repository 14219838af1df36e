"""Quarantine records of the rows of a live batch: what the guard and the monitor write.

Shared by :mod:`pipeline.guarding` (bad rows of a served batch) and
:mod:`pipeline.monitor` (the rows of a ``loss_spike``), which write the same records.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def row_ids_at(ids: Any, positions: np.ndarray, n: int) -> list[int | None]:
    """The dataset row ids at ``positions`` of a batch of ``n`` rows (None where it has none)."""
    if isinstance(ids, torch.Tensor) and ids.shape[:1] == (n,):
        return ids.reshape(n)[torch.as_tensor(positions, device=ids.device)].cpu().tolist()
    return [None] * len(positions)


def batch_records(
    index: int,
    flat: torch.Tensor,
    y: Any,
    ids: Any,
    positions: np.ndarray,
    row_problems: list[tuple[str, torch.Tensor, str]],
    loss: float | None = None,
) -> list[dict[str, Any]]:
    """One quarantine record per bad row, with every reason that applies to it."""
    from .quarantine import reason_records  # loaded with the quarantine (see BatchChecker)

    n = flat.shape[0]
    pos_t = torch.as_tensor(positions, device=flat.device)
    feats = flat[pos_t].float().cpu().numpy()
    labels: list[Any] = [None] * len(positions)
    if isinstance(y, torch.Tensor) and y.shape[:1] == (n,):
        labels = y.reshape(n)[pos_t].double().cpu().tolist()
    checks = [(c, mask[pos_t].cpu().numpy(), t) for c, mask, t in row_problems]
    return reason_records(
        index, positions.tolist(), feats, labels, row_ids_at(ids, positions, n), checks, loss
    )
