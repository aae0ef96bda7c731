"""The training task of a VAE-family baseline (the :class:`ldm_dis.training.task.TrainingTask` contract).

One step: forward the batch, reconstruction + latent terms (+ gamma * TC from the discriminator for the
Factor* kinds), backward and step the model's optimizer; then, for the Factor* kinds, one discriminator
step on detached codes: the first half of the batch as joint samples, the second half with every latent
block permuted across the batch as samples of the product of marginals (as FactorVAE and the FactorQVAE
code split the batch; ``batch_discriminator_loss``).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import nn

from ldm_dis.baselines import latents
from ldm_dis.baselines.losses import reconstruction_loss
from ldm_dis.baselines.model import KINDS, BaselineModel
from ldm_dis.bottlenecks.total_correlation import TCDiscriminator, batch_discriminator_loss, tc_estimate


class CosineToMin:
    """LR factor: cosine from 1 to ``floor`` over ``steps``, then held at ``floor`` (the FactorQVAE code
    anneals 1e-3 -> 1.25e-6 over 50k steps; its CosineAnnealingLR would rise again after, ours stays)."""

    def __init__(self, steps: int, floor: float):
        self.steps, self.floor = max(int(steps), 1), float(floor)

    def __call__(self, step: int) -> float:
        progress = min(step, self.steps) / self.steps
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


def qlae_param_groups(model: nn.Module, weight_decay: float):
    """AdamW groups for QLAE: decay on the weight matrices / kernels only, not on biases, norms or the
    codebooks (QLAE's weight decay regularizes the encoder and decoder maps)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_weight = name.endswith("weight") and param.dim() >= 2 and "latent." not in name
        (decay if is_weight else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class BaselineTask:
    sample_caption = "Reconstructions of dataset images from their deterministic codes."

    def __init__(self, cfg, dataset):
        kind = cfg.model.kind
        bcfg = cfg.model.baseline
        self.kind, self.cfg = kind, cfg
        self.latent_dim = int(bcfg.latent_dim or 2 * len(dataset.factor_sizes))
        self.model = BaselineModel(
            kind, bcfg, dataset.num_channels, dataset.resolution, self.latent_dim, dataset_size=len(dataset)
        )
        self.likelihood = bcfg.likelihood
        self.grad_clip = cfg.train.grad_clip
        betas = tuple(cfg.train.adam_betas)
        if kind == "qlae":
            self.optimizer = torch.optim.AdamW(qlae_param_groups(self.model, bcfg.weight_decay), lr=cfg.train.lr, betas=betas)
        else:
            self.optimizer = torch.optim.Adam(
                self.model.parameters(), lr=cfg.train.lr, betas=betas, weight_decay=cfg.train.weight_decay
            )
        anneal = CosineToMin(bcfg.lr_anneal_steps, bcfg.lr_min / cfg.train.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, anneal)
        self.discriminator: Optional[nn.Module] = None
        if KINDS[kind].tc_discriminator:
            blocks = self.latent_dim * (bcfg.codebook_size if KINDS[kind].latent is not latents.Gaussian else 1)
            self.discriminator = TCDiscriminator(blocks, bcfg.disc_hidden, bcfg.disc_layers)
            self.disc_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=bcfg.disc_lr)
            self.disc_scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.disc_optimizer, CosineToMin(bcfg.lr_anneal_steps, bcfg.lr_min / bcfg.disc_lr)
            )
            self.tc_weight = float(bcfg.tc_weight)
        self._accelerator = None

    # ----------------------------------------------------------------------------- contract
    def modules(self) -> Dict[str, nn.Module]:
        mods = {"model": self.model}
        if self.discriminator is not None:
            mods["discriminator"] = self.discriminator
        return mods

    def optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        opts = {"model": self.optimizer}
        if self.discriminator is not None:
            opts["discriminator"] = self.disc_optimizer
        return opts

    def schedulers(self) -> Dict[str, object]:
        scheds = {"model": self.scheduler}
        if self.discriminator is not None:
            scheds["discriminator"] = self.disc_scheduler
        return scheds

    def prepare(self, accelerator) -> None:
        self._accelerator = accelerator
        self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)
        if self.discriminator is not None:
            self.discriminator, self.disc_optimizer = accelerator.prepare(self.discriminator, self.disc_optimizer)

    def unwrapped(self) -> BaselineModel:
        return self._accelerator.unwrap_model(self.model) if self._accelerator is not None else self.model

    def training_step(self, images: torch.Tensor, factors: torch.Tensor, step: int, accelerator) -> Dict[str, torch.Tensor]:
        """images (B, C, H, W) in [-1, 1]. Returns detached scalars: loss, recon, each latent term, and
        for the Factor* kinds the weighted TC estimate ``tc`` and the discriminator loss ``tc_disc``."""
        self.model.train()
        out = self.model(images, step)
        recon = reconstruction_loss(out.decoded, images, self.likelihood).mean()
        logs = {"recon": recon, **out.latent.terms}
        loss = recon + sum(out.latent.terms.values())
        blocks = out.latent.tc_blocks
        if self.discriminator is not None:
            logs["tc"] = self.tc_weight * tc_estimate(self.discriminator, blocks)
            loss = loss + logs["tc"]
        logs["loss"] = loss
        self.optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if self.grad_clip:
            accelerator.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()

        if self.discriminator is not None:
            disc_loss = batch_discriminator_loss(self.discriminator, blocks)
            self.disc_optimizer.zero_grad(set_to_none=True)  # drops the grads the model's loss left in D
            accelerator.backward(disc_loss)
            self.disc_optimizer.step()
            self.disc_scheduler.step()
            logs["tc_disc"] = disc_loss
        return {name: value.detach() for name, value in logs.items()}

    def save_pretrained(self, folder):
        """The trained model as a ``save_pretrained`` folder (see :meth:`BaselineModel.save_pretrained`)."""
        return self.unwrapped().save_pretrained(folder)

    def on_epoch_end(self, epoch: int, trainer) -> Optional[Dict[str, float]]:
        return None

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> deterministic codes (B, d) in eval mode."""
        model = self.unwrapped()
        model.eval()
        return model.encode(images)

    @torch.no_grad()
    def sample_images(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Reconstructions (B, C, H, W) in [-1, 1] from the deterministic codes."""
        model = self.unwrapped()
        model.eval()
        return model.decode(model.encode(images))
