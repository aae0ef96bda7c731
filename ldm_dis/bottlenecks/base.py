"""What every bottleneck is: a module between the feature extractor and the U-Net's cross-attention.

The feature extractor gives N scalars per image, ``(B, N)``, and from them N tokens, ``(B, N, D)``.
A bottleneck acts on one of the two (``acts_on``) and returns the transformed tensor (same shape) with
its extra loss terms. All learned or fitted state lives in parameters and buffers of fixed shape so that
it is saved in the checkpoint (safetensors) and restored on resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import torch
from torch import nn


@dataclass
class BottleneckOutput:
    value: torch.Tensor  # the transformed scalars (B, N) or tokens (B, N, D)
    # terms added to the model's objective, already weighted (e.g. {"kl": beta * kl, "tc": gamma * tc})
    losses: Dict[str, torch.Tensor] = field(default_factory=dict)
    # losses of auxiliary discriminators, computed on detached inputs; optimized with their own optimizer
    disc_losses: Dict[str, torch.Tensor] = field(default_factory=dict)


class Bottleneck(nn.Module):
    acts_on: str = "tokens"  # "tokens" (B, N, D) or "scalars" (B, N)

    @classmethod
    def from_config(cls, cfg, num_units: int, unit_dim: int) -> "Bottleneck":  # pragma: no cover - interface
        """Built from its section of ``model.bottleneck`` (None for ``none``) and the N units of D values."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, step: int = 0) -> BottleneckOutput:  # pragma: no cover - interface
        """``step``: optimizer steps done before this one (temperature schedules); 0 outside training."""
        raise NotImplementedError

    def discriminator_parameters(self) -> List[nn.Parameter]:
        """Parameters trained by ``disc_losses`` (none for most bottlenecks)."""
        return []


class Identity(Bottleneck):
    """``model.bottleneck.kind=none``: the plain EncDiff-style model."""

    @classmethod
    def from_config(cls, cfg, num_units: int, unit_dim: int) -> "Identity":
        return cls()

    def forward(self, x: torch.Tensor, step: int = 0) -> BottleneckOutput:
        return BottleneckOutput(x)
