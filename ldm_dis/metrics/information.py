"""Discrete information quantities shared by MIG, modularity, InfoMEC and TAD.

All entropies and mutual informations are in nats (natural log), the convention of
``sklearn.metrics.mutual_info_score``; normalized scores do not depend on the base.
"""

from __future__ import annotations

import numpy as np


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bin each code column into ``num_bins`` equal-width bins (disentanglement_lib's discretizer).

    codes: (n, d) float. Returns (n, d) int64 with values in [0, num_bins).
    The edges are ``np.histogram``'s (min..max, or +-0.5 around a constant column); a value equal to
    the maximum falls in the last bin, as with ``np.digitize(x, edges[:-1])``.
    """
    codes = np.asarray(codes, dtype=np.float64)
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins=num_bins)
        # searchsorted(side="right") - 1 is np.digitize(x, edges[:-1]) - 1 without the copy
        out[:, j] = np.searchsorted(edges[:-1], codes[:, j], side="right") - 1
    return out


def relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Map the values of a 1-D label array to 0..k-1. Returns (labels (n,) int64, k)."""
    uniq, inverse = np.unique(np.asarray(labels), return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), len(uniq)


def entropy(labels: np.ndarray) -> float:
    """Entropy in nats of a discrete label array (n,); equals mutual_info_score(y, y)."""
    y, _ = relabel(labels)
    p = np.bincount(y) / len(y)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def factor_entropies(factors: np.ndarray) -> np.ndarray:
    """Entropy in nats of each factor column. factors: (n, F) int. Returns (F,)."""
    return np.array([entropy(factors[:, j]) for j in range(factors.shape[1])])


def mutual_info_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Mutual information in nats between every discrete code and every factor.

    discrete_codes: (n, d) int; factors: (n, F) int. Returns m (d, F) with
    m[i, j] = mutual_info_score(factors[:, j], discrete_codes[:, i]), computed for all codes of a
    factor at once from one joint histogram instead of d * F separate calls.
    """
    n, d = discrete_codes.shape
    codes = np.stack([relabel(discrete_codes[:, i])[0] for i in range(d)], axis=1)
    code_k = codes.max(axis=0) + 1 if n else np.zeros(d, dtype=np.int64)
    width = int(code_k.max()) if d else 0
    m = np.zeros((d, factors.shape[1]))
    for j in range(factors.shape[1]):
        y, ky = relabel(factors[:, j])
        # one bincount for all d codes: cell index = (code index, code bin, factor value)
        flat = (np.arange(d) * width * ky)[None, :] + codes * ky + y[:, None]
        joint = np.bincount(flat.ravel(), minlength=d * width * ky).reshape(d, width, ky) / n
        p_code = joint.sum(axis=2, keepdims=True)
        p_y = joint.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = joint * (np.log(joint) - np.log(p_code) - np.log(p_y))
        m[:, j] = np.where(joint > 0, terms, 0.0).sum(axis=(1, 2))
    # tiny negative values from rounding are clipped, as sklearn does
    return np.clip(m, 0.0, None)


def informative_factors(factors: np.ndarray) -> np.ndarray:
    """Mask (F,) of factors that take more than one value in the sample.

    A factor with one value carries no information; every metric leaves it out of its averages
    (dividing by its zero entropy, or fitting a one-class classifier, is undefined).
    """
    factors = np.asarray(factors)
    return np.array([len(np.unique(factors[:, j])) > 1 for j in range(factors.shape[1])], dtype=bool)
