"""The latent diffusion model (:class:`ldm_dis.models.ldm.LatentDiffusion`) as a training task: what
training adds to the model is here, the optimizers, the EMA of the U-Net, gradient averaging across
processes and DyGA's anchor refits; the loss, the units and sampling are the model's.

One extractor is the representation: DyGA's anchors are fitted on its features, and it is what
``encode`` scores, exports and draws with. As in the released code that is the live extractor (its EMA
is not kept); with ``train.ema_feature_extractor`` an EMA copy is kept and used for all of them.

Checkpoint modules (unchanged key layout): ``first_stage``, ``feature_extractor``, ``bottleneck``, ``unet``,
``ema_unet`` (and ``ema_feature_extractor``); ``LatentDiffusion.from_pretrained`` reads them directly.

No DDP wrapper: FactorQ's discriminator needs a second backward through modules already used in the
step, which DDP's reducer forbids. Gradients are averaged across processes explicitly instead
(:func:`average_gradients`, one flat all-reduce per optimizer) and BatchNorm buffers broadcast from the
main process (:func:`broadcast_buffers`), which is what DDP computes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Dict, Iterator, Optional

import numpy as np
import torch
from torch import nn

from ldm_dis.errors import UserInputError
from ldm_dis.models.ema import EMA
from ldm_dis.models.ldm import LatentDiffusion, eval_mode
from ldm_dis.models.vqgan import load_first_stage
from ldm_dis.training.distributed import average_gradients, broadcast_buffers
from ldm_dis.training.optim import adam
from ldm_dis.training.threads import BackgroundEncoder, OneThread
from ldm_dis.viz.grids import interleave_rows


class LDMTask:
    sample_caption = ("Rows of dataset images, each followed by the row DDIM generates from their units "
                      "(EMA weights).")

    def __init__(self, cfg, dataset=None, first_stage_path: Optional[str | Path] = None,
                 model: Optional[LatentDiffusion] = None):
        """``model``: train (or load weights into) this model; otherwise one is built from ``cfg.model``
        with the first stage of ``first_stage_path`` (default ``model.first_stage.checkpoint``)."""
        m = cfg.model
        self.cfg = cfg
        if model is None:
            first_stage_path = first_stage_path or m.first_stage.checkpoint
            if not first_stage_path:
                raise UserInputError("model.kind=ldm needs a trained VQ-GAN: set model.first_stage.checkpoint (ours or a taming .ckpt)")
            model = LatentDiffusion(m, cfg.data.resolution)
            model.first_stage = load_first_stage(first_stage_path, m.first_stage).eval().requires_grad_(False)
        self.model = model
        self.ema_unet = EMA(self.unet, cfg.train.ema_decay)
        self.ema_feature_extractor = EMA(self.feature_extractor, cfg.train.ema_decay) if cfg.train.ema_feature_extractor else None

        disc = {id(p) for p in self.bottleneck.discriminator_parameters()}
        extractor_params = list(self.feature_extractor.parameters())
        rest = [*self.unet.parameters(), *(p for p in self.bottleneck.parameters() if id(p) not in disc)]
        self.main_params = [*extractor_params, *rest]
        groups = [{"params": self.main_params}]
        if cfg.train.extractor_lr is not None:  # the logged lr (group 0) stays train.lr
            groups = [{"params": rest}, {"params": extractor_params, "lr": cfg.train.extractor_lr}]
        self.optimizer = adam(groups, cfg.train.lr, cfg.train.adam_betas, cfg.train.weight_decay,
                              decoupled_weight_decay=True)  # fused: one kernel per step, on a CPU too
        self.disc_params = list(self.bottleneck.discriminator_parameters())
        self.disc_optimizer = None
        if self.disc_params:
            section = m.bottleneck.get(m.bottleneck.kind, None)
            disc_lr = float(getattr(section, "disc_lr", cfg.train.lr))
            self.disc_optimizer = adam(self.disc_params, disc_lr, betas=(0.5, 0.9))
        warmup = cfg.train.warmup_steps
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup)) if warmup else None
        self.accelerator = None
        self._unet_forward = self.unet
        self._images_channels_last = False
        self._one_thread = OneThread(enabled=False)
        self._encoder: Optional[BackgroundEncoder] = None
        self._upcoming: Optional[torch.Tensor] = None

    # the model's parts, by the names the checkpoints and the trainer use
    first_stage = property(lambda self: self.model.first_stage)
    feature_extractor = property(lambda self: self.model.feature_extractor)
    bottleneck = property(lambda self: self.model.bottleneck)
    unet = property(lambda self: self.model.unet)
    noise_scheduler = property(lambda self: self.model.noise_scheduler)
    ddim_scheduler = property(lambda self: self.model.ddim_scheduler)
    latent_size = property(lambda self: self.model.latent_size)

    # ------------------------------------------------------------------------------ the protocol
    def modules(self) -> Dict[str, nn.Module]:
        modules = {
            "first_stage": self.first_stage,  # frozen; kept so the latent scale and the weights travel together
            "feature_extractor": self.feature_extractor,
            "bottleneck": self.bottleneck,
            "unet": self.unet,
            "ema_unet": self.ema_unet,
        }
        if self.ema_feature_extractor is not None:
            modules["ema_feature_extractor"] = self.ema_feature_extractor
        return modules

    @property
    def representation_extractor(self) -> nn.Module:
        """The extractor whose features DyGA fits and ``encode`` returns: the live one, or its EMA copy
        when ``train.ema_feature_extractor`` is set."""
        if self.ema_feature_extractor is not None:
            return self.ema_feature_extractor.shadow
        return self.feature_extractor

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
        # Channels-last convolutions: on CPU, oneDNN runs the first stage's and the extractor's 32x32-class
        # convolutions about 15% faster in that layout; the U-Net's maps (8x8 and smaller) gain nothing, so
        # it follows train.channels_last
        cpu = accelerator.device.type == "cpu"
        self._images_channels_last = self.cfg.train.channels_last or cpu
        channels_last = [self.unet, self.ema_unet] if self.cfg.train.channels_last else []
        if self._images_channels_last:
            channels_last += [self.first_stage, self.feature_extractor, self.ema_feature_extractor]
        for module in channels_last:
            if module is not None:
                module.to(memory_format=torch.channels_last)
        # on CPU: the U-Net, optimizer and EMA on one thread, the next batch's latents computed meanwhile
        # on the other core (see ldm_dis.training.threads)
        self._one_thread = OneThread(enabled=cpu)
        self._encoder = BackgroundEncoder(self._encode, accelerator.autocast) if cpu else None
        # accelerate's optimizer wrapper: fp16 loss scaling; the modules stay unwrapped (see module doc)
        self.optimizer = accelerator.prepare_optimizer(self.optimizer)
        if self.disc_optimizer is not None:
            self.disc_optimizer = accelerator.prepare_optimizer(self.disc_optimizer)
        if self.cfg.train.compile:
            self._unet_forward = torch.compile(self.unet)

    def batches(self, batches: Iterator) -> Iterator:
        """The trainer's batches, read one ahead on CPU so that the next batch's latents are computed while
        this step's U-Net runs; unchanged elsewhere."""
        return self._read_ahead(batches) if self._prefetching() else batches

    def _read_ahead(self, batches: Iterator) -> Iterator:
        upcoming = next(batches)
        while True:
            current, upcoming = upcoming, next(batches)
            self._upcoming = upcoming[0]
            yield current

    def _prefetching(self) -> bool:
        return self._encoder is not None and self._one_thread.active()

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        """Unscaled first-stage latents (B, C, h, w) float32, as :meth:`LatentDiffusion.latents` computes them."""
        if self._images_channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.first_stage.encode(images).float()

    def _latents(self, images: torch.Tensor, accelerator) -> torch.Tensor:
        """Diffusion-space latents of this step's images: computed during the previous step when read ahead."""
        z = self._encoder.result(images) if self._prefetching() else self._encode(images)
        return self.model.latents(images, accelerator.gather, accelerator.is_main_process, encoded=z)

    def training_step(self, images, factors, step, accelerator) -> Dict[str, torch.Tensor]:
        acc = accelerator
        for module in (self.feature_extractor, self.bottleneck, self.unet):
            module.train()
        # LatentDiffusion.loss, split so that each part runs on the cores that suit it (CPU)
        prefetch = self._prefetching()
        with acc.autocast():
            latents = self._latents(images, acc)
            if self._images_channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            units, out = self.model.units(images, step=step)
            with self._one_thread():
                if prefetch:
                    self._encoder.submit(self._upcoming)  # on the other core, while the U-Net runs here
                self._upcoming = None
                diff = self.model.denoising_loss(latents, units, unet=self._unet_forward)
            loss = diff + sum(out.losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self._one_thread.backward(loss, acc.backward, until=units)
        average_gradients(self.main_params, acc)
        if self.cfg.train.grad_clip:
            acc.clip_grad_norm_(self.main_params, self.cfg.train.grad_clip)
        with self._one_thread():
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
        with self._one_thread():
            self.ema_unet.update(self.unet)
            if self.ema_feature_extractor is not None:
                self.ema_feature_extractor.update(self.feature_extractor)
        return terms

    # --------------------------------------------------------------------------- DyGA anchor fits
    @torch.no_grad()
    def collect_features(self, trainer, rows: Optional[np.ndarray] = None) -> np.ndarray:
        """What the bottleneck acts on, for the training-set ``rows`` (all when None), from
        :attr:`representation_extractor` in eval mode: float32 (n, N, D) tokens or (n, N) scalars."""
        acc = trainer.accelerator
        indices = None if rows is None else np.asarray(rows).tolist()
        fx = self.representation_extractor
        chunks = []
        with eval_mode(fx):
            for images, _ in trainer.eval_loader(indices=indices):
                with acc.autocast():
                    values = fx.scalars(images)
                    if self.bottleneck.acts_on == "tokens":
                        values = fx.tokens(values)
                chunks.append(acc.gather_for_metrics(values.float().contiguous()).cpu())
        return torch.cat(chunks).numpy()

    def on_epoch_end(self, epoch: int, trainer) -> Optional[Dict[str, float]]:
        b = self.bottleneck
        should_fit = getattr(b, "should_fit", None)
        if should_fit is None or not should_fit(epoch):
            return None
        features = self.collect_features(trainer, b.fit_rows(len(trainer.dataset), epoch))
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
        """Units after the bottleneck from :attr:`representation_extractor` (the one DyGA's anchors were
        fitted on), eval mode: (B, N, D) float32."""
        with self._autocast():
            return self.model.encode(images, self.representation_extractor)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """DDIM samples of the EMA U-Net (``diffusion.sample_steps`` steps, x_T from ``generator``)
        conditioned on the images' units: (B, 3, R, R) in [-1, 1]."""
        with self._autocast():
            return self.model.reconstruct(images, generator, unet=self.ema_unet.shadow,
                                          extractor=self.representation_extractor).float()

    @torch.no_grad()
    def interchange_panels(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        """Latent interchange of the first half of ``images`` (sources) with the second (targets): EMA U-Net,
        the representation extractor, one x_T from ``seed``: panels (P, 1 + N, 3, R, R) in [-1, 1]."""
        p = len(images) // 2
        with self._autocast():
            units = self.encode(images[:2 * p])
            return self.model.interchange(units[:p], units[p:], self.model.noise(seed), unet=self.ema_unet.shadow,
                                          progress=False).float()

    @torch.no_grad()
    def sample_images(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """:meth:`reconstruct` interleaved by rows with the originals: (2B, 3, R, R) in [-1, 1]."""
        return interleave_rows(images, self.reconstruct(images, generator))

    def save_pretrained(self, folder: str | Path) -> Path:
        """The model as sampled (EMA U-Net, the representation extractor) as a ``save_pretrained`` folder."""
        return self.model.save_pretrained(folder, unet=self.ema_unet.shadow, extractor=self.representation_extractor,
                                          unet_weights="ema")

    def _autocast(self):
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
