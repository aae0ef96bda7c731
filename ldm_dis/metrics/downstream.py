"""Downstream statistical efficiency (paper Table 5; Locatello et al. 2019).

Per factor, a gradient-boosted classifier (sklearn defaults) is trained on the first 100, 1,000
and 10,000 points of one training sample and tested on 5,000 held-out points; the accuracies are
averaged over factors. Reported: acc_<n> for each size and ratio_<n> = acc_<n> / acc_<largest>
(Acc100/Acc10000 and Acc1000/Acc10000 at the standard sizes). Every (factor, size) classifier is an
independent job with its own seed, run in parallel.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

from ldm_dis.metrics.information import informative_factors
from ldm_dis.metrics.parallel import run_jobs
from ldm_dis.metrics.sampling import RepresentationFn, sample_codes
from ldm_dis.metrics.units import scalar_codes


def gbt_test_accuracy(x_train, y_train, x_test, y_test, seed: int) -> float:
    """Test accuracy of a default GradientBoostingClassifier; a one-class training subset predicts
    that class (a small subset of a many-valued factor can miss classes; GBT refuses one class)."""
    if len(np.unique(y_train)) == 1:
        return float(np.mean(y_test == y_train[0]))
    model = GradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
    return float(np.mean(model.predict(x_test) == y_test))


def downstream(
    codes_train, factors_train, codes_test, factors_test,
    train_sizes: Sequence[int] = (100, 1_000, 10_000), seed: int = 0, n_jobs: Optional[int] = -1,
) -> dict:
    """On precomputed codes (n, d) and factors (n, F); ``codes_train`` needs max(train_sizes) rows.

    Returns acc_<n> for each size and ratio_<n> for each smaller size (constant factors left out).
    """
    sizes = sorted(int(s) for s in train_sizes)
    if len(codes_train) < sizes[-1]:
        raise ValueError(f"downstream needs {sizes[-1]} training points, got {len(codes_train)}")
    used = np.flatnonzero(informative_factors(factors_train))
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=(len(sizes), factors_train.shape[1]))
    jobs, costs = [], []
    for s, size in enumerate(sizes):
        for j in used:
            jobs.append((codes_train[:size], factors_train[:size, j], codes_test, factors_test[:, j], int(seeds[s, j])))
            costs.append(size * len(np.unique(factors_train[:, j])))
    acc = np.array(run_jobs(gbt_test_accuracy, jobs, n_jobs=n_jobs, costs=costs)).reshape(len(sizes), len(used))
    mean_acc = acc.mean(axis=1) if len(used) else np.zeros(len(sizes))
    out = {f"acc_{size}": float(a) for size, a in zip(sizes, mean_acc)}
    for size, a in zip(sizes[:-1], mean_acc[:-1]):
        out[f"ratio_{size}"] = float(a / mean_acc[-1]) if mean_acc[-1] > 0 else 0.0
    return out


def downstream_metric(
    dataset,
    representation_fn: Optional[RepresentationFn],
    rng: np.random.Generator,
    train_sizes: Sequence[int] = (100, 1_000, 10_000),
    num_test: int = 5_000,
    n_jobs: Optional[int] = -1,
) -> dict:
    """Sample max(train_sizes) training and ``num_test`` test points and score them."""
    raw_train, factors_train = sample_codes(dataset, representation_fn, max(train_sizes), rng)
    raw_test, factors_test = sample_codes(dataset, representation_fn, num_test, rng)
    codes_train, codes_test = scalar_codes(raw_train, raw_test)
    seed = int(rng.integers(0, 2**31 - 1))
    return downstream(codes_train, factors_train, codes_test, factors_test, train_sizes, seed, n_jobs)
