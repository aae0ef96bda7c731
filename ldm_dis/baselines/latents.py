"""The latent layer of each baseline: what sits between the shared encoder head and the decoder.

Every latent takes the encoder head's output ``h`` and returns a :class:`LatentOutput`: the decoder's
input ``z`` (B, d), the model's extra loss terms (already weighted, per-batch scalars), the blocks the
total-correlation discriminator looks at (or None), and the deterministic code for the metrics.

| latent        | head size | train                       | eval / code                  | used by |
| ------------- | --------- | --------------------------- | ---------------------------- | ------- |
| Deterministic | d         | z = h                       | h                            | ae, bioae |
| Gaussian      | 2d        | z = mu + sigma * eps        | mu                           | betavae, betatcvae, factorvae |
| PerDimQuant   | d         | nearest of 10 values, ST    | nearest value                | qlae |
| GlobalScalar  | d         | Gumbel over K shared codes  | nearest code value           | qvae, factorqvae |
| Categorical   | d * K     | Gumbel over logits          | codebook[argmax logits]      | dvae, factordvae |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
from torch import nn

from ldm_dis.baselines import losses
from ldm_dis.bottlenecks.scalar_codebook import ScalarCodebook, gumbel_temperature, kl_to_uniform


@dataclass
class LatentOutput:
    z: torch.Tensor  # decoder input (B, d)
    code: torch.Tensor  # deterministic representation (B, d) for the metrics (valid in eval mode)
    terms: Dict[str, torch.Tensor] = field(default_factory=dict)  # weighted loss terms (scalars)
    tc_blocks: Optional[torch.Tensor] = None  # (B, d) or (B, d, K) blocks for the TC discriminator


class Deterministic(nn.Module):
    """Plain autoencoder latent; with ``bioae`` the BioAE non-negativity and activity penalties."""

    def __init__(self, cfg, dim: int, bioae: bool = False):
        super().__init__()
        self.dim, self.head_dim, self.bioae = dim, dim, bioae
        self.nonneg, self.activity = float(cfg.bioae_nonneg), float(cfg.bioae_activity)

    def forward(self, h: torch.Tensor, step: int) -> LatentOutput:
        terms = {}
        if self.bioae:
            terms["nonneg"] = self.nonneg * losses.bioae_nonnegativity(h).mean()
            terms["activity"] = self.activity * losses.bioae_activity(h).mean()
        return LatentOutput(z=h, code=h, terms=terms)


class Gaussian(nn.Module):
    """Diagonal Gaussian posterior, standard normal prior.

    ``objective``: "kl" (beta-VAE, FactorVAE: beta * KL) or "tcvae": (alpha * MI + tc_weight * TC +
    beta * dimension-wise KL) / ``pixels``, estimated with minibatch-weighted sampling over
    ``dataset_size`` images. The division by the number of pixel values is the QLAE code's (its
    reconstruction is a per-pixel mean too), so that the published alpha = beta = 1, tc_weight = 3 apply."""

    def __init__(self, cfg, dim: int, objective: str = "kl", dataset_size: int = 1, pixels: int = 1):
        super().__init__()
        self.dim, self.head_dim = dim, 2 * dim
        self.objective, self.dataset_size, self.pixels = objective, int(dataset_size), int(pixels)
        self.beta, self.alpha, self.tc_weight = float(cfg.beta), float(cfg.alpha), float(cfg.tc_weight)

    def forward(self, h: torch.Tensor, step: int) -> LatentOutput:
        mu, logvar = h.chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        if self.objective == "tcvae":
            mi, tc, dwkl = losses.tc_decomposition_mws(z, mu, logvar, self.dataset_size)
            scale = 1.0 / self.pixels
            terms = {
                "mi": scale * self.alpha * mi.mean(),
                "tc": scale * self.tc_weight * tc.mean(),
                "dwkl": scale * self.beta * dwkl.mean(),
            }
        else:
            terms = {"kl": self.beta * losses.gaussian_kl(mu, logvar).mean()}
        return LatentOutput(z=z, code=mu, terms=terms, tc_blocks=z)


class PerDimQuant(nn.Module):
    """QLAE latent (Hsu et al. 2023): dimension i has its own codebook of ``values`` learnable scalars,
    initialized to linspace(-0.5, 0.5); z_q is the nearest value, gradients pass straight through.

    Terms: quantization ||sg(z) - z_q||^2 (moves the codebook) and commitment ||z - sg(z_q)||^2."""

    def __init__(self, cfg, dim: int):
        super().__init__()
        self.dim, self.head_dim = dim, dim
        self.codebooks = nn.Parameter(torch.linspace(-0.5, 0.5, cfg.qlae_values).repeat(dim, 1))  # (d, V)
        self.quant_weight, self.commit_weight = float(cfg.quant_weight), float(cfg.commit_weight)

    def nearest(self, h: torch.Tensor) -> torch.Tensor:
        """(B, d) -> nearest codebook value per dimension (B, d); differentiable in the codebooks."""
        index = (h.unsqueeze(-1) - self.codebooks).abs().argmin(-1)  # (B, d)
        return torch.gather(self.codebooks.expand(h.shape[0], -1, -1), 2, index.unsqueeze(-1)).squeeze(-1)

    def forward(self, h: torch.Tensor, step: int) -> LatentOutput:
        z_q = self.nearest(h)
        terms = {
            "quant": self.quant_weight * ((h.detach() - z_q) ** 2).mean(),
            "commit": self.commit_weight * ((h - z_q.detach()) ** 2).mean(),
        }
        z = h + (z_q - h).detach()  # straight-through: forward z_q, gradient of the identity
        return LatentOutput(z=z, code=z_q.detach(), terms=terms)


class GlobalScalar(nn.Module):
    """QVAE / FactorQVAE latent: d scalars quantized with one global codebook of K scalars through the
    stochastic posterior softmax(-(z - m)^2) (shared with the FactorQ bottleneck). Term: beta * KL(q || U)."""

    def __init__(self, cfg, dim: int):
        super().__init__()
        self.dim, self.head_dim = dim, dim
        self.codebook = ScalarCodebook(cfg.codebook_size)
        self.beta, self.tau_decay = float(cfg.beta), float(cfg.tau_decay)

    def forward(self, h: torch.Tensor, step: int) -> LatentOutput:
        logits = self.codebook.distance_logits(h)  # (B, d, K)
        tau = gumbel_temperature(step, self.tau_decay)
        one_hot, z_q = self.codebook.quantize(logits, tau, stochastic=self.training)
        terms = {"kl": self.beta * kl_to_uniform(logits).mean()}
        return LatentOutput(z=z_q, code=z_q, terms=terms, tc_blocks=one_hot)


class Categorical(nn.Module):
    """dVAE / FactordVAE latent: the encoder gives logits (B, d, K) of a categorical posterior over a
    codebook of K scalars; training decodes a Gumbel-softmax soft sample, evaluation the argmax code.
    Term: beta * KL(softmax(logits) || U)."""

    def __init__(self, cfg, dim: int):
        super().__init__()
        self.dim, self.size = dim, int(cfg.codebook_size)
        self.head_dim = dim * self.size
        self.codebook = ScalarCodebook(self.size)
        self.beta, self.tau_decay = float(cfg.beta), float(cfg.tau_decay)

    def forward(self, h: torch.Tensor, step: int) -> LatentOutput:
        logits = h.view(h.shape[0], self.dim, self.size)
        tau = gumbel_temperature(step, self.tau_decay)
        one_hot, z_q = self.codebook.quantize(logits, tau, stochastic=self.training)
        terms = {"kl": self.beta * kl_to_uniform(logits).mean()}
        return LatentOutput(z=z_q, code=z_q, terms=terms, tc_blocks=one_hot)
