"""Which ground-truth factor each latent unit matches best, to label the pictures (paper Fig. 3, 11).

A unit's match is the factor with the highest NMI (InfoMEC's NMI[factor, unit] = I(s_i; z_j) / H(s_i),
:func:`ldm_dis.metrics.infomec.nmi_matrix`) between the factor and the unit's scalar summary; vector
units (D values) are reduced to one scalar by the per-unit PCA used by every metric
(:class:`ldm_dis.metrics.units.UnitPCA`).

    nmi = unit_factor_nmi(units, factors)            # units (n, N, D) or (n, N), factors (n, F) -> (F, N)
    unit_labels(nmi, names)                          # ["floor_hue .71", "shape .40", ...], one per unit
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

from ldm_dis.metrics.infomec import nmi_matrix
from ldm_dis.metrics.units import scalar_codes


def unit_factor_nmi(units: np.ndarray, factors: np.ndarray, seed: int = 0) -> np.ndarray:
    """units (n, N, D) or (n, N), factors (n, F) int -> NMI (F, N) in [0, 1] (k-NN estimate, continuous codes)."""
    codes = scalar_codes(np.asarray(units, dtype=np.float64))[0]  # (n, N)
    return nmi_matrix(codes, np.asarray(factors), discrete=False, seed=seed, n_jobs=1)


def best_factors(nmi: np.ndarray) -> np.ndarray:
    """NMI (F, N) -> (N,) index of each unit's best-matching factor."""
    return np.asarray(nmi).argmax(axis=0)


def best_units(nmi: np.ndarray) -> np.ndarray:
    """NMI (F, N) -> (F,) index of the unit that matches each factor best (the unit shown for it, Fig. 11)."""
    return np.asarray(nmi).argmax(axis=1)


def unit_labels(nmi: np.ndarray, factor_names: Sequence[str]) -> List[str]:
    """One short label per unit: its best factor and the NMI, e.g. "floor_hue .71"."""
    nmi = np.asarray(nmi)
    return [f"{factor_names[f]} {nmi[f, j]:.2f}".replace(" 0.", " .") for j, f in enumerate(best_factors(nmi))]
