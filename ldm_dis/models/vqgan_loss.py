"""VQ-GAN training objective (taming's ``VQLPIPSWithDiscriminator``, paper Table 7).

generator:     L1(x, x_rec) [+ w_p * perceptual] + w_cb * codebook  +  lambda * w_d * (-D(x_rec))
discriminator: hinge(D(x), D(x_rec))
with the adaptive weight lambda = ||grad_last(rec)|| / (||grad_last(gan)|| + 1e-4), clamped to [0, 1e4],
i.e. the GAN term is rescaled so its gradient at the decoder's last layer matches the reconstruction's.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix ``NLayerDiscriminator``) with taming's layout, so that a taming checkpoint's
    ``loss.discriminator.main.*`` keys load as they are. (B, 3, H, W) -> logits (B, 1, h, w)."""

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3):
        super().__init__()
        layers = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last feature layer keeps the resolution
            layers += [
                nn.Conv2d(channels * prev, channels * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(channels * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(channels * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def _init_weights(m: nn.Module) -> None:
    # DCGAN initialisation, as in taming
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """||d rec / d W_last|| / (||d g / d W_last|| + 1e-4), detached, clamped to [0, 1e4]."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (g_grad.norm() + 1e-4)
    return weight.clamp(0.0, 1e4).detach()


class VQGANLoss(nn.Module):
    """Holds the discriminator (and the optional perceptual network); two calls per step:
    ``generator_loss`` (backward into the autoencoder) and ``discriminator_loss`` (into ``discriminator``)."""

    def __init__(
        self,
        codebook_weight: float = 1.0,
        disc_weight: float = 0.75,
        disc_start: int = 0,
        disc_channels: int = 64,
        disc_layers: int = 3,
        perceptual: Optional[nn.Module] = None,
        perceptual_weight: float = 1.0,
    ):
        super().__init__()
        self.codebook_weight = codebook_weight
        self.disc_weight = disc_weight
        self.disc_start = disc_start
        self.discriminator = PatchDiscriminator(3, disc_channels, disc_layers)
        self.perceptual = perceptual  # frozen LPIPS-style network or None
        self.perceptual_weight = perceptual_weight

    def generator_loss(
        self,
        x: torch.Tensor,
        x_rec: torch.Tensor,
        codebook_loss: torch.Tensor,
        step: int,
        last_layer: torch.Tensor,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Total autoencoder loss and its detached terms. x, x_rec: (B, 3, H, W) in [-1, 1]."""
        rec = (x - x_rec).abs()  # (B, 3, H, W)
        terms: Dict[str, torch.Tensor] = {"l1": rec.mean().detach()}
        if self.perceptual is not None:
            p = self.perceptual(x, x_rec)  # (B,)
            rec = rec + self.perceptual_weight * p.view(-1, 1, 1, 1)
            terms["perceptual"] = p.mean().detach()
        rec_loss = rec.mean()
        loss = rec_loss + self.codebook_weight * codebook_loss
        terms["codebook"] = codebook_loss.detach()
        if step >= self.disc_start and self.disc_weight > 0:
            g_loss = -self.discriminator(x_rec).mean()
            if self.training:
                lam = adaptive_weight(rec_loss, g_loss, last_layer)
            else:  # no graph to differentiate in evaluation
                lam = torch.zeros((), device=x.device)
            loss = loss + lam * self.disc_weight * g_loss
            terms["g"] = g_loss.detach()
            terms["d_weight"] = lam
        return loss, terms

    def discriminator_loss(self, x: torch.Tensor, x_rec: torch.Tensor, step: int) -> Optional[torch.Tensor]:
        """Hinge loss on real vs. detached reconstructions; None before ``disc_start``."""
        if step < self.disc_start or self.disc_weight <= 0:
            return None
        return hinge_d_loss(self.discriminator(x.detach()), self.discriminator(x_rec.detach()))
