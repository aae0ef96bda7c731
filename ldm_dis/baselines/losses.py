"""Loss terms of the VAE family, each as its paper defines it. All return per-sample values (B,) unless
stated, so that callers choose the reduction; ``z`` is (B, d).

Reconstruction is computed in [0, 1] pixel scale, as a per-element mean (the convention of both
reference codes, so that their published weights keep their meaning):
- gaussian: mean squared error of the decoder's pixel means (FactorQVAE code: F.mse_loss on
  [-0.5, 0.5] pixels, the same scale);
- bernoulli: binary cross-entropy with logits (QLAE code, optax.sigmoid_binary_cross_entropy).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LIKELIHOODS = ("gaussian", "bernoulli")


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> [0, 1]."""
    return (images + 1) / 2


def reconstruction_loss(decoded: torch.Tensor, images: torch.Tensor, likelihood: str) -> torch.Tensor:
    """decoded (B, C, H, W) (pixel means or logits), images (B, C, H, W) in [-1, 1] -> (B,) per-element mean."""
    target = to_unit_range(images)
    if likelihood == "gaussian":
        per_element = (decoded - target) ** 2
    elif likelihood == "bernoulli":
        per_element = F.binary_cross_entropy_with_logits(decoded, target, reduction="none")
    else:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return per_element.flatten(1).mean(1)


def decoded_to_images(decoded: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Decoder output -> images in [-1, 1] (the mean of the likelihood)."""
    unit = torch.sigmoid(decoded) if likelihood == "bernoulli" else decoded.clamp(0, 1)
    return unit * 2 - 1


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over dimensions: (B, d) -> (B,)."""
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Element-wise log N(z; mu, exp(logvar)); broadcasts."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 * torch.exp(-logvar))


def tc_decomposition_mws(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int):
    """beta-TCVAE's split of the KL (Chen et al. 2018) with minibatch-weighted sampling.

    With a batch of M samples from a dataset of size N, q(z_i) ~ 1/(N M) sum_j q(z_i | x_j) and
    q(z_i^k) ~ 1/(N M) sum_j q(z_i^k | x_j). Returns per-sample (B,) tensors
    (mutual information, total correlation, dimension-wise KL):
      MI   = log q(z|x) - log q(z)
      TC   = log q(z) - sum_k log q(z_k)
      DWKL = sum_k log q(z_k) - log p(z)
    Their sum is log q(z|x) - log p(z), a one-sample estimate of KL(q(z|x) || p(z))."""
    batch = z.shape[0]
    log_norm = math.log(batch * dataset_size)
    # log q(z_i^k | x_j): (B_i, B_j, d)
    log_qzk_given_xj = gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))
    log_qz = torch.logsumexp(log_qzk_given_xj.sum(2), dim=1) - log_norm
    log_prod_qzk = (torch.logsumexp(log_qzk_given_xj, dim=1) - log_norm).sum(1)
    log_qz_given_x = gaussian_log_density(z, mu, logvar).sum(1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    return log_qz_given_x - log_qz, log_qz - log_prod_qzk, log_prod_qzk - log_pz


def bioae_nonnegativity(z: torch.Tensor) -> torch.Tensor:
    """BioAE (Whittington et al. 2023): mean over dimensions of max(-z, 0). (B, d) -> (B,)."""
    return F.relu(-z).mean(1)


def bioae_activity(z: torch.Tensor) -> torch.Tensor:
    """BioAE activity (energy) penalty: mean over dimensions of z^2. (B, d) -> (B,)."""
    return (z**2).mean(1)
