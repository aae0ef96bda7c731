"""Unit scatter (paper Fig. 1 and 11): one latent unit's features over many images, projected to 2-D,
coloured by the true value of the factor it matches best.

For each factor, the unit with the highest NMI for it is shown (:func:`ldm_dis.viz.unit_labels.best_units`);
its D-dimensional features (n, D) are projected with PaCMAP when that package is installed (as in the
paper), otherwise with PCA. Well separated colours mean the unit encodes the factor in distinct regions.

    save_unit_scatter("scatter.png", units, factors, factor_names, nmi)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from ldm_dis.viz.figures import save_figure


def project_2d(features: np.ndarray, method: str = "auto", seed: int = 0) -> Tuple[np.ndarray, str]:
    """features (n, D) -> (coordinates (n, 2), the method used). method: auto (PaCMAP if installed) | pacmap | pca.
    A unit of one scalar (D = 1) is drawn against a jitter-free zero axis."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim == 1 or features.shape[1] == 1:
        x = features.reshape(-1)
        return np.stack([x, np.zeros_like(x)], axis=1), "value"
    if method in ("auto", "pacmap"):
        try:
            import pacmap  # optional: not a dependency of the package
        except ImportError:
            if method == "pacmap":
                raise ImportError("method='pacmap' needs the pacmap package (pip install pacmap)") from None
        else:
            reducer = pacmap.PaCMAP(n_components=2, random_state=seed)
            return reducer.fit_transform(features.astype(np.float32)), "PaCMAP"
    elif method != "pca":
        raise ValueError(f"method={method!r}: expected auto, pacmap or pca")
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # rows of vt: principal directions
    return centred @ vt[:2].T, "PCA"


def save_unit_scatter(path: str | Path, units: np.ndarray, factors: np.ndarray, factor_names: Sequence[str],
                      nmi: np.ndarray, method: str = "auto", title: Optional[str] = None, seed: int = 0) -> Path:
    """units (n, N, D) or (n, N), factors (n, F) int, nmi (F, N) -> one panel per factor; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ldm_dis.viz.unit_labels import best_units

    units = np.asarray(units)
    if units.ndim == 2:
        units = units[:, :, None]  # scalar units: (n, N, 1)
    num_factors = factors.shape[1]
    cols = min(3, num_factors)
    rows = int(np.ceil(num_factors / cols))
    # constrained layout: panel titles, colour bars and the two-line title never overlap
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.1 * rows + (0.3 if title else 0)), squeeze=False,
                             layout="constrained")
    used = "PCA"
    for f, unit in enumerate(best_units(nmi)):
        ax = axes.flat[f]
        xy, used = project_2d(units[:, unit], method, seed)
        order = np.random.default_rng(seed).permutation(len(xy))  # no colour is always drawn last, on top
        xy, values = xy[order], factors[order, f]
        k = int(values.max()) + 1
        cmap = "tab10" if k <= 10 else "viridis"
        points = ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap=cmap, vmin=-0.5 if k <= 10 else None,
                            vmax=9.5 if k <= 10 else None, s=4, alpha=0.7, linewidths=0)
        ax.set_title(f"{factor_names[f]}: u{unit} (NMI {nmi[f, unit]:.2f})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        bar = fig.colorbar(points, ax=ax, fraction=0.046, pad=0.02)
        bar.set_ticks(range(k) if k <= 10 else np.linspace(0, k - 1, 5).round())
        bar.ax.tick_params(labelsize=6)
        if k <= 10:
            bar.ax.set_ylim(-0.5, k - 0.5)
    for ax in list(axes.flat)[num_factors:]:
        ax.axis("off")
    fig.suptitle((title + "\n" if title else "") + f"each factor's best unit, {used} projection, coloured by factor value",
                 fontsize=8)
    return save_figure(fig, path, dpi=110)
