"""Cross-attention heat maps of the latent units over the generated images (paper Fig. 4, 9, 10).

One row per generated image: the image, then one panel per unit with the unit's map (from
:func:`ldm_dis.sampling.attention_maps.unit_attention_maps`), then a colour bar. Column titles give the unit
and its best-matching factor with that match's NMI; under each panel, the unit's share of all attention in
that image (maps sum to 1 over units at every pixel, so the shares of a row sum to 100%).

Colours are attention relative to uniform attention, ``N * map`` (1 = each of the N units gets 1/N), on a
log2 scale centred on 1: white is uniform, red is more than uniform, blue less. The scale spans at least
x0.5 .. x2, so attention that is close to uniform stays close to white instead of being stretched into
structure that is not there. ``scale="row"``: one scale per image (its colour bar at the row's end);
``"all"``: one scale for the figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ldm_dis.viz.figures import save_figure
from ldm_dis.viz.grids import to_uint8

CMAP = "RdBu_r"
MIN_RANGE = 1.0  # log2 units: the colour scale spans at least x0.5 .. x2 of uniform attention
_UNDERLAY = 0.25  # the generated image, in grey, shows through the heat map at this weight


def relative_log2(maps: np.ndarray) -> np.ndarray:
    """maps (B, N, H, W), summing to 1 over N at every pixel -> log2(N * maps): 0 where attention is uniform."""
    n = maps.shape[1]
    return np.log2(np.maximum(maps * n, 1e-6))


def colour_limits(rel: np.ndarray, scale: str) -> np.ndarray:
    """rel (B, N, H, W) log2 ratios -> (B,) limits L of the colour scale -L .. L: the strongest attention's
    ratio (what a reader looks for; weaker-than-1/L values saturate blue), at least MIN_RANGE."""
    if scale == "row":
        limits = rel.reshape(len(rel), -1).max(axis=1)
    elif scale == "all":
        limits = np.full(len(rel), rel.max())
    else:
        raise ValueError(f"scale={scale!r}: expected 'row' or 'all'")
    return np.maximum(np.ceil(limits * 2) / 2, MIN_RANGE)  # half-octave steps keep the tick labels round


def _ticks(limit: float):
    """Colour-bar ticks at whole octaves (x0.5, x1, x2, ...) within -limit .. limit, at most 7 of them."""
    top = int(np.floor(limit))
    step = max(1, int(np.ceil(top / 3)))
    values = np.arange(-(top // step) * step, top + 1, step)
    return values, [f"x{2.0 ** v:g}" for v in values]


def save_attention_figure(path: str | Path, images: torch.Tensor, maps: torch.Tensor,
                          unit_labels: Optional[Sequence[str]] = None, scale: str = "row",
                          title: Optional[str] = None, zoom: int = 3) -> Path:
    """images (B, 3, H, W) in [-1, 1], maps (B, N, H, W) -> PNG with B rows of 1 + N panels and a colour bar;
    returns the path. ``zoom`` enlarges small images (nearest neighbour) and maps (bilinear) before drawing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch.nn.functional as F
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    b, n, h, w = maps.shape
    size = (h * zoom, w * zoom)
    pictures = to_uint8(F.interpolate(images.float().cpu(), size=size, mode="nearest"))  # (B, H', W', 3)
    grey = pictures.mean(axis=3) / 255.0  # (B, H', W')
    big = F.interpolate(maps.float().cpu(), size=size, mode="bilinear", align_corners=False).numpy()
    rel = relative_log2(big)
    limits = colour_limits(rel, scale)
    share = maps.float().cpu().mean(dim=(2, 3)).numpy()  # (B, N), rows sum to 1

    fig = plt.figure(figsize=(1.1 * (n + 1) + 0.9, 1.2 * b + 0.8 + (0.3 if title else 0)), layout="constrained")
    grid = fig.add_gridspec(b, n + 2, width_ratios=[1.0] * (n + 1) + [0.12])
    for r in range(b):
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(pictures[r])
        ax.set_xticks([])
        ax.set_yticks([])
        if r == 0:
            ax.set_title("generated", fontsize=7)
        norm = Normalize(-limits[r], limits[r])
        for i in range(n):
            ax = fig.add_subplot(grid[r, i + 1])
            ax.imshow(grey[r], cmap="gray", vmin=0, vmax=1)
            ax.imshow(rel[r, i], cmap=CMAP, norm=norm, alpha=1 - _UNDERLAY)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"u{i}" + (f"\n{unit_labels[i]}" if unit_labels else ""), fontsize=6)
            ax.set_xlabel(f"{100 * share[r, i]:.0f}%", fontsize=6, labelpad=1)
        if scale == "row" or r == 0:
            bar_ax = fig.add_subplot(grid[r, n + 1] if scale == "row" else grid[:, n + 1])
            bar = fig.colorbar(ScalarMappable(norm=norm, cmap=CMAP), cax=bar_ax)
            values, labels = _ticks(limits[r])
            bar.set_ticks(values, labels=labels)
            bar.ax.tick_params(labelsize=5)
    caption = ("Colour: attention relative to uniform (1/N per unit): pale = uniform, red = more, blue = less. "
               "Under each map: the unit's share of the image's attention (a row sums to 100%).")
    if unit_labels:
        caption = "Column titles: unit, its best-matching factor and that match's NMI (0-1). " + caption
    fig.supxlabel(_wrap(caption, 24 * (n + 2)), fontsize=6)
    if title:
        fig.suptitle(title, fontsize=8)
    return save_figure(fig, path, dpi=110)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width=max(40, width)))
