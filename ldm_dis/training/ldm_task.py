"""The latent diffusion model as a training task (SPEC 1, 2.2-2.5): frozen VQ-GAN latents, feature
extractor -> bottleneck -> units, U-Net with Skip Dropout conditioned on the units, EMA copies.

One step:
    z0    = first_stage.encode(x) * scale                       (B, C, h, w), no gradient
    units = bottleneck(extractor(x))                           (B, N, D) (+ bottleneck losses)
    loss  = |eps_theta(sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, t, units) - eps| + bottleneck losses
The bottleneck acts on the extractor's scalars (FactorQ) or tokens (DyGA, FSQ); an auxiliary
discriminator of the bottleneck (FactorQ's total correlation) has its own optimizer and loss.

No DDP wrapper: FactorQ's discriminator needs a second backward through modules already used in the
step, which DDP's reducer forbids. Gradients are averaged across processes explicitly instead
(:func:`average_gradients`, one flat all-reduce per optimizer) and BatchNorm buffers broadcast from the
main process (:func:`broadcast_buffers`), which is what DDP computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ldm_dis.bottlenecks import BottleneckOutput, build_bottleneck
from ldm_dis.errors import UserInputError
from ldm_dis.models.diffusion import diffusion_loss, make_ddim_scheduler, make_train_scheduler, timestep_sampler
from ldm_dis.models.ema import EMA
from ldm_dis.models.feature_extractor import FeatureExtractor
from ldm_dis.models.unet import UNet
from ldm_dis.models.vqgan import load_first_stage
from ldm_dis.sampling.ddim import ddim_sample
from ldm_dis.training.distributed import average_gradients, broadcast_buffers
from ldm_dis.viz.grids import interleave_rows


class LDMTask:
    def __init__(self, cfg, dataset, first_stage_path: Optional[str | Path] = None):
        m = cfg.model
        self.cfg = cfg
        first_stage_path = first_stage_path or m.first_stage.checkpoint
        if not first_stage_path:
            raise UserInputError("model.kind=ldm needs a trained VQ-GAN: set model.first_stage.checkpoint (ours or a taming .ckpt)")
        self.first_stage = load_first_stage(first_stage_path, m.first_stage).eval().requires_grad_(False)
        n, d = m.encoder.num_units, m.encoder.unit_dim
        self.feature_extractor = FeatureExtractor.from_config(m.encoder, image_size=cfg.data.resolution)
        self.bottleneck = build_bottleneck(m.bottleneck, n, d)
        self.unet = UNet.from_config(m.unet, in_channels=m.first_stage.embed_dim, context_dim=d)
        self.ema_unet = EMA(self.unet, cfg.train.ema_decay)
        self.ema_feature_extractor = EMA(self.feature_extractor, cfg.train.ema_decay)
        self.noise_scheduler = make_train_scheduler(m.diffusion)
        self.sample_t = timestep_sampler(m.diffusion)
        self.ddim_scheduler = make_ddim_scheduler(m.diffusion)
        self.latent_size = cfg.data.resolution // self.first_stage.downsample_factor

        disc = {id(p) for p in self.bottleneck.discriminator_parameters()}
        self.main_params = [
            *self.feature_extractor.parameters(),
            *self.unet.parameters(),
            *(p for p in self.bottleneck.parameters() if id(p) not in disc),
        ]
        # one fused kernel for all parameters where a GPU trains (foreach on a CPU: its default is a per-tensor loop)
        fused = torch.cuda.is_available()
        self.optimizer = torch.optim.AdamW(self.main_params, lr=cfg.train.lr, betas=tuple(cfg.train.adam_betas),
                                           weight_decay=cfg.train.weight_decay, foreach=not fused, fused=fused)
        self.disc_params = list(self.bottleneck.discriminator_parameters())
        self.disc_optimizer = None
        if self.disc_params:
            section = m.bottleneck.get(m.bottleneck.kind, None)
            disc_lr = float(getattr(section, "disc_lr", cfg.train.lr))
            self.disc_optimizer = torch.optim.Adam(self.disc_params, lr=disc_lr, betas=(0.5, 0.9))
        warmup = cfg.train.warmup_steps
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup)) if warmup else None
        self.accelerator = None
        self._unet_forward = self.unet

    # ------------------------------------------------------------------------------ the protocol
    def modules(self) -> Dict[str, nn.Module]:
        return {
            "first_stage": self.first_stage,  # frozen; kept so the latent scale and the weights travel together
            "feature_extractor": self.feature_extractor,
            "bottleneck": self.bottleneck,
            "unet": self.unet,
            "ema_unet": self.ema_unet,
            "ema_feature_extractor": self.ema_feature_extractor,
        }

    def optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        opts = {"ldm": self.optimizer}
        if self.disc_optimizer is not None:
            opts["bottleneck_disc"] = self.disc_optimizer
        return opts

    def schedulers(self) -> Dict[str, object]:
        return {"ldm": self.lr_scheduler} if self.lr_scheduler is not None else {}

    def prepare(self, accelerator) -> None:
        self.accelerator = accelerator
        for module in self.modules().values():
            module.to(accelerator.device)
        if self.cfg.train.channels_last:
            for module in (self.unet, self.ema_unet, self.first_stage, self.feature_extractor, self.ema_feature_extractor):
                module.to(memory_format=torch.channels_last)
        # accelerate's optimizer wrapper: fp16 loss scaling; the modules stay unwrapped (see module doc)
        self.optimizer = accelerator.prepare_optimizer(self.optimizer)
        if self.disc_optimizer is not None:
            self.disc_optimizer = accelerator.prepare_optimizer(self.disc_optimizer)
        if self.cfg.train.compile:
            self._unet_forward = torch.compile(self.unet)

    def units(self, extractor: nn.Module, images: torch.Tensor) -> Tuple[torch.Tensor, BottleneckOutput]:
        """images (B, 3, R, R) -> units after the bottleneck (B, N, D) and the bottleneck's output."""
        scalars = extractor.scalars(images)  # (B, N)
        if self.bottleneck.acts_on == "scalars":
            out = self.bottleneck(scalars)
            return extractor.tokens(out.value), out
        out = self.bottleneck(extractor.tokens(scalars))  # (B, N, D)
        return out.value, out

    @torch.no_grad()
    def _latents(self, images: torch.Tensor, accelerator) -> torch.Tensor:
        """Diffusion-space latents (B, C, h, w); the first call measures the latent scale (scale_by_std)."""
        z = self.first_stage.encode(images).float()
        fs = self.first_stage
        if self.cfg.model.diffusion.scale_by_std and not bool(fs.latent_scale_set):
            every = accelerator.gather(z) if accelerator is not None else z  # same scale on every process
            scale = fs.set_latent_scale_from(every)
            if accelerator is None or accelerator.is_main_process:
                print(f"latent scale set to {scale:.5g} (1 / std of the first batch's latents)")
        return z * fs.latent_scale

    def training_step(self, images, factors, step, accelerator) -> Dict[str, torch.Tensor]:
        acc = accelerator
        for module in (self.feature_extractor, self.bottleneck, self.unet):
            module.train()
        if self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with acc.autocast():
            latents = self._latents(images, acc)
            units, out = self.units(self.feature_extractor, images)
            diff = diffusion_loss(self._unet_forward, self.noise_scheduler, latents, units,
                                  self.cfg.model.diffusion.loss, sample_t=self.sample_t)
            loss = diff + sum(out.losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        acc.backward(loss)
        average_gradients(self.main_params, acc)
        if self.cfg.train.grad_clip:
            acc.clip_grad_norm_(self.main_params, self.cfg.train.grad_clip)
        self.optimizer.step()
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        terms = {"loss": loss.detach(), "diffusion": diff.detach(), **{k: v.detach() for k, v in out.losses.items()}}
        if out.disc_losses:
            disc_loss = sum(out.disc_losses.values())
            self.disc_optimizer.zero_grad(set_to_none=True)  # also drops what the main loss put there
            acc.backward(disc_loss)
            average_gradients(self.disc_params, acc)
            self.disc_optimizer.step()
            terms.update({k: v.detach() for k, v in out.disc_losses.items()})
        broadcast_buffers(self.feature_extractor, acc)  # BatchNorm statistics as on the main process
        self.ema_unet.update(self.unet)
        self.ema_feature_extractor.update(self.feature_extractor)
        return terms

    # --------------------------------------------------------------------------- DyGA anchor fits
    @torch.no_grad()
    def collect_features(self, trainer, max_samples: int, seed: int) -> np.ndarray:
        """What the bottleneck acts on, for (a random subset of at most ``max_samples` of) the training
        set, from the current extractor in eval mode: float32 (n, N, D) tokens or (n, N) scalars."""
        acc, n = trainer.accelerator, len(trainer.dataset)
        indices = None
        if n > max_samples:
            indices = np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False)).tolist()
        fx = self.feature_extractor
        was_training = fx.training
        fx.eval()
        chunks = []
        for images, _ in trainer.eval_loader(indices=indices):
            with acc.autocast():
                values = fx.scalars(images)
                if self.bottleneck.acts_on == "tokens":
                    values = fx.tokens(values)
            chunks.append(acc.gather_for_metrics(values.float().contiguous()).cpu())
        fx.train(was_training)
        return torch.cat(chunks).numpy()

    def on_epoch_end(self, epoch: int, trainer) -> Optional[Dict[str, float]]:
        b = self.bottleneck
        should_fit = getattr(b, "should_fit", None)
        if should_fit is None or not should_fit(epoch):
            return None
        section = self.cfg.model.bottleneck.get(self.cfg.model.bottleneck.kind, None)
        max_samples = int(getattr(section, "max_samples", 100_000))
        seed = int(getattr(section, "seed", 0)) + epoch
        features = self.collect_features(trainer, max_samples, seed)
        acc = trainer.accelerator
        result = None
        if acc.is_main_process:
            result = b.fit(features)  # (n, N, D): anchors per unit, into fixed-shape buffers
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for buf in b.buffers():  # every process aligns with the main process's anchors
                torch.distributed.broadcast(buf, src=0)
        if acc.is_main_process:
            b.save_fit(Path(trainer.run_dir) / "dyga" / f"fit_epoch{epoch}")
        return _anchors_per_unit(b, result)

    # ------------------------------------------------------------------------------ representation
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """EMA extractor's units after the bottleneck, eval mode: (B, N, D) float32."""
        was_training = self.bottleneck.training
        self.bottleneck.eval()
        try:
            with self._autocast():
                units, _ = self.units(self.ema_feature_extractor.shadow, images)
        finally:
            self.bottleneck.train(was_training)
        return units.float()

    @torch.no_grad()
    def sample_images(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """DDIM reconstructions (EMA weights, ``diffusion.sample_steps`` steps) conditioned on the images'
        units, interleaved by rows with the originals: (2B, 3, R, R) in [-1, 1]."""
        units = self.encode(images)
        b, c = images.shape[0], self.cfg.model.first_stage.embed_dim
        x_T = torch.randn((b, c, self.latent_size, self.latent_size), generator=generator,
                          device=generator.device).to(images.device)
        d = self.cfg.model.diffusion
        with self._autocast():
            z = ddim_sample(self.ema_unet.shadow, self.ddim_scheduler, units, x_T, d.sample_steps, d.eta, generator)
            recon = self.first_stage.decode_scaled(z.float())
        return interleave_rows(images, recon.float().clamp(-1, 1))

    def _autocast(self):
        import contextlib

        return self.accelerator.autocast() if self.accelerator is not None else contextlib.nullcontext()


def _anchors_per_unit(bottleneck, result) -> Optional[Dict[str, float]]:
    """Numbers for the log: what ``fit`` returned, or the fitted number of anchors of each unit."""
    if isinstance(result, dict):
        return {str(k): float(v) for k, v in result.items()}
    counts = result
    if counts is None:
        counts = getattr(bottleneck, "num_anchors", None)
    if counts is None:
        return None
    counts = torch.as_tensor(counts).reshape(-1).tolist()
    return {f"dyga/k_unit{i}": float(k) for i, k in enumerate(counts)}
