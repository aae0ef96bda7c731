"""Pictures of a VAE-family baseline: latent traversals (FactorQVAE paper figures 2-4) and latent swaps
(figure 8), from a :class:`ldm_dis.baselines.model.BaselineModel` in eval mode.

    values = traversal_values(model, model.encode(reference), steps=8)    # (d, steps)
    grid = traversal_grid(model, images, reference, steps=8)              # (n * d * steps, C, H, W)
    grid = swap_grid(model, first, second)                                # (n * (d + 2), C, H, W)
"""

from __future__ import annotations

import torch


def traversal_values(model, codes: torch.Tensor, steps: int) -> torch.Tensor:
    """(d, steps) values per dimension: evenly spaced between the 2nd and 98th percentile of ``codes``
    (n, d); for a quantized dimension the distinct allowed values nearest to those points."""
    low = torch.quantile(codes, 0.02, dim=0)
    high = torch.quantile(codes, 0.98, dim=0)
    grid = low[:, None] + (high - low)[:, None] * torch.linspace(0, 1, steps, device=codes.device)
    for j in range(codes.shape[1]):
        allowed = model.code_values(j)
        if allowed is not None:
            grid[j] = allowed[(grid[j, :, None] - allowed).abs().argmin(-1)]
    return grid


@torch.no_grad()
def traversal_grid(model, images: torch.Tensor, reference: torch.Tensor, steps: int) -> torch.Tensor:
    """Images (n, C, H, W) -> pictures (n * d * steps, C, H, W): per image, per dimension, per value."""
    values = traversal_values(model, model.encode(reference), steps)  # (d, steps)
    codes = model.encode(images)  # (n, d)
    n, d = codes.shape
    z = codes[:, None, None, :].repeat(1, d, steps, 1)  # (n, d, steps, d)
    for j in range(d):
        z[:, j, :, j] = values[j]
    return model.decode(z.reshape(-1, d))


@torch.no_grad()
def swap_grid(model, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Pairs (n, C, H, W) x 2 -> (n * (d + 2), C, H, W): per pair [a, b, a with z_j of b for each j]."""
    za, zb = model.encode(first), model.encode(second)
    n, d = za.shape
    z = za[:, None, :].repeat(1, d, 1)  # (n, d, d)
    idx = torch.arange(d)
    z[:, idx, idx] = zb  # row j of pair i: dimension j from b
    swapped = model.decode(z.reshape(-1, d)).reshape(n, d, *first.shape[1:])
    return torch.cat([first[:, None], second[:, None], swapped], dim=1).reshape(-1, *first.shape[1:])
