"""Deterministic (eta = 0) or stochastic DDIM sampling of the U-Net, from an explicit initial noise.

Callers pass x_T themselves so that several panels (latent interchange, interpolation) can share one
noise and differ only in their conditioning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import nn

if TYPE_CHECKING:  # diffusers (and torch._dynamo) is imported where a model is built, not at import
    from diffusers import DDIMScheduler


@torch.no_grad()
def ddim_sample(
    unet: nn.Module,
    scheduler: DDIMScheduler,
    context: torch.Tensor,
    x_T: torch.Tensor,
    steps: int = 100,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """context (B, N, D), x_T (B, C, h, w) -> latents x_0 (B, C, h, w) in the diffusion model's (scaled)
    latent space. ``scheduler.set_timesteps(steps)`` is called here (it mutates the scheduler);
    ``generator`` is only used when eta > 0."""
    scheduler.set_timesteps(steps, device=x_T.device)
    x = x_T
    for t in scheduler.timesteps:
        eps = unet(x, t.expand(x.shape[0]).to(x.device), context)
        x = scheduler.step(eps, t, x, eta=eta, generator=generator).prev_sample
    return x
