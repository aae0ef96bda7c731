"""The contract between the trainer and what it trains.

A *task* is one trainable system: the VQ-GAN first stage, the latent diffusion model, or a VAE-family
baseline. The trainer (``ldm_dis.training.trainer``) owns everything generic: Accelerate, seeding, the
data loader, the progress bar, logs, checkpoints, resume, NaN checks, epoch hooks. The task owns its
networks, optimizers and the arithmetic of one step (including GAN / discriminator alternation).
"""

from __future__ import annotations

from typing import Dict, Optional, Protocol

import torch
from torch import nn


class TrainingTask(Protocol):
    # what sample_images shows, written under the run's sample grids ("" for none)
    sample_caption: str

    def modules(self) -> Dict[str, nn.Module]:
        """Every module whose state is checkpointed (networks, EMA copies, bottleneck state), by name."""

    def optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        """Every optimizer, by name (checkpointed with the modules)."""

    def schedulers(self) -> Dict[str, object]:
        """LR schedulers by name (objects with state_dict / load_state_dict), possibly empty."""

    def prepare(self, accelerator) -> None:
        """Wrap modules and optimizers with ``accelerator.prepare`` (DDP, device placement)."""

    def training_step(self, images: torch.Tensor, factors: torch.Tensor, step: int, accelerator) -> Dict[str, torch.Tensor]:
        """One optimization step on a batch (images (B, C, H, W) in [-1, 1]): forward, backward through
        ``accelerator.backward``, optimizer steps, EMA update. Returns detached scalar loss terms by name;
        the trainer checks them for NaN/inf (naming the term) and logs them."""

    # Optional: ``batches(iterator) -> iterator``, the training batches as the task wants them delivered,
    # e.g. read one ahead to prepare the next batch during the current step (same batches, same order).

    def on_epoch_end(self, epoch: int, trainer) -> Optional[Dict[str, float]]:
        """Hook after each epoch (DyGA refits anchors here); may return numbers to log."""

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Representation for the metrics: (B, N) scalars or (B, N, D) units (eval mode)."""

    @torch.no_grad()
    def sample_images(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Pictures for the run folder (e.g. reconstructions or DDIM samples conditioned on `images`)."""
