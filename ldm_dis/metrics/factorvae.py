"""FactorVAE score (Kim and Mnih 2018), disentanglement_lib's protocol.

Global variances from 10,000 observations (ddof 1); dimensions whose std < 0.05 are pruned. Each
vote comes from a batch of 64 observations that share the value of one random factor: the vote
is (fixed factor, argmin over active dims of local variance / global variance). A majority-vote
classifier (code dim -> factor) is read from 10,000 training votes and scored on 5,000 more.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ldm_dis.metrics.code_table import CodeTable
from ldm_dis.metrics.sampling import RepresentationFn, encode_factors, fixed_factor_batches, sample_codes
from ldm_dis.metrics.units import scalar_codes


def factorvae_votes(
    batch_codes: np.ndarray, fixed: np.ndarray, global_variances: np.ndarray, active: np.ndarray, num_factors: int
) -> np.ndarray:
    """Vote counts of a set of fixed-factor batches.

    batch_codes: (V, B, d); fixed: (V,) factor index of each batch; global_variances: (d,);
    active: (d,) bool. Returns votes (F, d) int64: votes[k, j] = batches fixing factor k whose
    normalized variance is smallest in dim j (j indexes all dims; inactive ones never win).
    """
    local = batch_codes.var(axis=1, ddof=1)  # (V, d)
    active_idx = np.flatnonzero(active)
    argmin = active_idx[np.argmin(local[:, active_idx] / global_variances[active_idx], axis=1)]
    votes = np.zeros((num_factors, batch_codes.shape[2]), dtype=np.int64)
    np.add.at(votes, (fixed, argmin), 1)
    return votes


def factorvae_from_batches(
    global_codes: np.ndarray,
    train_batches: np.ndarray,
    train_fixed: np.ndarray,
    eval_batches: np.ndarray,
    eval_fixed: np.ndarray,
    num_factors: int,
    prune_threshold: float = 0.05,
) -> dict:
    """FactorVAE score from precomputed codes.

    global_codes: (n, d) for the global variances; *_batches: (V, B, d) codes of fixed-factor
    batches; *_fixed: (V,) the fixed factor of each batch. Returns train_accuracy, eval_accuracy,
    num_active_dims (0 and 0 when no dimension is active).
    """
    global_variances = np.var(global_codes, axis=0, ddof=1)
    active = np.sqrt(global_variances) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}
    train_votes = factorvae_votes(train_batches, train_fixed, global_variances, active, num_factors)
    classifier = np.argmax(train_votes, axis=0)  # (d,) majority factor of each dim
    dims = np.arange(train_votes.shape[1])
    eval_votes = factorvae_votes(eval_batches, eval_fixed, global_variances, active, num_factors)
    return {
        "train_accuracy": float(train_votes[classifier, dims].sum() / train_votes.sum()),
        "eval_accuracy": float(eval_votes[classifier, dims].sum() / eval_votes.sum()),
        "num_active_dims": float(active.sum()),
    }


def factorvae_metric(
    dataset,
    representation_fn: Optional[RepresentationFn],
    rng: np.random.Generator,
    num_variance_estimate: int = 10_000,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    batch_size: int = 64,
    prune_threshold: float = 0.05,
) -> dict:
    """Sample the protocol's observations and score them. See module docstring."""
    global_raw, _ = sample_codes(dataset, representation_fn, num_variance_estimate, rng)
    batches = []
    for num_votes in (num_train, num_eval):
        factors, fixed = fixed_factor_batches(dataset, num_votes, batch_size, rng)
        codes = encode_factors(dataset, representation_fn, factors.reshape(-1, factors.shape[-1]))
        batches.append((codes.reshape(num_votes, batch_size, *codes.shape[1:]), fixed))
    (train_raw, train_fixed), (eval_raw, eval_fixed) = batches
    # vector units: one PCA fitted on the global sample serves every batch
    flat = [train_raw.reshape(-1, *train_raw.shape[2:]), eval_raw.reshape(-1, *eval_raw.shape[2:])]
    global_codes, train_flat, eval_flat = scalar_codes(global_raw, *flat)
    return factorvae_from_batches(
        global_codes,
        train_flat.reshape(num_train, batch_size, -1),
        train_fixed,
        eval_flat.reshape(num_eval, batch_size, -1),
        eval_fixed,
        num_factors=len(dataset.factor_sizes),
        prune_threshold=prune_threshold,
    )


def factorvae(codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator, **protocol) -> dict:
    """FactorVAE score on precomputed codes (n, d) or (n, N, D) and factors (n, F): the batches are
    drawn by selecting rows that share the fixed factor's value (see CodeTable)."""
    return factorvae_metric(CodeTable(codes, factors), None, rng, **protocol)
