"""DDIM for many conditionings at once: the common core of interchange grids and interpolation strips.

    images = sample_panels(unet, scheduler, decode, contexts, x_T, steps=100)
    # contexts (M, N, D), x_T (M, C, h, w) -> images (M, 3, H, W) in [-1, 1]

Panels are sampled in batches of ``batch_size`` with :func:`ldm_dis.sampling.ddim.ddim_sample` (the one
DDIM loop of the package); a tqdm bar counts U-Net evaluations, so long grids show their progress.
The U-Net must be in eval mode (dropout, Skip Dropout off): otherwise equal inputs give unequal panels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from ldm_dis.sampling.ddim import ddim_sample

if TYPE_CHECKING:  # diffusers (and torch._dynamo) is imported where a model is built, not at import
    from diffusers import DDIMScheduler


class TickingUNet(nn.Module):
    """The U-Net, advancing a progress bar by one at each call (one call = one DDIM step of a batch)."""

    def __init__(self, unet: nn.Module, bar):
        super().__init__()
        self.unet, self.bar = unet, bar

    def forward(self, x, t, context):
        out = self.unet(x, t, context)
        self.bar.update(1)
        return out


def check_eval(unet: nn.Module) -> None:
    """Refuse a U-Net in training mode: its dropout would make panels that should agree differ."""
    if any(m.training for m in unet.modules()):
        raise ValueError("sampling needs the U-Net in eval mode (call .eval(), or use the EMA copy)")


@torch.no_grad()
def sample_panels(
    unet: nn.Module,
    scheduler: DDIMScheduler,
    decode: Callable[[torch.Tensor], torch.Tensor],
    contexts: torch.Tensor,
    x_T: torch.Tensor,
    steps: int = 100,
    eta: float = 0.0,
    batch_size: int = 64,
    progress: bool = True,
    desc: str = "DDIM",
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """contexts (M, N, D), x_T (M, C, h, w) -> decoded images (M, 3, H, W).

    ``decode`` maps diffusion latents (scaled, as DDIM returns them) to images in [-1, 1], e.g.
    ``first_stage.decode_scaled``. With eta = 0 the result depends only on (context, x_T) per panel.
    """
    if contexts.shape[0] != x_T.shape[0]:
        raise ValueError(f"{contexts.shape[0]} contexts for {x_T.shape[0]} initial noises")
    check_eval(unet)
    chunks = range(0, contexts.shape[0], batch_size)
    out = []
    with tqdm(total=len(chunks) * steps, desc=desc, unit="step", disable=not progress, leave=False) as bar:
        ticking = TickingUNet(unet, bar)
        for start in chunks:
            ctx, noise = contexts[start:start + batch_size], x_T[start:start + batch_size]
            latents = ddim_sample(ticking, scheduler, ctx, noise, steps=steps, eta=eta, generator=generator)
            out.append(decode(latents).clamp(-1, 1))
    return torch.cat(out)
