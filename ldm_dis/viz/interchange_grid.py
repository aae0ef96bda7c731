"""Pictures of latent interchange (paper Fig. 3, 8) and interpolation (Fig. 6), as labelled PNG grids.

Interchange, one column per (source, target) pair, rows top to bottom:
    source             the source images
    target             the target images
    source units       generated from the source's own units (the reference every swap is compared with)
    u<i> <- target     generated with unit i from the target, labelled with the unit's best factor and
                       that match's NMI (the caption under the grid says so)
Interpolation, one row per pair: image a, the generated strip from a's units to b's, image b.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from ldm_dis.viz.grids import image_grid, save_image_grid


def interchange_rows(sources: torch.Tensor, targets: torch.Tensor, panels: torch.Tensor,
                     unit_labels: Optional[Sequence[str]] = None):
    """sources, targets (B, 3, H, W), panels (B, 1 + N, 3, H, W) -> (images ((3 + N) * B, 3, H, W) row by row,
    row labels (3 + N,))."""
    b, m = panels.shape[:2]
    n = m - 1
    if unit_labels is not None and len(unit_labels) != n:
        raise ValueError(f"{len(unit_labels)} unit labels for {n} units")
    rows = torch.cat([sources[None].to(panels), targets[None].to(panels), panels.transpose(0, 1)])  # (3 + N, B, ...)
    labels = ["source", "target", "source units"]
    labels += [f"u{i} <- target" + (f": {unit_labels[i]}" if unit_labels else "") for i in range(n)]
    return rows.reshape(-1, *panels.shape[2:]), labels


INTERCHANGE_CAPTION = ("Row 'u<i> <- target': the source's units with unit i taken from the target, all rows "
                       "from one initial noise.")
NMI_CAPTION = (" After the unit: the factor it matches best and that match's NMI (normalized mutual information, "
               "0 = independent, 1 = the unit determines the factor).")


def interchange_grid(sources: torch.Tensor, targets: torch.Tensor, panels: torch.Tensor,
                     unit_labels: Optional[Sequence[str]] = None, title: Optional[str] = None):
    """The interchange grid (see the module docstring) with its caption, as a PIL image."""
    images, labels = interchange_rows(sources, targets, panels, unit_labels)
    caption = INTERCHANGE_CAPTION + (NMI_CAPTION if unit_labels else "")
    return image_grid(images, nrow=panels.shape[0], row_labels=labels, title=title, caption=caption)


def save_interchange_grid(path: str | Path, sources: torch.Tensor, targets: torch.Tensor, panels: torch.Tensor,
                          unit_labels: Optional[Sequence[str]] = None, title: Optional[str] = None) -> Path:
    """Write :func:`interchange_grid` as a PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    interchange_grid(sources, targets, panels, unit_labels, title).save(path)
    return path


def save_interpolation_grid(path: str | Path, first: torch.Tensor, second: torch.Tensor, strips: torch.Tensor,
                            title: Optional[str] = None) -> Path:
    """first, second (B, 3, H, W), strips (B, K, 3, H, W) -> one row per pair [a, K panels, b]; returns the path."""
    b, k = strips.shape[:2]
    rows = torch.cat([first[:, None].to(strips), strips, second[:, None].to(strips)], dim=1)  # (B, K + 2, 3, H, W)
    weights = [f"{w:.2g}" for w in torch.linspace(0, 1, k).tolist()]  # weight of b in each panel
    return save_image_grid(rows.reshape(-1, *strips.shape[2:]), path, nrow=k + 2, col_labels=["a", *weights, "b"],
                           title=title)
