"""Feature alignment (paper Algorithm 3): pull each unit's feature toward its anchor.

For unit i of a sample with feature c (D values):

    z      = (c - center_i) / scale_i                   fixed statistics of the fitted set, never the batch
    log r  = log responsibilities of z under unit i's mixture (HDDC, structured covariances)
    y      = GumbelSoftmax(log r, tau)                  straight-through: one-hot forward, soft gradient
    mu     = center_i + scale_i * sum_k y_k mu_k         the chosen anchor, back in feature units
    delta  = lam * exp(-(1/D) * sum_j |c_j - mu_j| / |c_j|)     per sample and unit, |c_j| >= eps
    c~     = c + delta * (mu - c)

Since 0 < delta <= lam, a feature moves toward its anchor by at most ``lam`` of the distance.

:func:`released_alignment` is the released code's version (``alignment: released``): a batch statistic
normalizes, the argmax anchor stays in normalized units, one lambda for the whole batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_EPS = 1e-6  # guard of |c_j| in delta's denominator: a zero coordinate gives a tiny delta, not NaN


def mixture_log_resp(
    z: torch.Tensor,
    means: torch.Tensor,
    variances: torch.Tensor,
    eigenvectors: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Log responsibilities of normalized features under each unit's mixture.

    z (B, N, D); means (N, K, D); variances (N, K, D), the structured spectrum (a_1..a_d, b, .., b);
    eigenvectors (N, K, D, D), columns matching ``variances``; weights (N, K), 0 for absent components.
    Returns (B, N, K), -inf at absent components. The same density as ``HDDC.weighted_log_prob``
    written in the full eigenbasis (batch-friendly on GPU; the trailing coordinates share b).
    """
    diff = z.unsqueeze(2) - means  # (B, N, K, D)
    proj = torch.einsum("bnkd,nkde->bnke", diff, eigenvectors)  # coordinates in each eigenbasis
    maha = (proj * proj / variances).sum(-1)  # (B, N, K)
    log_det = torch.log(variances).sum(-1)  # (N, K)
    dim = z.shape[-1]
    log_w = torch.log(weights)  # -inf where absent
    weighted = log_w - 0.5 * (dim * math.log(2 * math.pi) + log_det + maha)
    return torch.log_softmax(weighted, dim=-1)


def align_features(
    c: torch.Tensor,
    center: torch.Tensor,
    scale: torch.Tensor,
    means: torch.Tensor,
    variances: torch.Tensor,
    eigenvectors: torch.Tensor,
    weights: torch.Tensor,
    tau: float,
    lam: float,
    stochastic: bool = True,
) -> torch.Tensor:
    """Aligned features c~ (B, N, D) from features c (B, N, D).

    center (N, D), scale (N,): the normalization stored with the mixtures. ``stochastic=True`` draws the
    anchor with straight-through Gumbel-softmax (training); ``False`` takes the most responsible anchor
    (deterministic, for evaluation and pictures).
    """
    z = (c - center) / scale[:, None]
    log_r = mixture_log_resp(z, means, variances, eigenvectors, weights)  # (B, N, K)
    if stochastic:
        y = F.gumbel_softmax(log_r, tau=tau, hard=True, dim=-1)
    else:
        y = F.one_hot(log_r.argmax(-1), log_r.shape[-1]).to(c.dtype)
    anchor_z = torch.einsum("bnk,nkd->bnd", y, means)
    anchor = center + scale[:, None] * anchor_z  # back to feature units
    guarded = c.abs().clamp_min(_EPS)
    delta = lam * torch.exp(-((c - anchor).abs() / guarded).mean(-1, keepdim=True))  # (B, N, 1)
    return c + delta * (anchor - c)


def released_alignment(
    c: torch.Tensor,
    means: torch.Tensor,
    variances: torch.Tensor,
    eigenvectors: torch.Tensor,
    weights: torch.Tensor,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The released code's alignment (``ddpm_dyga.py``, training and evaluation alike).

    Per unit, z = (c - max) / (max - min + 1e-6) with the max and min of the *batch* (over samples and
    the D values); cq = the mean of the most responsible Gaussian, left in those normalized units;
    one lambda for the batch, lam * exp(-mean over batch, units and values of |(c - cq) / (c + 1e-6)|);
    c~ = lambda cq + (1 - lambda) c. Returns (c~ (B, N, D), lambda ()).
    """
    hi = c.amax(dim=(0, 2), keepdim=True)  # (1, N, 1)
    lo = c.amin(dim=(0, 2), keepdim=True)
    z = (c - hi) / (hi - lo + 1e-6)
    log_r = mixture_log_resp(z.detach(), means, variances, eigenvectors, weights)  # (B, N, K)
    cq = torch.einsum("bnk,nkd->bnd", F.one_hot(log_r.argmax(-1), log_r.shape[-1]).to(c.dtype), means)
    mix = lam * torch.exp(-((c - cq) / (c + 1e-6)).abs().mean())
    return mix * cq + (1 - mix) * c, mix
