"""The serving modules of :meth:`pipeline.Preprocessor.to_torch` (torch imported here only).

They compute in float64, as :meth:`~pipeline.Preprocessor.transform` and the loaders'
feature caches do, and return float32: the served features equal the trained ones bit
for bit.
"""

import numpy as np
import torch
from torch import nn


class _Scale(nn.Module):
    """``(x - center) / scale``, clipped to ``[-clip, clip]`` when ``clip`` > 0."""

    center: torch.Tensor
    scale: torch.Tensor
    median: torch.Tensor

    def __init__(self, center: np.ndarray, scale: np.ndarray, median: np.ndarray, clip: float):
        super().__init__()
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float64))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float64))
        self.register_buffer("median", torch.as_tensor(median, dtype=torch.float64))
        self.clip = float(clip)

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.center.shape[0]:  # TorchScript: no f-strings
            raise ValueError(
                "batchguard: the input has " + str(x.shape[-1]) + " features; this module "
                "takes " + str(self.center.shape[0]) + ", in the order of Preprocessor.features"
            )
        y = (x.to(torch.float64) - self.center) / self.scale
        if self.clip > 0:
            y = torch.clamp(y, -self.clip, self.clip)
        return y.to(torch.float32)


class RaisingScale(_Scale):
    """Scales raw features; a NaN or inf input raises ``ValueError``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                "batchguard: a served feature is NaN or inf; impute it upstream or build the "
                "module with to_torch(non_finite='impute')"
            )
        return self.scaled(x)


class ImputingScale(_Scale):
    """Scales raw features; NaN and inf become the training median, flagged in a mask."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        missing = ~torch.isfinite(x)
        if x.shape[-1] != self.median.shape[0]:
            return self.scaled(x), missing  # scaled() says what is wrong
        filled = torch.where(missing, self.median.to(x.dtype).expand_as(x), x)
        return self.scaled(filled), missing


def module_class(non_finite: str) -> type[_Scale]:
    """The module for ``non_finite`` ("raise" or "impute")."""
    return RaisingScale if non_finite == "raise" else ImputingScale


def build(
    non_finite: str, center: np.ndarray, scale: np.ndarray, median: np.ndarray, clip: float | None
) -> nn.Module:
    """The serving module (``clip`` None: no clipping)."""
    return module_class(non_finite)(center, scale, median, 0.0 if clip is None else clip)
