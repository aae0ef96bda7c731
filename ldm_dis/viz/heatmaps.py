"""Heatmaps of metric matrices: InfoMEC's NMI and DCI's importance, factors on one axis, codes on the other."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ldm_dis.viz.figures import save_figure


def draw_heatmap(
    matrix: np.ndarray,
    factor_names: Sequence[str],
    path: str | Path,
    title: str,
    code_labels: Optional[Sequence[str]] = None,
    vmax: Optional[float] = None,
) -> Path:
    """Write a PNG of ``matrix`` (F factors, d codes): one row per factor, one column per code.

    Values are printed in the cells when the matrix is small enough to read them.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=np.float64)
    num_factors, num_codes = matrix.shape
    code_labels = list(code_labels) if code_labels is not None else [f"u{j}" for j in range(num_codes)]
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * num_codes, 1.0 + 0.45 * num_factors), dpi=120)
    # aspect auto: the cells fill the axes (the figure size keeps them near square), so the colour bar
    # beside them has their height
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=vmax if vmax is not None else max(matrix.max(), 1e-12),
                      aspect="auto")
    ax.set_xticks(range(num_codes), code_labels, rotation=90)
    ax.set_yticks(range(num_factors), list(factor_names))
    ax.set_xlabel("latent unit")
    ax.set_ylabel("factor")
    ax.set_title(title)
    if num_codes * num_factors <= 400:
        top = image.get_clim()[1]
        for i in range(num_factors):
            for j in range(num_codes):
                colour = "black" if matrix[i, j] > 0.6 * top else "white"
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return save_figure(fig, path)
