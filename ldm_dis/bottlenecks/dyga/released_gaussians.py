"""Anchors from the released code's Gaussian file as :class:`DyGABottleneck` buffers.

The released trainer fits one full-covariance mixture per unit after every validation epoch and writes
them all to ``gaussian/gaussian-epoch=NNNNNN.npz`` (``ddpm_dyga.py``, ``parallel_process``):

    means (sum K, D)    sigma (sum K, D, D)    pi (sum K)    K (N,)    unit i owns rows K[0] + ... + K[i-1] on

in the units its alignment works in: (c - max) / (max - min + 1e-6) of each unit's features. Its E-step
scores N(mu, sigma + 1e-6 I). Here each sigma + 1e-6 I is eigendecomposed and its whole spectrum kept as
``variances`` (no HDDC structure imposed), so the responsibilities are the released ones; the means stay in
the released units, which only ``alignment: released`` reads. The file is read with ``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from ldm_dis.errors import CheckpointError

KEYS = ("means", "sigma", "pi", "K")
RELEASED_REG = 1e-6  # added to every covariance in the released E-step
RELEASED_TOL = 1e-4  # released DyGA tol: intrinsic dimension = eigenvalues of sigma / ||sigma||_F above it

Mixture = Tuple[np.ndarray, np.ndarray, np.ndarray]  # means (K, D), covariances (K, D, D), weights (K,)


def read_released_gaussians(path: str | Path) -> List[Mixture]:
    """One (means, sigma, pi) per unit from a released ``gaussian-epoch=NNNNNN.npz``; a file of another
    layout is a CheckpointError naming the key and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Gaussian file {str(path)!r} does not exist (the released trainer writes "
                              "LOG_DIR/gaussian/gaussian-epoch=NNNNNN.npz)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the Gaussian file {str(path)!r} as an .npz of plain arrays: {exc}") from None
    missing, unexpected = sorted(set(KEYS) - set(arrays)), sorted(set(arrays) - set(KEYS))
    if missing or unexpected:
        raise CheckpointError(f"{path}: expected the arrays {list(KEYS)} of the released code; missing {missing}, "
                              f"unexpected {unexpected}")
    means, sigma, pi, counts = (arrays[k] for k in KEYS)
    total = len(means)
    if means.ndim != 2 or sigma.shape != (total, means.shape[1], means.shape[1]) or pi.shape != (total,):
        raise CheckpointError(f"{path}: means {means.shape}, sigma {sigma.shape}, pi {pi.shape}; expected "
                              "(M, D), (M, D, D) and (M,)")
    if counts.ndim != 1 or counts.dtype.kind not in "iu" or (counts < 1).any() or counts.sum() != total:
        raise CheckpointError(f"{path}: K = {counts.tolist()} must be one count >= 1 per unit, summing to the "
                              f"{total} rows of means")
    for name, a in (("means", means), ("sigma", sigma), ("pi", pi)):
        if not np.isfinite(a).all():
            raise CheckpointError(f"{path}: {name} holds non-finite values")
    if (pi < 0).any():
        raise CheckpointError(f"{path}: pi holds negative weights")
    ends = np.cumsum(counts)
    units = [(means[e - k:e], sigma[e - k:e], pi[e - k:e]) for k, e in zip(counts, ends)]
    for i, (_, _, w) in enumerate(units):
        if not (w > 0).any():
            raise CheckpointError(f"{path}: unit {i} has no Gaussian of positive weight")
    return units


def anchor_buffers(mixtures: List[Mixture], num_units: int, unit_dim: int, k_max: int,
                   source: str = "Gaussian file") -> Dict[str, torch.Tensor]:
    """The state of a fitted ``DyGABottleneck(num_units, unit_dim, k_max)`` holding these mixtures."""
    dims = {m.shape[1] for m, _, _ in mixtures}
    if len(mixtures) != num_units or dims != {unit_dim}:
        raise CheckpointError(f"{source} holds {len(mixtures)} units of dimension {sorted(dims)}; the model has "
                              f"{num_units} units of {unit_dim} (model.encoder.num_units, unit_dim)")
    largest = max(len(m) for m, _, _ in mixtures)
    if largest > k_max:
        raise CheckpointError(f"{source} has a unit with {largest} Gaussians; model.bottleneck.dyga.k_max={k_max} "
                              f"holds fewer (set k_max >= {largest})")
    n, k, d = num_units, k_max, unit_dim
    buf = {"center": np.zeros((n, d)), "scale": np.ones(n), "means": np.zeros((n, k, d)),
           "variances": np.ones((n, k, d)), "eigenvectors": np.broadcast_to(np.eye(d), (n, k, d, d)).copy(),
           "intrinsic_dims": np.zeros((n, k), dtype=np.int64), "weights": np.zeros((n, k))}
    for i, (mu, cov, w) in enumerate(mixtures):
        cov = cov.astype(np.float64)
        for j in range(len(mu)):
            if not np.allclose(cov[j], cov[j].T, rtol=1e-4, atol=1e-7):
                raise CheckpointError(f"{source}: sigma of unit {i}, Gaussian {j} is not symmetric")
            values, vectors = np.linalg.eigh(0.5 * (cov[j] + cov[j].T) + RELEASED_REG * np.eye(d))
            if values[0] <= 0:
                raise CheckpointError(f"{source}: sigma of unit {i}, Gaussian {j} + {RELEASED_REG} I is not positive "
                                      f"definite (smallest eigenvalue {values[0]:.3g})")
            order = np.argsort(values)[::-1]  # largest first, as our HDDC keeps them
            buf["variances"][i, j], buf["eigenvectors"][i, j] = values[order], vectors[:, order]
            norm = np.linalg.norm(cov[j])
            scaled = np.linalg.eigvalsh(cov[j] / norm + RELEASED_REG * np.eye(d)) if norm > 0 else np.zeros(d)
            buf["intrinsic_dims"][i, j] = int((scaled > RELEASED_TOL).sum())
        buf["means"][i, :len(mu)], buf["weights"][i, :len(mu)] = mu, w
    out = {name: torch.as_tensor(a, dtype=torch.long if name == "intrinsic_dims" else torch.float32)
           for name, a in buf.items()}
    out["num_fits"] = torch.ones((), dtype=torch.long)
    return out
