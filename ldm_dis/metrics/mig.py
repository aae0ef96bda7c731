"""Mutual Information Gap (Chen et al. 2018), disentanglement_lib's protocol.

10,000 points; each code is discretized into 20 equal-width bins; m[i, j] = I(code_i; factor_j)
in nats; per factor (largest - second largest m over codes) / H(factor); mean over factors.
Factors with one value (H = 0) are left out; with a single code the second largest is 0.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ldm_dis.metrics.information import factor_entropies, histogram_discretize, mutual_info_matrix
from ldm_dis.metrics.sampling import RepresentationFn, sample_codes
from ldm_dis.metrics.units import scalar_codes


def mig_from_mi(m: np.ndarray, factor_entropy: np.ndarray) -> np.ndarray:
    """Per-factor gap. m: (d, F) nats; factor_entropy: (F,). Returns (F,), NaN where H = 0."""
    top = np.sort(m, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros(m.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(factor_entropy > 0, (top[0] - second) / factor_entropy, np.nan)


def mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict:
    """MIG on precomputed codes (n, d) and factor indices (n, F). Returns discrete_mig (float),
    mig_per_factor (F,) (NaN for constant factors) and mutual_info (d, F) in nats."""
    m = mutual_info_matrix(histogram_discretize(codes, num_bins), factors)
    gaps = mig_from_mi(m, factor_entropies(factors))
    score = float(np.nanmean(gaps)) if np.isfinite(gaps).any() else 0.0
    return {"discrete_mig": score, "mig_per_factor": gaps, "mutual_info": m}


def mig_metric(
    dataset,
    representation_fn: Optional[RepresentationFn],
    rng: np.random.Generator,
    num_train: int = 10_000,
    num_bins: int = 20,
) -> dict:
    """Sample the protocol's points and score them with :func:`mig`."""
    raw, factors = sample_codes(dataset, representation_fn, num_train, rng)
    (codes,) = scalar_codes(raw)
    return mig(codes, factors, num_bins)
