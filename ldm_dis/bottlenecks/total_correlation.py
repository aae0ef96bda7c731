"""Total correlation by the density-ratio trick (FactorVAE, Kim & Mnih 2018; FactorQVAE paper Eq. 5-8).

A discriminator D tells samples of the joint q(z) from samples of the product of marginals prod_j q(z_j),
made by permuting every latent block independently across the batch. With D's two logits
(class 0 = joint, class 1 = permuted), TC(z) ~ E[logit_0 - logit_1]. The model minimizes gamma * that
estimate (gradients flow into z); the discriminator is trained by cross-entropy on detached codes with
its own optimizer.

A "block" is one latent: a scalar for FactorVAE (z (B, N)), a K-dim (soft) one-hot for FactorQVAE /
FactordVAE / FactorQ (z (B, N, K)). Shared by the FactorQ bottleneck and the baselines.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def permute_blocks(z: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Permute each latent block independently across the batch. z (B, N, ...) -> same shape.

    Every column z[:, j] keeps its multiset of values (its marginal) while the pairing between columns is
    broken: samples of prod_j q(z_j)."""
    batch, blocks = z.shape[0], z.shape[1]
    # one random permutation of the batch per block, as a (B, N) gather index
    keys = torch.rand(batch, blocks, generator=generator, device="cpu").to(z.device)
    index = keys.argsort(dim=0)
    index = index.reshape(batch, blocks, *([1] * (z.dim() - 2))).expand_as(z)
    return torch.gather(z, 0, index)


class TCDiscriminator(nn.Module):
    """MLP: in_dim -> hidden -> ... -> 2 logits, ``layers`` linear layers, LeakyReLU(0.2) between.

    ``layers=6, hidden=1000`` is the FactorVAE / FactorQVAE discriminator. Weights N(0, 0.02), biases 0,
    as the FactorQVAE code initializes it."""

    def __init__(self, in_dim: int, hidden: int = 1000, layers: int = 6):
        super().__init__()
        if layers < 2:
            raise ValueError(f"the discriminator needs at least 2 linear layers, got {layers}")
        dims = [in_dim] + [hidden] * (layers - 1) + [2]
        modules = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            modules.append(nn.Linear(a, b))
            if i < layers - 1:
                modules.append(nn.LeakyReLU(0.2))
        self.net = nn.Sequential(*modules)
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, N, ...) or (B, N) -> logits (B, 2); blocks are flattened."""
        return self.net(z.flatten(1))


def tc_estimate(discriminator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Density-ratio estimate of TC: mean over the batch of logit_joint - logit_permuted. Scalar."""
    logits = discriminator(z)
    return (logits[:, 0] - logits[:, 1]).mean()


def discriminator_loss(
    discriminator: nn.Module, z_joint: torch.Tensor, z_other: torch.Tensor, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Cross-entropy of D on joint samples ``z_joint`` (label 0) and on ``z_other`` with its blocks
    permuted (label 1). Both are detached here: this loss trains only the discriminator.

    Pass two different halves of a batch as the papers do (the permuted half is then independent of the
    joint half), or the same codes twice."""
    z_joint = z_joint.detach()
    z_perm = permute_blocks(z_other.detach(), generator)
    # one forward pass over both sets (a DDP-wrapped discriminator allows one forward per backward)
    logits = discriminator(torch.cat([z_joint, z_perm]))
    labels = torch.cat([torch.zeros(len(z_joint)), torch.ones(len(z_perm))]).long().to(logits.device)
    weights = torch.cat([torch.full((len(z_joint),), 0.5 / len(z_joint)), torch.full((len(z_perm),), 0.5 / len(z_perm))])
    # = 0.5 * (CE over the joint set + CE over the permuted set), also when the two sets differ in size
    return (F.cross_entropy(logits, labels, reduction="none") * weights.to(logits.device)).sum()


def batch_discriminator_loss(discriminator: nn.Module, z: torch.Tensor,
                             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """:func:`discriminator_loss` on one batch z (B, N, ...): its first half as joint samples, its second
    half permuted (independent of the first, as FactorVAE and the FactorQVAE code split the batch); an
    odd batch leaves its last sample out, and a batch of fewer than 4 uses its codes twice."""
    half = z.shape[0] // 2
    joint, other = (z[:half], z[half:2 * half]) if half >= 2 else (z, z)
    return discriminator_loss(discriminator, joint, other, generator)
