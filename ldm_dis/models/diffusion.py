"""Noise schedules and the training loss of the latent diffusion model.

The schedules are diffusers schedulers: the LDM "linear" schedule is ``scaled_linear`` (betas linear in
sqrt from 0.0015 to 0.0155, 1000 steps). The loss is epsilon prediction with L1 (the released code) or L2.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable, Optional

import torch
from torch import nn

from ldm_dis.errors import UserInputError

if TYPE_CHECKING:
    from diffusers import DDIMScheduler, DDPMScheduler


TIMESTEP_SAMPLING = ("uniform", "logit_normal")
LOSS_WEIGHTING = ("none", "min_snr", "pdae")
LOSSES = ("l1", "l2")
PREDICTION_TYPES = ("epsilon",)
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")  # what DDPMScheduler and DDIMScheduler both offer


def _schedule_kwargs(cfg) -> dict:
    if cfg.prediction_type not in PREDICTION_TYPES:
        raise UserInputError(f"model.diffusion.prediction_type={cfg.prediction_type!r}: only 'epsilon' is implemented")
    return dict(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        clip_sample=False,  # latents are not bounded
    )


def make_train_scheduler(cfg) -> "DDPMScheduler":
    """``cfg`` is ``model.diffusion``; used for ``add_noise`` only."""
    from diffusers import DDPMScheduler  # here, not at import: the config checks read this module's names

    return DDPMScheduler(**_schedule_kwargs(cfg))


def make_ddim_scheduler(cfg) -> "DDIMScheduler":
    """DDIM on the same schedule; like LDM's sampler, timesteps 1, 1 + c, ... (steps_offset=1) and the
    last step goes to alpha_bar_0 rather than 1 (set_alpha_to_one=False)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**_schedule_kwargs(cfg), steps_offset=1, set_alpha_to_one=False)


def sample_timesteps(
    n: int,
    num_train_timesteps: int,
    sampling: str = "uniform",
    mean: float = 0.0,
    std: float = 1.0,
    generator: Optional[torch.Generator] = None,
    device=None,
) -> torch.Tensor:
    """(n,) integer timesteps in [0, T): uniform, or logit-normal (t / T = sigmoid(u), u ~ N(mean, std),
    floored to an integer step), which concentrates on the middle of the schedule."""
    if sampling == "uniform":
        return torch.randint(0, num_train_timesteps, (n,), generator=generator, device=device)
    if sampling == "logit_normal":
        u = torch.randn((n,), generator=generator, device=device) * std + mean
        return (torch.sigmoid(u) * num_train_timesteps).long().clamp_(0, num_train_timesteps - 1)
    raise UserInputError(f"model.diffusion.timestep_sampling={sampling!r}: expected one of {TIMESTEP_SAMPLING}")


def timestep_sampler(cfg) -> Callable[..., torch.Tensor]:
    """``cfg`` is ``model.diffusion``: ``sampler(n, generator=None, device=None)`` draws t as it asks.
    Checked here, so a bad value fails when the task is built, before any step."""
    if cfg.timestep_sampling not in TIMESTEP_SAMPLING:
        raise UserInputError(f"model.diffusion.timestep_sampling={cfg.timestep_sampling!r}: expected one of {TIMESTEP_SAMPLING}")
    return functools.partial(sample_timesteps, num_train_timesteps=cfg.num_train_timesteps,
                             sampling=cfg.timestep_sampling, mean=cfg.logit_normal_mean, std=cfg.logit_normal_std)


def timestep_weights(scheduler: DDPMScheduler, weighting: str = "none", min_snr_gamma: float = 5.0,
                     pdae_gamma: float = 0.1) -> Optional[torch.Tensor]:
    """(T,) weight of each timestep's loss, divided by its mean over the schedule so that uniform t keeps
    the loss's scale (and the learning rate its meaning); None for ``"none"``. With SNR_t = abar_t / (1 - abar_t):

    - ``min_snr``: min(SNR_t, gamma) / SNR_t (Hang et al. 2023, epsilon prediction), which lowers the
      nearly noise-free steps;
    - ``pdae``: SNR_t^gamma / (1 + SNR_t) (Zhang et al. 2022, PDAE, as in its released code), which favours
      the noisy steps, where a denoiser needs its condition most.
    """
    if weighting == "none":
        return None
    abar = scheduler.alphas_cumprod.double()
    snr = abar / (1 - abar)
    if weighting == "min_snr":
        w = snr.clamp(max=min_snr_gamma) / snr
    elif weighting == "pdae":
        w = snr.pow(pdae_gamma) / (1 + snr)
    else:
        raise UserInputError(f"model.diffusion.loss_weighting={weighting!r}: expected one of {LOSS_WEIGHTING}")
    return (w / w.mean()).float()


def diffusion_loss(
    unet: nn.Module,
    scheduler: DDPMScheduler,
    latents: torch.Tensor,
    context: torch.Tensor,
    loss_type: str = "l1",
    generator: Optional[torch.Generator] = None,
    sample_t: Optional[Callable[..., torch.Tensor]] = None,
    weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """E_{t, eps} w_t |eps_theta(x_t, t, c) - eps| (l1) or its square (l2). latents (B, C, h, w), context (B, N, D).
    ``sample_t``: how t is drawn (:func:`timestep_sampler`); default uniform over the scheduler's steps.
    ``weights``: (T,) per-timestep weights (:func:`timestep_weights`); None = 1 for every t."""
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    if sample_t is None:
        sample_t = functools.partial(sample_timesteps, num_train_timesteps=scheduler.config.num_train_timesteps)
    t = sample_t(b, generator=generator, device=latents.device)
    x_t = scheduler.add_noise(latents, noise, t)  # sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
    pred = unet(x_t, t, context)
    if loss_type not in LOSSES:
        raise UserInputError(f"model.diffusion.loss={loss_type!r}: expected one of {LOSSES}")
    error = (pred.float() - noise.float()).abs() if loss_type == "l1" else (pred.float() - noise.float()).square()
    if weights is None:
        return error.mean()
    per_sample = error.reshape(b, -1).mean(1)  # (B,)
    return (weights.to(per_sample.device)[t] * per_sample).mean()
