"""Cross-attention heat maps of the latent units over the generated images (paper Fig. 4, 9, 10).

One row per generated image: the image, then one panel per unit with the unit's map (from
:func:`ldm_dis.sampling.attention_maps.unit_attention_maps`) as a heat map blended over the image. Each panel's
title gives the unit, its best-matching factor when known, and its share of all attention in that image
(maps sum to 1 over units at every pixel, so the shares of a row sum to 100%).

Colour scale: ``normalize="unit"`` stretches each map to its own [min, max] (DAAM's convention: where does the
unit look); ``"row"`` uses one [0, max] scale per image so that weak units stay dark (how much does it look).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ldm_dis.viz.figures import save_figure
from ldm_dis.viz.grids import to_uint8

_ALPHA = 0.6  # weight of the heat map in the blend; the image stays recognisable underneath


def heat_overlay(image: np.ndarray, heat: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """image uint8 (H, W, 3), heat (H, W) in [0, 1] -> uint8 (H, W, 3) blend."""
    from matplotlib import colormaps

    colour = colormaps[cmap](np.clip(heat, 0, 1))[..., :3] * 255.0
    return (image * (1 - _ALPHA) + colour * _ALPHA).astype(np.uint8)


def scaled_maps(maps: np.ndarray, normalize: str) -> np.ndarray:
    """maps (B, N, H, W) >= 0 -> the same in [0, 1] by unit ([min, max] of each map) or by row ([0, max] per image)."""
    if normalize == "unit":
        low = maps.min(axis=(2, 3), keepdims=True)
        span = maps.max(axis=(2, 3), keepdims=True) - low
    elif normalize == "row":
        low = np.zeros_like(maps[:, :1, :1, :1])
        span = maps.max(axis=(1, 2, 3), keepdims=True)
    else:
        raise ValueError(f"normalize={normalize!r}: expected 'unit' or 'row'")
    return (maps - low) / np.where(span > 0, span, 1.0)


def save_attention_figure(path: str | Path, images: torch.Tensor, maps: torch.Tensor,
                          unit_labels: Optional[Sequence[str]] = None, normalize: str = "unit",
                          title: Optional[str] = None, zoom: int = 3) -> Path:
    """images (B, 3, H, W) in [-1, 1], maps (B, N, H, W) -> PNG with B rows of 1 + N panels; returns the path.
    ``zoom`` enlarges small images (nearest neighbour) and maps (bilinear) before drawing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch.nn.functional as F

    b, n, h, w = maps.shape
    size = (h * zoom, w * zoom)
    pictures = to_uint8(F.interpolate(images.float().cpu(), size=size, mode="nearest"))  # (B, H', W', 3)
    big = F.interpolate(maps.float().cpu(), size=size, mode="bilinear", align_corners=False).numpy()
    heat = scaled_maps(big, normalize)
    share = maps.float().cpu().mean(dim=(2, 3)).numpy()  # (B, N), rows sum to 1

    fig, axes = plt.subplots(b, n + 1, figsize=(1.25 * (n + 1), 1.45 * b + (0.35 if title else 0)), squeeze=False)
    for r in range(b):
        axes[r, 0].imshow(pictures[r])
        if r == 0:
            axes[r, 0].set_title("generated", fontsize=7)
        for i in range(n):
            ax = axes[r, i + 1]
            ax.imshow(heat_overlay(pictures[r], heat[r, i]))
            # unit names once, at the top; every panel gives the unit's share of that image's attention
            head = f"u{i}" + (f"\n{unit_labels[i]}" if unit_labels else "") + "\n" if r == 0 else ""
            ax.set_title(f"{head}{100 * share[r, i]:.0f}%", fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 0.95 if title else 1))
    return save_figure(fig, path, dpi=110)
