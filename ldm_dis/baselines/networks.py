"""The one encoder/decoder family shared by every VAE-family baseline (so that only the latent differs).

A documented smaller network than the FactorQVAE paper's dVAE ResNet, so that all ten baselines train on
a CPU: the convolutional architecture of Burgess et al. 2018 / disentanglement_lib, which the beta-VAE,
FactorVAE and beta-TCVAE papers used on these datasets.

Encoder: log2(res/4) conv 4x4 stride 2 (channels c, c, 2c, 2c, ... with ReLU) down to 4x4, FC -> hidden
-> ReLU -> FC -> hidden -> ReLU -> linear head of ``out_dim``. Decoder: the mirror image with transposed
convolutions. Resolution 64 uses four stride-2 layers, 32 uses three.
"""

from __future__ import annotations

import math
from typing import List

import torch
from torch import nn


def _channels(resolution: int, base: int) -> List[int]:
    steps = int(math.log2(resolution // 4))
    if resolution < 8 or 4 * 2**steps != resolution:
        raise ValueError(f"baselines need a power-of-two resolution >= 8, got {resolution}")
    return [base * (2 ** (i // 2)) for i in range(steps)]  # c, c, 2c, 2c, 4c, ...


class ConvEncoder(nn.Module):
    """Images (B, C, res, res) -> (B, out_dim)."""

    def __init__(self, in_channels: int, resolution: int, out_dim: int, base_channels: int = 32, hidden: int = 256):
        super().__init__()
        channels = _channels(resolution, base_channels)
        layers, prev = [], in_channels
        for ch in channels:
            layers += [nn.Conv2d(prev, ch, 4, stride=2, padding=1), nn.ReLU()]
            prev = ch
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(prev * 16, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.head = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc(self.conv(x)))


class ConvDecoder(nn.Module):
    """Latents (B, in_dim) -> (B, C, res, res): pixel means (Gaussian) or logits (Bernoulli)."""

    def __init__(self, in_dim: int, out_channels: int, resolution: int, base_channels: int = 32, hidden: int = 256):
        super().__init__()
        channels = _channels(resolution, base_channels)[::-1]
        self.first_channels = channels[0]
        self.fc = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, channels[0] * 16), nn.ReLU(),
        )
        layers = []
        for ch, nxt in zip(channels, channels[1:] + [out_channels]):
            layers += [nn.ConvTranspose2d(ch, nxt, 4, stride=2, padding=1), nn.ReLU()]
        self.deconv = nn.Sequential(*layers[:-1])  # no ReLU on the output

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.first_channels, 4, 4)
        return self.deconv(h)
