"""The VQ-GAN first stage as a training task (paper Table 7).

``first_stage.codebook_init=data`` sets the codebook from the encoder outputs of the first batch before
the first step (the main process's codebook, broadcast to the others). One step: reconstruct, update the
autoencoder on L1 [+ perceptual] + codebook + adaptive-weighted GAN loss (Adam, betas (0.5, 0.9),
lr = first_stage.lr x batch size as in taming), then update the patch discriminator on the hinge loss.
Logs reconstruction MSE and PSNR; pictures are reconstructions. Like :mod:`ldm_dis.training.ldm_task`,
modules are not DDP-wrapped: the discriminator is used in both updates of a step; gradients are
averaged explicitly.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Optional

import torch
from torch import nn

from ldm_dis.config.validation import CODEBOOK_INITS
from ldm_dis.errors import UserInputError
from ldm_dis.models.perceptual import build_perceptual
from ldm_dis.models.vqgan import FirstStage
from ldm_dis.models.vqgan_loss import VQGANLoss
from ldm_dis.training.distributed import average_gradients, broadcast_buffers, broadcast_tensor
from ldm_dis.training.optim import adam
from ldm_dis.viz.grids import interleave_rows


def psnr(mse: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (range 2)."""
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


class VQGANTask:
    sample_caption = "Rows of dataset images, each followed by the row of their VQ-GAN reconstructions."

    def __init__(self, cfg, dataset=None):
        fs = cfg.model.first_stage
        if fs.codebook_init not in CODEBOOK_INITS:
            raise UserInputError(f"model.first_stage.codebook_init={fs.codebook_init!r}: expected one of {CODEBOOK_INITS}")
        self.cfg = cfg
        self.first_stage = FirstStage.from_config(fs)
        self.loss = VQGANLoss(
            codebook_weight=fs.codebook_weight,
            disc_weight=fs.disc_weight,
            disc_start=fs.disc_start,
            disc_channels=fs.disc_channels,
            disc_layers=fs.disc_layers,
            perceptual=build_perceptual(fs.perceptual_weights),
            perceptual_weight=fs.perceptual_weight,
        )
        lr = fs.lr * fs.batch_size  # taming: base_learning_rate x batch size
        self.optimizer = adam(self.first_stage.parameters(), lr, betas=(0.5, 0.9))
        self.disc_optimizer = adam(self.loss.discriminator.parameters(), lr, betas=(0.5, 0.9))
        self.accelerator = None

    # ------------------------------------------------------------------------------ the protocol
    def modules(self) -> Dict[str, nn.Module]:
        return {"first_stage": self.first_stage, "discriminator": self.loss.discriminator}

    def optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        return {"autoencoder": self.optimizer, "discriminator": self.disc_optimizer}

    def schedulers(self) -> Dict[str, object]:
        return {}

    def prepare(self, accelerator) -> None:
        self.accelerator = accelerator
        self.first_stage.to(accelerator.device)
        self.loss.to(accelerator.device)  # discriminator and the frozen perceptual network
        if self.cfg.train.channels_last:
            self.first_stage.to(memory_format=torch.channels_last)
        self.optimizer = accelerator.prepare_optimizer(self.optimizer)
        self.disc_optimizer = accelerator.prepare_optimizer(self.disc_optimizer)

    def training_step(self, images, factors, step, accelerator) -> Dict[str, torch.Tensor]:
        acc = accelerator
        if step == 0 and self.cfg.model.first_stage.codebook_init == "data":
            # step 0 comes once per run: a resumed run starts later, with its codebook in the checkpoint
            self.first_stage.init_codebook_from(images, torch.Generator().manual_seed(self.cfg.train.seed))
            broadcast_tensor(self.first_stage.vq.quantize.embedding.weight.data, acc)
        self.first_stage.train()
        self.loss.train()
        with acc.autocast():
            rec, codebook_loss = self.first_stage(images)
            g_loss, terms = self.loss.generator_loss(images, rec, codebook_loss, step, self.first_stage.last_layer)
        self.optimizer.zero_grad(set_to_none=True)
        acc.backward(g_loss)
        average_gradients(list(self.first_stage.parameters()), acc)
        self.optimizer.step()

        with acc.autocast():
            d_loss = self.loss.discriminator_loss(images, rec, step)
        if d_loss is not None:
            self.disc_optimizer.zero_grad(set_to_none=True)  # drops the generator step's gradients
            acc.backward(d_loss)
            average_gradients(list(self.loss.discriminator.parameters()), acc)
            self.disc_optimizer.step()
            broadcast_buffers(self.loss.discriminator, acc)
            terms["disc"] = d_loss.detach()
        mse = (rec.detach().float() - images.float()).pow(2).mean()
        return {"loss": g_loss.detach(), **terms, "mse": mse, "psnr": psnr(mse)}

    def on_epoch_end(self, epoch: int, trainer) -> Optional[Dict[str, float]]:
        return None

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-quantization latents (B, embed_dim, H/f, W/f)."""
        was_training = self.first_stage.training
        self.first_stage.eval()
        try:
            with self._autocast():
                return self.first_stage.encode(images).float()
        finally:
            self.first_stage.train(was_training)

    @torch.no_grad()
    def sample_images(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Reconstructions, interleaved by rows with the originals: (2B, 3, H, W) in [-1, 1]."""
        was_training = self.first_stage.training
        self.first_stage.eval()
        try:
            with self._autocast():
                rec, _ = self.first_stage(images)
        finally:
            self.first_stage.train(was_training)
        return interleave_rows(images, rec.float().clamp(-1, 1))

    def _autocast(self):
        return self.accelerator.autocast() if self.accelerator is not None else contextlib.nullcontext()
