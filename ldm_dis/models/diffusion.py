"""Noise schedules and the training loss of the latent diffusion model (SPEC 2.3).

The schedules are diffusers schedulers: the LDM "linear" schedule is ``scaled_linear`` (betas linear in
sqrt from 0.0015 to 0.0155, 1000 steps). The loss is epsilon prediction with L1 (the released code) or L2.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from ldm_dis.errors import UserInputError


def _schedule_kwargs(cfg) -> dict:
    if cfg.prediction_type != "epsilon":
        raise UserInputError(f"model.diffusion.prediction_type={cfg.prediction_type!r}: only 'epsilon' is implemented")
    return dict(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        clip_sample=False,  # latents are not bounded
    )


def make_train_scheduler(cfg) -> DDPMScheduler:
    """``cfg`` is ``model.diffusion``; used for ``add_noise`` only."""
    return DDPMScheduler(**_schedule_kwargs(cfg))


def make_ddim_scheduler(cfg) -> DDIMScheduler:
    """DDIM on the same schedule; like LDM's sampler, timesteps 1, 1 + c, ... (steps_offset=1) and the
    last step goes to alpha_bar_0 rather than 1 (set_alpha_to_one=False)."""
    return DDIMScheduler(**_schedule_kwargs(cfg), steps_offset=1, set_alpha_to_one=False)


def diffusion_loss(
    unet: nn.Module,
    scheduler: DDPMScheduler,
    latents: torch.Tensor,
    context: torch.Tensor,
    loss_type: str = "l1",
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """E_{t, eps} |eps_theta(x_t, t, c) - eps| (l1) or its square (l2). latents (B, C, h, w), context (B, N, D)."""
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator, device=latents.device)
    x_t = scheduler.add_noise(latents, noise, t)  # sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
    pred = unet(x_t, t, context)
    if loss_type == "l1":
        return F.l1_loss(pred.float(), noise.float())
    if loss_type == "l2":
        return F.mse_loss(pred.float(), noise.float())
    raise UserInputError(f"model.diffusion.loss={loss_type!r}: expected 'l1' or 'l2'")
