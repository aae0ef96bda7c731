"""Latent interchange (paper Sec. 4.4, Fig. 3 and 8).

For a source and a target image, panel i is generated from the source's units with unit i taken from the
target. Every panel of a pair, and the reference panel generated from the unaltered source units, starts
from the same initial noise x_T, so the panels differ only through the swapped unit (the released code
drew fresh noise per panel, which mixes the effect of the unit with that of the noise).

    panels = latent_interchange(unet, scheduler, decode, source_units, target_units, x_T)
    panels[:, 0]        # (B, 3, H, W) generated from the source units (the reference)
    panels[:, 1 + i]    # (B, 3, H, W) unit i from the target
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from ldm_dis.sampling.panels import sample_panels

if TYPE_CHECKING:  # diffusers (and torch._dynamo) is imported where a model is built, not at import
    from diffusers import DDIMScheduler


def interchange_units(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """source, target (B, N, D) -> contexts (B, N, N, D): contexts[b, i] is source[b] with unit i of target[b]."""
    if source.shape != target.shape:
        raise ValueError(f"source units {tuple(source.shape)} and target units {tuple(target.shape)} differ")
    b, n, _ = source.shape
    contexts = source[:, None].repeat(1, n, 1, 1)  # (B, N, N, D)
    idx = torch.arange(n, device=source.device)
    contexts[:, idx, idx] = target  # row i of pair b: unit i from the target
    return contexts


def expand_noise(x_T: torch.Tensor, pairs: int) -> torch.Tensor:
    """x_T (C, h, w) shared by every pair, or (B, C, h, w) one per pair -> (B, C, h, w)."""
    if x_T.dim() == 3:
        return x_T[None].expand(pairs, *x_T.shape)
    if x_T.dim() == 4 and x_T.shape[0] == pairs:
        return x_T
    raise ValueError(f"x_T must be (C, h, w) or ({pairs}, C, h, w); got {tuple(x_T.shape)}")


@torch.no_grad()
def latent_interchange(
    unet: nn.Module,
    scheduler: DDIMScheduler,
    decode: Callable[[torch.Tensor], torch.Tensor],
    source_units: torch.Tensor,
    target_units: torch.Tensor,
    x_T: torch.Tensor,
    steps: int = 100,
    eta: float = 0.0,
    batch_size: int = 64,
    progress: bool = True,
) -> torch.Tensor:
    """Units (B, N, D) of sources and targets, x_T (C, h, w) or (B, C, h, w) -> panels (B, 1 + N, 3, H, W):
    [:, 0] from the source units, [:, 1 + i] with unit i from the target; all panels of pair b from x_T[b]."""
    b, n, d = source_units.shape
    contexts = torch.cat([source_units[:, None], interchange_units(source_units, target_units)], dim=1)  # (B, 1+N, N, D)
    noise = expand_noise(x_T, b)[:, None].expand(b, 1 + n, *x_T.shape[-3:])  # (B, 1+N, C, h, w)
    images = sample_panels(unet, scheduler, decode, contexts.reshape(-1, n, d), noise.reshape(-1, *x_T.shape[-3:]),
                           steps=steps, eta=eta, batch_size=batch_size, progress=progress, desc="interchange")
    return images.reshape(b, 1 + n, *images.shape[1:])
