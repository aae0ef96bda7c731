"""TAD, Total AUROC Difference (Yeats et al. 2022), for binary attributes such as CelebA's.

For every (attribute, code) pair the ROC-AUC of the code as a score for the attribute, in both
polarities (max(AUC, 1 - AUC)). An attribute is kept when its best AUROC >= 0.75 and it is not
entangled with another attribute: its largest normalized MI with any other attribute,
I(a; b) / H(a), is <= 0.2. TAD = sum over kept attributes of best - second-best AUROC; the number
of kept attributes ("attributes captured") is reported too. Factors that are not binary (and
constant ones) are not attributes: they are left out and counted.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.stats import rankdata

from ldm_dis.metrics.information import entropy, mutual_info_matrix
from ldm_dis.metrics.sampling import RepresentationFn, sample_codes
from ldm_dis.metrics.units import scalar_codes


def auroc_matrix(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC-AUC (d, A) of each code column (n, d) as a score for each binary label column (n, A).

    Mann-Whitney form with average ranks for ties, equal to sklearn's roc_auc_score.
    """
    ranks = rankdata(codes, axis=0)  # (n, d), ties share their average rank
    pos = labels.astype(bool)
    n_pos = pos.sum(axis=0).astype(np.float64)
    n_neg = len(labels) - n_pos
    rank_sum = ranks.T @ pos.astype(np.float64)  # (d, A)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def tad(
    codes: np.ndarray, factors: np.ndarray, auroc_threshold: float = 0.75, entanglement_threshold: float = 0.2
) -> dict:
    """TAD on codes (n, d) and factors (n, F) (binary columns are the attributes).

    Returns tad, num_attributes_captured, num_attributes (binary, non-constant factors considered)
    and auroc (d, F) (NaN columns for factors that are not attributes).
    """
    binary = np.array([len(np.unique(factors[:, j])) == 2 for j in range(factors.shape[1])])
    attrs = np.flatnonzero(binary)
    auroc = np.full((codes.shape[1], factors.shape[1]), np.nan)
    if len(attrs) == 0:
        return {"tad": 0.0, "num_attributes_captured": 0.0, "num_attributes": 0.0, "auroc": auroc}
    labels = np.stack([factors[:, j] == factors[:, j].max() for j in attrs], axis=1)
    raw = auroc_matrix(codes, labels)
    auroc[:, attrs] = np.maximum(raw, 1.0 - raw)  # both polarities
    ranked = np.sort(auroc[:, attrs], axis=0)[::-1]
    best = ranked[0]
    second = ranked[1] if len(ranked) > 1 else np.full(len(attrs), 0.5)
    # attribute-attribute normalized MI, I(a; b) / H(a), diagonal excluded
    mi = mutual_info_matrix(labels.astype(np.int64), labels.astype(np.int64))
    ent = np.array([entropy(labels[:, k]) for k in range(len(attrs))])
    nmi = mi / ent[:, None]
    np.fill_diagonal(nmi, 0.0)
    kept = (best >= auroc_threshold) & (nmi.max(axis=1) <= entanglement_threshold)
    return {
        "tad": float((best - second)[kept].sum()),
        "num_attributes_captured": float(kept.sum()),
        "num_attributes": float(len(attrs)),
        "auroc": auroc,
    }


def tad_metric(
    dataset,
    representation_fn: Optional[RepresentationFn],
    rng: np.random.Generator,
    num_points: int = 10_000,
) -> dict:
    """Sample the points and score them with :func:`tad`."""
    raw, factors = sample_codes(dataset, representation_fn, num_points, rng)
    (codes,) = scalar_codes(raw)
    return tad(codes, factors)
