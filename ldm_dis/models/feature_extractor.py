"""CNN feature extractor (paper Table 9 and the released ``ImageEncoder`` / ``MLPModule``).

image (B, 3, R, R) -> CNN -> flat (B, 4096 at 64x64) -> FC 4096 -> ReLU -> FC 256 -> ReLU -> FC N
-> N scalars (B, N) -> one MLP per unit, 1 -> 256 -> 512 -> D, ReLU after every layer -> tokens (B, N, D).
The released defaults give 23.6M parameters at N = 20; ``extra_fc=False`` drops the 4096 x 4096 layer (a
CPU-sized head) and ``final_relu=False`` leaves the tokens signed. With the final ReLU, tokens are >= 0
and often exactly 0.
The two halves are exposed separately (``scalars`` / ``tokens``) because a bottleneck acts on one of them:
FactorQ quantizes the scalars, DyGA aligns the tokens.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class UnitMLPs(nn.Module):
    """N independent MLPs 1 -> h1 -> ... -> D with ReLU between layers (and after the last one when
    ``final_relu``, as the released ``MLPModule``), run as batched einsums over weights of shape
    (N, in, out): one kernel per layer for all units instead of a Python loop."""

    def __init__(self, num_units: int, hidden: Sequence[int], out_dim: int, final_relu: bool = True):
        super().__init__()
        self.final_relu = final_relu
        dims = [1, *hidden, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            # nn.Linear's default init, unit by unit
            bound = 1.0 / math.sqrt(d_in)
            self.weights.append(nn.Parameter(torch.empty(num_units, d_in, d_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_units, d_out).uniform_(-bound, bound)))

    def forward(self, scalars: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, N, D)."""
        h = scalars.unsqueeze(-1)  # (B, N, 1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.einsum("bni,nio->bno", h, w) + b  # (B, N, out_i)
            if i < last or self.final_relu:
                h = F.relu(h)
        return h


class FeatureExtractor(nn.Module):
    def __init__(
        self,
        num_units: int = 20,
        unit_dim: int = 32,
        image_size: int = 64,
        in_channels: int = 3,
        stem_channels: int = 64,
        channels: Sequence[int] = (128, 256, 256, 256),
        hidden: int = 256,
        extra_fc: bool = True,
        extra_fc_width: int = 4096,
        unit_mlp: Sequence[int] = (256, 512),
        final_relu: bool = True,
    ):
        super().__init__()
        self.num_units, self.unit_dim = num_units, unit_dim
        layers = [nn.Conv2d(in_channels, stem_channels, 7, 1, 3), nn.BatchNorm2d(stem_channels), nn.ReLU()]
        c = stem_channels
        for c_out in channels:  # each conv halves the resolution
            layers += [nn.Conv2d(c, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
            c = c_out
        self.cnn = nn.Sequential(*layers)
        side = image_size // 2 ** len(channels)
        if side < 1 or image_size % 2 ** len(channels):
            raise ValueError(f"image_size {image_size} is not divisible by 2**{len(channels)}")
        flat = c * side * side  # 256 * 4 * 4 = 4096 at 64x64
        head = [nn.Flatten()]
        if extra_fc:  # the released ImageEncoder.fc: flat -> 4096 whatever the input size (Table 9's 4096 x 4096)
            head += [nn.Linear(flat, extra_fc_width), nn.ReLU()]
            flat = extra_fc_width
        head += [nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, num_units)]
        self.head = nn.Sequential(*head)
        self.unit_mlps = UnitMLPs(num_units, unit_mlp, unit_dim, final_relu=final_relu)

    @classmethod
    def from_config(cls, cfg, image_size: int) -> "FeatureExtractor":
        """``cfg`` is ``model.encoder``; ``image_size`` is ``data.resolution``."""
        return cls(
            num_units=cfg.num_units,
            unit_dim=cfg.unit_dim,
            image_size=image_size,
            stem_channels=cfg.stem_channels,
            channels=tuple(cfg.channels),
            hidden=cfg.hidden,
            extra_fc=cfg.extra_fc,
            extra_fc_width=cfg.extra_fc_width,
            unit_mlp=tuple(cfg.unit_mlp),
            final_relu=cfg.final_relu,
        )

    def scalars(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) in [-1, 1] -> (B, N)."""
        return self.head(self.cnn(x))

    def tokens(self, scalars: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, N, D)."""
        return self.unit_mlps(scalars)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) -> tokens (B, N, D), without a bottleneck."""
        return self.tokens(self.scalars(x))
