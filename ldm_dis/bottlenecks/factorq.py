"""FactorQ: the FactorQVAE latent (Baykal et al. 2024, Disentanglement with Factor Quantized VAEs) as a bottleneck on the N scalars of the feature extractor.

Each scalar z_n is quantized with one global codebook of K scalars through the stochastic posterior
q = softmax(-(z_n - m_k)^2): a Gumbel-softmax soft one-hot during training, the nearest code in
evaluation. The objective gains beta * KL(q || uniform) and gamma * TC, TC estimated by a discriminator
on the (B, N, K) one-hot blocks permuted across the batch. No published system puts FactorQ inside a
diffusion model: the quantized scalars feed the per-unit MLPs that build the tokens.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from ldm_dis.bottlenecks.base import Bottleneck, BottleneckOutput
from ldm_dis.bottlenecks.scalar_codebook import ScalarCodebook, gumbel_temperature, kl_to_uniform
from ldm_dis.bottlenecks.total_correlation import TCDiscriminator, batch_discriminator_loss, tc_estimate


class FactorQ(Bottleneck):
    acts_on = "scalars"

    def __init__(self, num_units: int, codebook_size: int = 64, beta: float = 1e-3, gamma: float = 1e-4,
                 tau_decay: float = 1e-5, tau_min: float = 0.0, disc_hidden: int = 1000, disc_layers: int = 6):
        """N scalars, one codebook of ``codebook_size`` scalars; ``beta`` weighs KL(q || uniform), ``gamma``
        the TC estimate; tau = max(exp(-tau_decay * step), tau_min); the discriminator has ``disc_layers``
        linear layers of width ``disc_hidden``."""
        super().__init__()
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.tau_decay = float(tau_decay)
        self.tau_min = float(tau_min)
        self.codebook = ScalarCodebook(codebook_size)
        self.discriminator = TCDiscriminator(num_units * codebook_size, disc_hidden, disc_layers)

    @classmethod
    def from_config(cls, cfg, num_units: int, unit_dim: int) -> "FactorQ":
        """``cfg`` is ``model.bottleneck.factorq``; its ``disc_lr`` is the training task's (the optimizer)."""
        return cls(num_units, cfg.codebook_size, cfg.beta, cfg.gamma, cfg.tau_decay, cfg.tau_min,
                   cfg.disc_hidden, cfg.disc_layers)

    def tau(self, step: int) -> float:
        """The Gumbel-softmax temperature after ``step`` optimizer steps (a function of it: nothing to save)."""
        return gumbel_temperature(step, self.tau_decay, self.tau_min)

    def discriminator_parameters(self) -> List[nn.Parameter]:
        return list(self.discriminator.parameters())

    def forward(self, x: torch.Tensor, step: int = 0) -> BottleneckOutput:
        """x (B, N) scalars -> z_q (B, N). Training: losses {kl, tc} and disc_losses {tc_disc}, a soft
        one-hot at the temperature of ``step``.

        The model's ``tc`` term also leaves gradients in the discriminator: zero them before the
        discriminator's own backward/step (``tc_disc`` is computed on detached codes)."""
        logits = self.codebook.distance_logits(x)  # (B, N, K)
        one_hot, z_q = self.codebook.quantize(logits, self.tau(step), stochastic=self.training)
        if not self.training:
            return BottleneckOutput(z_q)
        kl = kl_to_uniform(logits).mean()  # mean over batch and units, as the FactorQVAE code
        tc = tc_estimate(self.discriminator, one_hot)
        disc = batch_discriminator_loss(self.discriminator, one_hot)
        return BottleneckOutput(z_q, losses={"kl": self.beta * kl, "tc": self.gamma * tc}, disc_losses={"tc_disc": disc})
