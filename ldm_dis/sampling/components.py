"""The explicit components that the picture functions take, read from a trained LDM run.

    ldm = load_ldm_components("runs/quickstart")          # a run folder, a checkpoint folder or a file in one
    images, factors = dataset_images(ldm.dataset, 6, seed=0, device=ldm.device)
    units = ldm.encode(images)                             # (6, N, D): extractor + bottleneck, eval mode
    x_T = ldm.noise(seed=0)                                # (C, h, w)
    panels = latent_interchange(ldm.unet, ldm.scheduler, ldm.decode, units[:3], units[3:], x_T)

Everything is read through :func:`ldm_dis.training.checkpoint.load_task_from_checkpoint` and the task's
public attributes (``encode``, ``ema_unet``, ``ddim_scheduler``, ``first_stage``); the sampling functions
themselves never see the task, so they work on any U-Net / scheduler / decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Tuple

import numpy as np
import torch
from diffusers import DDIMScheduler
from torch import nn

from ldm_dis.errors import UserInputError


@dataclass
class LDMComponents:
    cfg: object  # the run's resolved config
    dataset: object  # GroundTruthDataset of the run
    unet: nn.Module  # EMA U-Net, eval mode
    scheduler: DDIMScheduler
    decode: Callable[[torch.Tensor], torch.Tensor]  # diffusion latents (B, C, h, w) -> images (B, 3, H, W)
    encode: Callable[[torch.Tensor], torch.Tensor]  # images (B, 3, H, W) in [-1, 1] -> units (B, N, D)
    latent_shape: Tuple[int, int, int]  # (C, h, w) of x_T
    device: torch.device
    checkpoint: Path  # the checkpoint folder that was loaded

    def noise(self, seed: int, count: int | None = None) -> torch.Tensor:
        """x_T drawn on the CPU from ``seed`` (the same on every device): (C, h, w), or (count, C, h, w)."""
        shape = self.latent_shape if count is None else (count, *self.latent_shape)
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(self.device)


def load_ldm_components(checkpoint: str | Path) -> LDMComponents:
    """Rebuild a ``model.kind=ldm`` run and return its sampling components (the EMA U-Net;
    the extractor DyGA was fitted on)."""
    from ldm_dis.data import build_dataset
    from ldm_dis.training.checkpoint import load_run_config, load_task_from_checkpoint, resolve_checkpoint

    folder = resolve_checkpoint(checkpoint)
    cfg = load_run_config(folder)
    if cfg.model.kind != "ldm":
        raise UserInputError(f"{checkpoint} is a model.kind={cfg.model.kind!r} run; these pictures need an ldm run "
                             f"(for the VAE baselines: ldm-dis sample traverse / swap)")
    dataset = build_dataset(cfg.data)
    cfg, task = load_task_from_checkpoint(folder, dataset=dataset)
    unet = task.ema_unet.shadow.eval()
    device = next(unet.parameters()).device
    c = cfg.model.first_stage.embed_dim
    first_stage = task.first_stage.eval()

    @torch.no_grad()
    def decode(latents: torch.Tensor) -> torch.Tensor:
        return first_stage.decode_scaled(latents.float()).float()

    return LDMComponents(cfg=cfg, dataset=dataset, unet=unet, scheduler=task.ddim_scheduler, decode=decode,
                         encode=task.encode, latent_shape=(c, task.latent_size, task.latent_size), device=device,
                         checkpoint=folder)


def dataset_images(dataset, count: int, seed: int, device=None) -> Tuple[torch.Tensor, np.ndarray]:
    """``count`` distinct dataset images chosen by ``seed``: (images (count, C, H, W) in [-1, 1], factors (count, F))."""
    n = len(dataset)
    if count > n:
        raise UserInputError(f"{count} images asked for, the dataset has {n}")
    idx = dataset.grid_indices(np.random.default_rng(seed).choice(n, count, replace=False).astype(np.int64))
    images = torch.from_numpy(np.ascontiguousarray(dataset.images_at(idx)))
    return images.to(device) if device is not None else images, dataset.factors_of(idx)


@torch.no_grad()
def encode_in_batches(encode: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """images (n, C, H, W) -> units (n, N, D) on the CPU, ``batch_size`` images at a time."""
    return torch.cat([encode(images[i:i + batch_size]).float().cpu() for i in range(0, len(images), batch_size)])
