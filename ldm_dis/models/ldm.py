"""The latent diffusion model of the paper as one object: the frozen VQ-GAN first stage, the feature
extractor, the bottleneck (DyGA, FactorQ, FSQ or none), the U-Net with Skip Dropout, and the noise
schedules (diffusers' DDPM for training, DDIM for sampling).

    model = LatentDiffusion.from_pretrained("runs/quickstart")   # EMA U-Net, eval mode, no dataset needed
    units = model.encode(images)                                 # images (B, 3, R, R) in [-1, 1] -> (B, N, D)
    panels = model.interchange(units[:3], units[3:], model.noise(seed=0))   # (3, 1 + N, 3, R, R)
    model.save_pretrained("exported/quickstart")                  # model_config.json + model.safetensors

One training step (:meth:`loss`):
    z0    = first_stage.encode(x) * scale                        (B, C, h, w), no gradient
    units = bottleneck(extractor(x))                            (B, N, D) (+ bottleneck losses)
    loss  = w_t |eps_theta(sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, t, units) - eps| + bottleneck losses

The EMA U-Net: a training checkpoint holds both the live U-Net (``unet.*``) and its EMA (``ema_unet.shadow.*``);
``from_pretrained(run, ema=True)`` (the default, what the paper samples with) loads the EMA weights into
:attr:`unet`, ``ema=False`` the live ones. A saved folder holds one U-Net and records which it is.
The representation (:meth:`encode`, what DyGA's anchors were fitted on) is the extractor of
``feature_extractor``; a run trained with ``train.ema_feature_extractor`` loads its EMA extractor there.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
from torch import nn

from ldm_dis.bottlenecks import BottleneckOutput, build_bottleneck
from ldm_dis.errors import CheckpointError
from ldm_dis.models.diffusion import (
    diffusion_loss, make_ddim_scheduler, make_train_scheduler, timestep_sampler, timestep_weights,
)
from ldm_dis.models.feature_extractor import FeatureExtractor
from ldm_dis.models.unet import UNet
from ldm_dis.models.vqgan import FirstStage
from ldm_dis.sampling.attention_maps import unit_attention_maps
from ldm_dis.sampling.ddim import ddim_sample
from ldm_dis.sampling.interchange import latent_interchange
from ldm_dis.sampling.interpolate import latent_interpolation

PARTS = ("first_stage", "feature_extractor", "bottleneck", "unet")


class LatentDiffusion(nn.Module):
    def __init__(self, model_cfg, resolution: int, num_channels: int = 3):
        """``model_cfg`` is the ``model`` section of a config (protocol already resolved); ``resolution``
        the image size R. Every part starts untrained; :meth:`from_pretrained` loads weights."""
        super().__init__()
        m = model_cfg
        self.model_cfg, self.resolution, self.num_channels = m, int(resolution), int(num_channels)
        n, d = m.encoder.num_units, m.encoder.unit_dim
        self.first_stage = FirstStage.from_config(m.first_stage).eval().requires_grad_(False)
        self.feature_extractor = FeatureExtractor.from_config(m.encoder, image_size=self.resolution)
        self.bottleneck = build_bottleneck(m.bottleneck, n, d)
        self.unet = UNet.from_config(m.unet, in_channels=m.first_stage.embed_dim, context_dim=d)
        self.noise_scheduler = make_train_scheduler(m.diffusion)
        self.ddim_scheduler = make_ddim_scheduler(m.diffusion)
        self.sample_t = timestep_sampler(m.diffusion)
        self.loss_weights = timestep_weights(self.noise_scheduler, m.diffusion.loss_weighting,
                                             m.diffusion.min_snr_gamma, m.diffusion.pdae_gamma)
        self.latent_size = self.resolution // self.first_stage.downsample_factor
        self.weights = {"unet": "untrained", "source": None}  # which U-Net the weights are, and their file

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def latent_shape(self) -> Tuple[int, int, int]:
        """(C, h, w) of a diffusion latent (and of x_T)."""
        return (self.model_cfg.first_stage.embed_dim, self.latent_size, self.latent_size)

    # ------------------------------------------------------------------------------------ training
    def units(self, images: torch.Tensor, extractor: Optional[nn.Module] = None,
              step: int = 0) -> Tuple[torch.Tensor, BottleneckOutput]:
        """images (B, 3, R, R) -> units after the bottleneck (B, N, D) and the bottleneck's output (its
        losses); ``extractor`` defaults to :attr:`feature_extractor`; ``step`` (optimizer steps done)
        drives the bottleneck's temperature schedule."""
        fx = extractor if extractor is not None else self.feature_extractor
        scalars = fx.scalars(images)  # (B, N)
        if self.bottleneck.acts_on == "scalars":
            out = self.bottleneck(scalars, step)
            return fx.tokens(out.value), out
        out = self.bottleneck(fx.tokens(scalars), step)  # (B, N, D)
        return out.value, out

    def train(self, mode: bool = True) -> "LatentDiffusion":
        super().train(mode)
        self.first_stage.eval()  # frozen: never trained with the rest
        return self

    @torch.no_grad()
    def latents(self, images: torch.Tensor, gather: Optional[Callable] = None, announce: bool = True,
                encoded: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Diffusion-space latents (B, C, h, w). With ``scale_by_std``, the first call measures the latent
        scale on ``gather(latents)`` (the batch of every process) and stores it in the first stage.
        ``encoded``: the first stage's (unscaled) latents of ``images`` when they were computed already."""
        fs = self.first_stage
        z = fs.encode(images).float() if encoded is None else encoded
        if self.model_cfg.diffusion.scale_by_std and not bool(fs.latent_scale_set):
            scale = fs.set_latent_scale_from(gather(z) if gather is not None else z)
            if announce:
                print(f"latent scale set to {scale:.5g} (1 / std of the first batch's latents)")
        return z * fs.latent_scale

    def loss(self, images: torch.Tensor, unet: Optional[nn.Module] = None, gather: Optional[Callable] = None,
             generator: Optional[torch.Generator] = None, announce: bool = True, step: int = 0,
             ) -> Tuple[torch.Tensor, torch.Tensor, BottleneckOutput]:
        """(total loss, diffusion loss, bottleneck output) of a batch (B, 3, R, R) in [-1, 1], in the
        modules' current modes. ``unet`` replaces :attr:`unet` in the forward (a compiled or EMA copy);
        ``step``: optimizer steps done (FactorQ's Gumbel temperature)."""
        latents = self.latents(images, gather, announce)
        units, out = self.units(images, step=step)
        diff = self.denoising_loss(latents, units, unet=unet, generator=generator)
        return diff + sum(out.losses.values()), diff, out

    def denoising_loss(self, latents: torch.Tensor, units: torch.Tensor, unet: Optional[nn.Module] = None,
                       generator: Optional[torch.Generator] = None, t: Optional[int] = None,
                       weighted: bool = True) -> torch.Tensor:
        """The diffusion loss of latents (B, C, h, w) given units (B, N, D): t drawn as in training, or
        ``t`` for every sample; noise from ``generator`` (on the latents' device); ``weighted`` applies
        ``model.diffusion.loss_weighting``."""
        sample_t = self.sample_t
        if t is not None:
            sample_t = lambda b, generator=None, device=None: torch.full((b,), int(t), dtype=torch.long, device=device)  # noqa: E731
        return diffusion_loss(unet if unet is not None else self.unet, self.noise_scheduler, latents, units,
                              self.model_cfg.diffusion.loss, generator=generator, sample_t=sample_t,
                              weights=self.loss_weights if weighted else None)

    # ------------------------------------------------------------------------------ representation
    @torch.no_grad()
    def encode(self, images: torch.Tensor, extractor: Optional[nn.Module] = None) -> torch.Tensor:
        """The scored representation: units (B, N, D) float32 of images (B, 3, R, R) in [-1, 1], extractor
        and bottleneck in eval mode (DyGA aligns with its most responsible anchor)."""
        fx = extractor if extractor is not None else self.feature_extractor
        with eval_mode(fx, self.bottleneck):
            units, _ = self.units(images, fx)
        return units.float()

    # ------------------------------------------------------------------------------------ sampling
    def noise(self, seed: int, count: Optional[int] = None) -> torch.Tensor:
        """x_T drawn on the CPU from ``seed`` (the same on every device): (C, h, w), or (count, C, h, w)."""
        shape = self.latent_shape if count is None else (count, *self.latent_shape)
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(self.device)

    @torch.no_grad()
    def sample(self, units: torch.Tensor, x_T: torch.Tensor, steps: Optional[int] = None, eta: Optional[float] = None,
               generator: Optional[torch.Generator] = None, unet: Optional[nn.Module] = None) -> torch.Tensor:
        """DDIM: units (B, N, D), x_T (B, C, h, w) -> diffusion latents x_0 (B, C, h, w). ``steps`` and
        ``eta`` default to ``model.diffusion.sample_steps`` / ``eta``; ``generator`` is used when eta > 0."""
        d = self.model_cfg.diffusion
        steps = d.sample_steps if steps is None else steps
        eta = d.eta if eta is None else eta
        net = unet if unet is not None else self.unet
        with eval_mode(net):
            return ddim_sample(net, self.ddim_scheduler, units, x_T, steps, eta, generator)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Diffusion latents (B, C, h, w) -> images (B, 3, R, R) in [-1, 1] (quantized, then decoded)."""
        return self.first_stage.decode_scaled(latents.float()).float().clamp(-1, 1)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, generator: torch.Generator, unet: Optional[nn.Module] = None,
                    extractor: Optional[nn.Module] = None) -> torch.Tensor:
        """DDIM samples conditioned on the images' units, x_T from ``generator``: (B, 3, R, R) in [-1, 1]."""
        units = self.encode(images, extractor)
        x_T = torch.randn((images.shape[0], *self.latent_shape), generator=generator,
                          device=generator.device).to(images.device)
        return self.decode(self.sample(units, x_T, generator=generator, unet=unet))

    @torch.no_grad()
    def interchange(self, source_units: torch.Tensor, target_units: torch.Tensor, x_T: torch.Tensor,
                    steps: Optional[int] = None, eta: float = 0.0, batch_size: int = 64, progress: bool = True,
                    unet: Optional[nn.Module] = None) -> torch.Tensor:
        """Latent interchange (:func:`ldm_dis.sampling.interchange.latent_interchange`): units (B, N, D) x 2,
        x_T (C, h, w) shared by every panel -> panels (B, 1 + N, 3, R, R). ``unet`` replaces :attr:`unet`."""
        net = unet if unet is not None else self.unet
        with eval_mode(net):
            return latent_interchange(net, self.ddim_scheduler, self.decode, source_units, target_units, x_T,
                                      steps=steps or self.model_cfg.diffusion.sample_steps, eta=eta,
                                      batch_size=batch_size, progress=progress)

    @torch.no_grad()
    def interpolate(self, first_units: torch.Tensor, second_units: torch.Tensor, x_T: torch.Tensor, num: int = 8,
                    steps: Optional[int] = None, eta: float = 0.0, batch_size: int = 64, progress: bool = True) -> torch.Tensor:
        """All units interpolated linearly from ``first_units`` to ``second_units`` (B, N, D) in ``num``
        panels, one x_T (C, h, w) for all (:func:`ldm_dis.sampling.interpolate.latent_interpolation`)."""
        with eval_mode(self.unet):
            return latent_interpolation(self.unet, self.ddim_scheduler, self.decode, first_units, second_units, x_T,
                                        num=num, steps=steps or self.model_cfg.diffusion.sample_steps, eta=eta,
                                        batch_size=batch_size, progress=progress)

    @torch.no_grad()
    def attention_maps(self, units: torch.Tensor, x_T: torch.Tensor, steps: Optional[int] = None, eta: float = 0.0,
                       progress: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-unit cross-attention while generating from units (B, N, D) and x_T (B, C, h, w):
        (images (B, 3, R, R), maps (B, N, R, R), each pixel summing to 1 over units)."""
        with eval_mode(self.unet):
            latents, maps = unit_attention_maps(self.unet, self.ddim_scheduler, units, x_T,
                                                out_size=(self.resolution, self.resolution),
                                                steps=steps or self.model_cfg.diffusion.sample_steps, eta=eta,
                                                progress=progress)
        return self.decode(latents), maps

    # ------------------------------------------------------------------------------ save and load
    def save_pretrained(self, folder: str | Path, unet: Optional[nn.Module] = None, extractor: Optional[nn.Module] = None,
                        unet_weights: Optional[str] = None) -> Path:
        """Write ``folder/model_config.json`` and ``folder/model.safetensors`` (atomically). ``unet`` /
        ``extractor`` replace the model's own in the file (the training task passes its EMA U-Net) and
        ``unet_weights`` says which they are ("ema" or "live")."""
        from ldm_dis.config.loading import config_to_dict
        from ldm_dis.models.pretrained import WEIGHTS_NAME, write_model_config
        from ldm_dis.models.weights import write_tensors

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        replaced = {"unet": unet, "feature_extractor": extractor}
        tensors = {}
        for part in PARTS:
            module = replaced.get(part) or getattr(self, part)
            tensors.update({f"{part}.{k}": v for k, v in module.state_dict().items()})
        write_tensors(folder / WEIGHTS_NAME, tensors)
        write_model_config(folder, {"kind": "ldm", "resolution": self.resolution, "num_channels": self.num_channels,
                                    "unet_weights": unet_weights or self.weights["unet"],
                                    "model": config_to_dict(self.model_cfg)})
        return folder

    @classmethod
    def from_pretrained(cls, path: str | Path, ema: Optional[bool] = None, device=None) -> "LatentDiffusion":
        """A model in eval mode from a ``save_pretrained`` folder, a run folder (its newest checkpoint), a
        checkpoint folder or a file in one; no dataset, optimizer or Accelerator. ``ema``: for a training
        checkpoint, load the EMA U-Net (True, the default) or the live one (False) into :attr:`unet`; for a
        saved folder, None or the kind it holds. ``device`` defaults to the GPU when there is one."""
        from ldm_dis.models.pretrained import WEIGHTS_NAME, is_saved_model, model_section, read_model_config
        from ldm_dis.models.weights import load_strict, read_tensors, with_prefix

        if is_saved_model(path):
            record = read_model_config(path)
            if record["kind"] != "ldm":
                raise CheckpointError(f"{path} holds a {record['kind']!r} model, not a latent diffusion model")
            held = record.get("unet_weights")
            if ema is not None and held != ("ema" if ema else "live"):
                raise CheckpointError(f"{path} holds the {held} U-Net only; load it with ema=None")
            model = cls(model_section(record, str(path)), record["resolution"], record.get("num_channels", 3))
            load_strict(model, read_tensors(Path(path) / WEIGHTS_NAME), f"{Path(path) / WEIGHTS_NAME}")
            model.weights = {"unet": held, "source": str(path)}
        else:
            from ldm_dis.config.protocol import resolve_protocol
            from ldm_dis.runs import MODEL_FILE, load_run_config, resolve_checkpoint

            folder = resolve_checkpoint(path)
            cfg = resolve_protocol(load_run_config(folder))
            if cfg.model.kind != "ldm":
                raise CheckpointError(f"{folder} is a model.kind={cfg.model.kind!r} run, not a latent diffusion model")
            model = cls(cfg.model, cfg.data.resolution)
            tensors = read_tensors(folder / MODEL_FILE)
            ema = True if ema is None else ema
            sources = {"first_stage": "first_stage.", "bottleneck": "bottleneck.",
                       "unet": "ema_unet.shadow." if ema else "unet.",
                       "feature_extractor": "ema_feature_extractor.shadow." if cfg.train.ema_feature_extractor
                       else "feature_extractor."}
            known = {"first_stage", "feature_extractor", "bottleneck", "unet", "ema_unet"}
            known |= {"ema_feature_extractor"} if cfg.train.ema_feature_extractor else set()
            strangers = sorted({k.split(".", 1)[0] for k in tensors} - known)
            if strangers:
                raise CheckpointError(f"{folder / MODEL_FILE}: modules {strangers} are not part of this run's model "
                                      f"(config.yaml: train.ema_feature_extractor={cfg.train.ema_feature_extractor})")
            for part, prefix in sources.items():
                load_strict(getattr(model, part), with_prefix(tensors, prefix), f"{folder / MODEL_FILE} ({prefix}*)")
            model.weights = {"unet": "ema" if ema else "live", "source": str(folder)}
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return model.to(device).eval()


@contextlib.contextmanager
def eval_mode(*modules: nn.Module):
    """Modules in eval mode (BatchNorm running statistics, no dropout, DyGA's argmax), modes restored after."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
