"""Latent interpolation (paper D.3, Fig. 6): all units move linearly from image a to image b.

The paper found linear interpolation of the units more natural than slerp. Every panel of a strip starts
from the same x_T, so the strip changes only through the conditioning.

    strips = latent_interpolation(unet, scheduler, decode, units_a, units_b, x_T, num=8)
    strips[b, k]   # (3, H, W), generated from (1 - w_k) * units_a[b] + w_k * units_b[b], w = linspace(0, 1, num)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from ldm_dis.sampling.interchange import expand_noise
from ldm_dis.sampling.panels import sample_panels

if TYPE_CHECKING:  # diffusers (and torch._dynamo) is imported where a model is built, not at import
    from diffusers import DDIMScheduler


def interpolate_units(a: torch.Tensor, b: torch.Tensor, num: int) -> torch.Tensor:
    """a, b (B, N, D) -> (B, num, N, D), linear from a (k = 0) to b (k = num - 1), both ends exact."""
    if a.shape != b.shape:
        raise ValueError(f"units {tuple(a.shape)} and {tuple(b.shape)} differ")
    if num < 2:
        raise ValueError(f"an interpolation needs at least 2 points, got {num}")
    w = torch.linspace(0, 1, num, device=a.device, dtype=a.dtype)[None, :, None, None]  # (1, num, 1, 1)
    return torch.lerp(a[:, None], b[:, None], w)  # lerp is exact at w = 0 and w = 1


@torch.no_grad()
def latent_interpolation(
    unet: nn.Module,
    scheduler: DDIMScheduler,
    decode: Callable[[torch.Tensor], torch.Tensor],
    units_a: torch.Tensor,
    units_b: torch.Tensor,
    x_T: torch.Tensor,
    num: int = 8,
    steps: int = 100,
    eta: float = 0.0,
    batch_size: int = 64,
    progress: bool = True,
) -> torch.Tensor:
    """Units (B, N, D) of both ends, x_T (C, h, w) or (B, C, h, w) -> strips (B, num, 3, H, W)."""
    b, n, d = units_a.shape
    contexts = interpolate_units(units_a, units_b, num)  # (B, num, N, D)
    noise = expand_noise(x_T, b)[:, None].expand(b, num, *x_T.shape[-3:])
    images = sample_panels(unet, scheduler, decode, contexts.reshape(-1, n, d), noise.reshape(-1, *x_T.shape[-3:]),
                           steps=steps, eta=eta, batch_size=batch_size, progress=progress, desc="interpolate")
    return images.reshape(b, num, *images.shape[1:])
