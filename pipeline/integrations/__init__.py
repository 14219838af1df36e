"""Stability callbacks for training frameworks: :class:`~pipeline.StabilityMonitor` in their loops.

- :mod:`pipeline.integrations.lightning`: ``StabilityCallback`` for
  ``lightning.pytorch.Trainer`` (``pip install 'batchguard[lightning]'``).
- :mod:`pipeline.integrations.transformers`: ``StabilityCallback`` for
  ``transformers.Trainer`` (``pip install 'batchguard[transformers]'``).

Neither framework is imported by ``import pipeline``, nor by importing these modules:
only by the first use of ``StabilityCallback``.
"""

from __future__ import annotations

__all__: list[str] = []
