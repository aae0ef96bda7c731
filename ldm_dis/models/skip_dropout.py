"""Skip Dropout (paper Sec. 3.3, Eq. 7) and its ablation, backbone dropout (Table 12).

In training, a U-Net skip feature s (B, C, H, W) passed from the down path to the up path becomes
s * m / (1 - p), m ~ Bernoulli(1 - p) drawn per sample and per channel (shape (B, C, 1, 1)): whole
channels of a sample's skip vanish, so the up path must lean on the backbone, which carries the units'
cross-attention. In evaluation it is the identity.

Which skips: a skip is named by its downsample factor (1 at full latent resolution, 2, 4, ...).
  * paper rule (the default, ``levels=None``): the factors where no cross-attention injects the
    units, e.g. factor 8 for Table 8 (attention at 1, 2, 4; levels 1, 2, 4, 8).
  * released code's rule: it compared the skip's *spatial size* with the attention factors, so at
    16x16 latents it dropped the skips of sizes 16 and 8 (factors 1 and 2). Reproduce it with
    ``levels=released_code_levels(latent_size, attention_downsample, level_factors)``.
Backbone dropout applies the same mask to the up path's own feature at those concatenations instead.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence

import torch
from torch import nn


def channel_dropout(x: torch.Tensor, p: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """x (B, C, ...) * Bernoulli(1 - p) mask of shape (B, C, 1, ...) / (1 - p)."""
    if p <= 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    shape = x.shape[:2] + (1,) * (x.dim() - 2)
    keep = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(1.0 - p, generator=generator)
    return x * keep / (1.0 - p)


def paper_levels(level_factors: Iterable[int], attention_downsample: Iterable[int]) -> List[int]:
    """Factors of the levels without cross-attention."""
    attn = set(attention_downsample)
    return [f for f in level_factors if f not in attn]


def released_code_levels(latent_size: int, attention_downsample: Iterable[int], level_factors: Iterable[int]) -> List[int]:
    """The released code's rule: drop where the skip's spatial size is not in ``attention_downsample``."""
    attn = set(attention_downsample)
    return [f for f in level_factors if latent_size // f not in attn]


class SkipDropout(nn.Module):
    """Applied at each concatenation of the up path: ``forward(h, skip, factor) -> (h, skip)``."""

    def __init__(self, p: float, levels: Sequence[int], backbone_p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0 or not 0.0 <= backbone_p < 1.0:
            raise ValueError(f"skip dropout p={p} and backbone dropout p={backbone_p} must be in [0, 1)")
        self.p, self.backbone_p = p, backbone_p
        self.levels = tuple(sorted(set(levels)))

    def forward(self, h: torch.Tensor, skip: torch.Tensor, factor: int):
        """h: the up path's feature (B, C_h, H, W); skip: the down path's (B, C_s, H, W)."""
        if not self.training or factor not in self.levels:
            return h, skip
        return channel_dropout(h, self.backbone_p), channel_dropout(skip, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, backbone_p={self.backbone_p}, levels={list(self.levels)}"
