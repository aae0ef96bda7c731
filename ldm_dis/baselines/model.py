"""A baseline = shared encoder -> latent layer -> shared decoder (+ a TC discriminator for the Factor* kinds).

The kind table below is the whole difference between the ten baselines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Type

import torch
from torch import nn

from ldm_dis.baselines import latents, losses
from ldm_dis.baselines.networks import ConvDecoder, ConvEncoder
from ldm_dis.registry import lookup


@dataclass(frozen=True)
class Kind:
    latent: Type[nn.Module]  # a latent layer of ldm_dis.baselines.latents
    tc_discriminator: bool = False  # FactorVAE-style density-ratio TC term
    options: tuple = ()  # extra keyword arguments of the latent, as (name, value) pairs


# model.kind -> its latent layer and options
KINDS: Dict[str, Kind] = {
    "ae": Kind(latents.Deterministic),
    "bioae": Kind(latents.Deterministic, options=(("bioae", True),)),
    "betavae": Kind(latents.Gaussian),
    "betatcvae": Kind(latents.Gaussian, options=(("objective", "tcvae"),)),
    "factorvae": Kind(latents.Gaussian, tc_discriminator=True),
    "qlae": Kind(latents.PerDimQuant),
    "qvae": Kind(latents.GlobalScalar),
    "factorqvae": Kind(latents.GlobalScalar, tc_discriminator=True),
    "dvae": Kind(latents.Categorical),
    "factordvae": Kind(latents.Categorical, tc_discriminator=True),
}


@dataclass
class BaselineOutput:
    decoded: torch.Tensor  # (B, C, H, W) pixel means (gaussian) or logits (bernoulli)
    latent: latents.LatentOutput


class BaselineModel(nn.Module):
    """Images (B, C, res, res) in [-1, 1] -> reconstruction and latent terms.

    ``cfg`` is ``model.baseline``; ``dataset_size`` is only used by beta-TCVAE's MWS estimator."""

    def __init__(self, kind: str, cfg, num_channels: int, resolution: int, latent_dim: int, dataset_size: int = 1):
        super().__init__()
        spec = lookup(KINDS, "model.kind", kind)
        lookup(dict.fromkeys(losses.LIKELIHOODS), "model.baseline.likelihood", cfg.likelihood)
        self.kind, self.likelihood, self.latent_dim = kind, cfg.likelihood, latent_dim
        self.baseline_cfg, self.num_channels, self.resolution = cfg, int(num_channels), int(resolution)
        self.dataset_size = int(dataset_size)
        options = dict(spec.options)
        if spec.latent is latents.Gaussian:
            options.update(dataset_size=dataset_size, pixels=num_channels * resolution * resolution)
        self.latent = spec.latent(cfg, latent_dim, **options)
        self.encoder = ConvEncoder(num_channels, resolution, self.latent.head_dim, cfg.base_channels, cfg.hidden)
        self.decoder = ConvDecoder(latent_dim, num_channels, resolution, cfg.base_channels, cfg.hidden)

    def forward(self, images: torch.Tensor, step: int = 0) -> BaselineOutput:
        lat = self.latent(self.encoder(images), step)
        return BaselineOutput(self.decoder(lat.z), lat)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Deterministic codes (B, d): posterior mean / nearest code / argmax code. Call in eval mode."""
        return self.latent(self.encoder(images), 0).code

    def code_values(self, dim: int):
        """The values latent ``dim`` can take (a 1-D tensor), or None for a continuous latent."""
        if isinstance(self.latent, latents.PerDimQuant):
            return self.latent.codebooks[dim].detach()
        if isinstance(self.latent, (latents.GlobalScalar, latents.Categorical)):
            return self.latent.codebook.values.detach()
        return None

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (B, d) -> images (B, C, H, W) in [-1, 1]."""
        return losses.decoded_to_images(self.decoder(z), self.likelihood)

    # ------------------------------------------------------------------------------ save and load
    def save_pretrained(self, folder: str | Path) -> Path:
        """``folder/model_config.json`` (kind, image shape, latent size, ``model.baseline``) and
        ``folder/model.safetensors`` (this model's state dict), written atomically."""
        from ldm_dis.config.loading import config_to_dict
        from ldm_dis.models.pretrained import WEIGHTS_NAME, write_model_config
        from ldm_dis.models.weights import write_tensors

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_tensors(folder / WEIGHTS_NAME, self.state_dict())
        write_model_config(folder, {"kind": self.kind, "resolution": self.resolution, "num_channels": self.num_channels,
                                    "latent_dim": self.latent_dim, "dataset_size": self.dataset_size,
                                    "model": {"baseline": config_to_dict(self.baseline_cfg)}})
        return folder

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> "BaselineModel":
        """A model in eval mode from a ``save_pretrained`` folder, a run folder (its newest checkpoint), a
        checkpoint folder or a file in one; no dataset or optimizer. From a run, the latent size and image
        channels are read from the weights (the config may leave ``latent_dim`` to the dataset)."""
        from ldm_dis.errors import CheckpointError
        from ldm_dis.models.pretrained import WEIGHTS_NAME, is_saved_model, model_section, read_model_config
        from ldm_dis.models.weights import load_strict, read_tensors, with_prefix

        if is_saved_model(path):
            record = read_model_config(path)
            if record["kind"] not in KINDS:
                raise CheckpointError(f"{path} holds a {record['kind']!r} model, not a VAE-family baseline")
            section = model_section(record, str(path)).baseline
            model = cls(record["kind"], section, record["num_channels"], record["resolution"], record["latent_dim"],
                        record.get("dataset_size", 1))
            file, state = Path(path) / WEIGHTS_NAME, read_tensors(Path(path) / WEIGHTS_NAME)
        else:
            from ldm_dis.runs import MODEL_FILE, load_run_config, resolve_checkpoint

            folder = resolve_checkpoint(path)
            cfg = load_run_config(folder)
            if cfg.model.kind not in KINDS:
                raise CheckpointError(f"{folder} is a model.kind={cfg.model.kind!r} run, not a VAE-family baseline")
            file = folder / MODEL_FILE
            state = with_prefix(read_tensors(file), "model.")
            try:
                latent_dim = state["decoder.fc.0.weight"].shape[1]
                last = max(int(k.split(".")[2]) for k in state if k.startswith("decoder.deconv.") and k.endswith(".weight"))
                channels = state[f"decoder.deconv.{last}.weight"].shape[1]
            except (KeyError, ValueError):
                raise CheckpointError(f"{file}: no baseline decoder under model.decoder.*") from None
            model = cls(cfg.model.kind, cfg.model.baseline, channels, cfg.data.resolution, latent_dim)
        load_strict(model, state, str(file))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return model.to(device).eval()

