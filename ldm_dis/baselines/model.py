"""A baseline = shared encoder -> latent layer -> shared decoder (+ a TC discriminator for the Factor* kinds).

The kind table below is the whole difference between the ten baselines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch
from torch import nn

from ldm_dis.baselines import latents, losses
from ldm_dis.baselines.networks import ConvDecoder, ConvEncoder


@dataclass(frozen=True)
class Kind:
    latent: str  # name of the class in ldm_dis.baselines.latents
    tc_discriminator: bool = False  # FactorVAE-style density-ratio TC term
    options: tuple = ()  # extra keyword arguments of the latent, as (name, value) pairs


KINDS: Dict[str, Kind] = {
    "ae": Kind("Deterministic"),
    "bioae": Kind("Deterministic", options=(("bioae", True),)),
    "betavae": Kind("Gaussian"),
    "betatcvae": Kind("Gaussian", options=(("objective", "tcvae"),)),
    "factorvae": Kind("Gaussian", tc_discriminator=True),
    "qlae": Kind("PerDimQuant"),
    "qvae": Kind("GlobalScalar"),
    "factorqvae": Kind("GlobalScalar", tc_discriminator=True),
    "dvae": Kind("Categorical"),
    "factordvae": Kind("Categorical", tc_discriminator=True),
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
        if kind not in KINDS:
            raise ValueError(f"unknown baseline kind {kind!r}; expected one of {sorted(KINDS)}")
        if cfg.likelihood not in losses.LIKELIHOODS:
            raise ValueError(f"model.baseline.likelihood must be one of {losses.LIKELIHOODS}, got {cfg.likelihood!r}")
        self.kind, self.likelihood, self.latent_dim = kind, cfg.likelihood, latent_dim
        spec = KINDS[kind]
        options = dict(spec.options)
        if spec.latent == "Gaussian":
            options.update(dataset_size=dataset_size, pixels=num_channels * resolution * resolution)
        self.latent = getattr(latents, spec.latent)(cfg, latent_dim, **options)
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
