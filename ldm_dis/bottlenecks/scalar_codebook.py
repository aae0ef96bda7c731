"""One global codebook of K scalars with a stochastic categorical posterior (FactorQVAE, Baykal et al. 2024, Sec. 4).

Shared by the FactorQ bottleneck of the diffusion model and the QVAE / FactorQVAE / dVAE / FactordVAE
baselines: one implementation of the posterior, the Gumbel-softmax relaxation, the KL to the uniform
prior and the temperature schedule.

For N latent scalars z (B, N) the posterior over the K codes is q = softmax(-d) with d_nk = (z_n - m_k)^2
(QVAE) or softmax(logits) for logits given by an encoder (dVAE). Training draws a soft one-hot sample
y ~ GumbelSoftmax(logits, tau) and uses z_q = y @ m; evaluation takes the most probable code (the nearest
code for distance logits), so the representation is deterministic.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def gumbel_temperature(step: int, decay: float, tau_min: float = 0.0) -> float:
    """tau = exp(-decay * step) (FactorQVAE appendix A), floored at ``tau_min``."""
    return max(math.exp(-decay * step), tau_min)


def gumbel_softmax_sample(logits: torch.Tensor, tau: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Soft one-hot sample softmax((logits + g) / tau), g ~ Gumbel(0, 1). logits (..., K) -> (..., K).

    Written out (not F.gumbel_softmax) so that a ``generator`` makes the draw reproducible."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    neg_log_u = (-torch.log(u.clamp_min(1e-10))).clamp_min(1e-10)  # clamps avoid log(0) at u = 0 or 1
    gumbel = -torch.log(neg_log_u)
    return F.softmax((logits + gumbel) / tau, dim=-1)


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits) || uniform over K) per latent, in nats. logits (..., K) -> (...,).

    sum_k q_k log(q_k K); zero exactly when q is uniform, log K when q is one-hot."""
    log_q = F.log_softmax(logits, dim=-1)
    return (log_q.exp() * (log_q + math.log(logits.shape[-1]))).sum(-1)


class ScalarCodebook(nn.Module):
    """K learnable scalars m (K,), initialized N(0, 1) as the FactorQVAE code's ``nn.Embedding``."""

    def __init__(self, size: int = 64):
        super().__init__()
        self.values = nn.Parameter(torch.randn(size))

    @property
    def size(self) -> int:
        return self.values.shape[0]

    def distance_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Logits -d of the stochastic posterior: z (B, N) -> (B, N, K) with d_nk = (z_n - m_k)^2."""
        return -(z.unsqueeze(-1) - self.values) ** 2

    def lookup(self, one_hot: torch.Tensor) -> torch.Tensor:
        """(Soft) one-hot (B, N, K) -> quantized scalars (B, N) = one_hot @ m."""
        return one_hot @ self.values

    def quantize(
        self, logits: torch.Tensor, tau: float, stochastic: bool, generator: Optional[torch.Generator] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, N, K) -> (one_hot (B, N, K), z_q (B, N)).

        ``stochastic``: a Gumbel-softmax soft sample (differentiable in the logits and in m); otherwise
        the hard one-hot of the most probable code (gradient only into m)."""
        if stochastic:
            one_hot = gumbel_softmax_sample(logits, tau, generator)
        else:
            one_hot = F.one_hot(logits.argmax(-1), self.size).to(logits.dtype)
        return one_hot, self.lookup(one_hot)
