"""FSQ: finite scalar quantization (Mentzer et al. 2023) of each latent unit's token (paper Table 11).

What it acts on (our choice; the paper gives no detail): the N tokens (B, N, D). Each token is projected
by a linear map shared across units to L = len(levels) values, each value i is bounded by tanh to
levels[i] points and rounded with a straight-through gradient, and the result is projected back to D.
A token can thus take prod(levels) distinct values (200 for [8, 5, 5]): the implicit codebook. FSQ has
no codebook loss, no commitment loss and no state beyond the two projections.
"""

from __future__ import annotations

import torch
from torch import nn

from ldm_dis.bottlenecks.base import Bottleneck, BottleneckOutput


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer; the gradient passes as if this were the identity."""
    return x + (torch.round(x) - x).detach()


def bound(z: torch.Tensor, levels: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Map z (..., L) into ranges that round to exactly levels[i] integers per channel.

    Odd levels: tanh(z) * (l-1)/2 covers {-(l-1)/2 .. (l-1)/2}. Even levels are shifted by 1/2 so that
    rounding gives l integers {-l/2 .. l/2 - 1} (the FSQ paper's appendix A.1)."""
    half = (levels - 1) * (1 - eps) / 2
    offset = torch.where(levels % 2 == 0, 0.5, 0.0)
    shift = torch.atanh(offset / half)
    return torch.tanh(z + shift) * half - offset


def quantize(z: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """z (..., L) -> quantized values in [-1, 1] (..., L): integer grid divided by floor(l / 2)."""
    return round_ste(bound(z, levels)) / torch.div(levels, 2, rounding_mode="floor")


class FSQ(Bottleneck):
    acts_on = "tokens"

    def __init__(self, levels, dim: int):
        """``levels``: points per quantized value (each >= 2, e.g. [8, 5, 5]); ``dim``: D, the token size."""
        super().__init__()
        levels = torch.tensor(list(levels), dtype=torch.float32)
        if levels.ndim != 1 or len(levels) == 0 or (levels < 2).any():
            raise ValueError(f"FSQ levels must be a non-empty list of integers >= 2, got {levels.tolist()}")
        self.register_buffer("levels", levels)
        self.project_in = nn.Linear(dim, len(levels))
        self.project_out = nn.Linear(len(levels), dim)

    @classmethod
    def from_config(cls, cfg, num_units: int, unit_dim: int) -> "FSQ":
        """``cfg`` is ``model.bottleneck.fsq``; every unit's token is quantized alike, whatever N."""
        return cls(cfg.levels, unit_dim)

    @property
    def codebook_size(self) -> int:
        return int(self.levels.prod().item())

    def codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, D) -> quantized low-dimensional codes (B, N, L) in [-1, 1]."""
        return quantize(self.project_in(tokens), self.levels)

    def forward(self, x: torch.Tensor, step: int = 0) -> BottleneckOutput:
        """Tokens (B, N, D) -> quantized tokens (B, N, D); deterministic in training and evaluation."""
        return BottleneckOutput(self.project_out(self.codes(x)))
