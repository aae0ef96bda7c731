"""Vector-valued latent units (N units of D values) reduced to N scalars by per-unit PCA.

The scalar metrics need one number per latent unit. As in the paper and prior work, each unit's
D-dimensional features are projected on their first principal component, fitted on the evaluation
sample and then applied unchanged to every other batch of the same metric (a FactorVAE batch of 64
must not get its own PCA).
"""

from __future__ import annotations

import numpy as np


class UnitPCA:
    """One-component PCA per latent unit.

    Fitted attributes: ``mean_`` (N, D) and ``components_`` (N, D), unit-norm first principal
    directions whose largest-magnitude entry is positive (a deterministic sign, so the same seed gives
    the same numbers).
    """

    def fit(self, codes: np.ndarray) -> "UnitPCA":
        """codes: (n, N, D)."""
        codes = np.asarray(codes, dtype=np.float64)
        if codes.ndim != 3:
            raise ValueError(f"UnitPCA expects codes of shape (n, N, D), got {codes.shape}")
        self.mean_ = codes.mean(axis=0)
        centred = codes - self.mean_
        # per-unit covariance (N, D, D); D is small (32), so eigh beats an SVD of (n, D) per unit
        cov = np.einsum("nid,nie->ide", centred, centred) / max(len(codes) - 1, 1)
        _, vecs = np.linalg.eigh(cov)
        comp = vecs[:, :, -1]  # eigenvalues ascend: the last column is the first component
        pivot = np.abs(comp).argmax(axis=1)
        signs = np.sign(comp[np.arange(len(comp)), pivot])
        self.components_ = comp * np.where(signs == 0, 1.0, signs)[:, None]
        return self

    def transform(self, codes: np.ndarray) -> np.ndarray:
        """codes: (n, N, D) -> (n, N) scores on each unit's first component."""
        codes = np.asarray(codes, dtype=np.float64)
        return np.einsum("nid,id->ni", codes - self.mean_, self.components_)


def scalar_codes(first: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Return float64 (n, d) codes for each array; vector units (n, N, D) are reduced by a UnitPCA
    fitted on ``first`` (the metric's evaluation sample) and applied to ``others``."""
    if np.asarray(first).ndim == 2:
        return [np.asarray(a, dtype=np.float64) for a in (first, *others)]
    pca = UnitPCA().fit(first)
    return [pca.transform(a) for a in (first, *others)]
