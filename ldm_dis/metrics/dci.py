"""DCI: disentanglement, completeness, informativeness (Eastwood and Williams 2018).

disentanglement_lib's protocol: 10,000 train / 5,000 test points; one GradientBoostingClassifier
(sklearn defaults) per factor; importance R[code, factor] = |feature_importances_|;
disentanglement = sum_i rho_i (1 - H_F(P_i.)) with P_i. = R_i. / sum_j R_ij, rho_i = R_i. / sum R and
the entropy in base F (#factors); completeness the same per factor with base d (#codes);
informativeness = mean train / test accuracy. Entropies add 1e-11 to every entry, as the reference
does, so an all-zero row is a uniform distribution (score 0) rather than a NaN.
The per-factor classifiers are independent, each with its own seed; their boosting loops run in
threads that share one pool of tree workers (one per core), so every core fits trees until the last
stage of the last factor (``metrics/gbt.py``). The fitted classifiers are sklearn's, bit for bit, so
the parallel numbers equal the serial ones.
"""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Optional

import numpy as np

from ldm_dis.metrics.gbt import PooledGradientBoostingClassifier
from ldm_dis.metrics.information import informative_factors
from ldm_dis.metrics.parallel import resolve_jobs
from ldm_dis.metrics.sampling import RepresentationFn, sample_codes
from ldm_dis.metrics.units import scalar_codes

_EPS = 1e-11


def _entropy_rows(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy of each row of a nonnegative matrix (rows normalized after adding 1e-11), in ``base``."""
    p = p + _EPS
    p = p / p.sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1) / np.log(base)


def disentanglement(importance: np.ndarray) -> float:
    """importance: (d codes, F factors), nonnegative. Weighted mean of 1 - H_F over codes."""
    d, f = importance.shape
    per_code = np.ones(d) if f == 1 else 1.0 - _entropy_rows(importance, f)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    rho = weights.sum(axis=1) / weights.sum()
    return float((per_code * rho).sum())


def completeness(importance: np.ndarray) -> float:
    """importance: (d codes, F factors). Weighted mean of 1 - H_d over factors."""
    return disentanglement(importance.T)


def fit_factor_gbt(x_train, y_train, x_test, y_test, seed: int,
                   tree_pool: Optional[Executor] = None) -> tuple[np.ndarray, float, float]:
    """One factor's classifier. x: (n, d), y: (n,). Returns (|importances| (d,), train acc, test acc).

    ``random_state`` is set because sklearn's trees permute features at random to break ties
    between equally good splits; the reference left it unset (same distribution, unreproducible).
    ``tree_pool``: where the trees of each boosting stage are fitted (None: in this thread).
    """
    model = PooledGradientBoostingClassifier(random_state=seed)
    model.tree_pool = tree_pool
    model.fit(x_train, y_train)
    train_acc = float(np.mean(model.predict(x_train) == y_train))
    test_acc = float(np.mean(model.predict(x_test) == y_test))
    return np.abs(model.feature_importances_), train_acc, test_acc


def importance_gbt(codes_train, factors_train, codes_test, factors_test, seeds, n_jobs=-1):
    """Importance matrix (d, F) and per-factor train/test accuracies (F,), NaN for skipped factors.

    Factors with one value in the training sample get a zero importance column and no accuracy.
    """
    d, num_factors = codes_train.shape[1], factors_train.shape[1]
    used = np.flatnonzero(informative_factors(factors_train))
    # trees read X as float32 anyway; converting once (column-major, for the splitter's per-feature
    # scans) saves each classifier the copy; the numbers are unchanged
    x_train = np.asfortranarray(codes_train, dtype=np.float32)
    x_test = np.asfortranarray(codes_test, dtype=np.float32)
    jobs = [(x_train, factors_train[:, j], x_test, factors_test[:, j], int(seeds[j])) for j in used]
    workers = resolve_jobs(n_jobs)
    if workers <= 1 or not jobs:
        results = [fit_factor_gbt(*job) for job in jobs]
    else:
        # one boosting loop per factor (cheap Python between stages), all feeding one pool of tree
        # workers (the GIL-free work): the cores stay busy whatever the factors' class counts
        with ThreadPoolExecutor(workers, thread_name_prefix="dci-tree") as trees, \
                ThreadPoolExecutor(len(jobs), thread_name_prefix="dci-factor") as loops:
            results = list(loops.map(lambda job: fit_factor_gbt(*job, tree_pool=trees), jobs))
    importance = np.zeros((d, num_factors))
    train_acc = np.full(num_factors, np.nan)
    test_acc = np.full(num_factors, np.nan)
    for j, (imp, acc_tr, acc_te) in zip(used, results):
        importance[:, j], train_acc[j], test_acc[j] = imp, acc_tr, acc_te
    return importance, train_acc, test_acc


def dci(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    seed: int = 0,
    n_jobs: Optional[int] = -1,
) -> dict:
    """DCI on precomputed codes (n, d) and factor indices (n, F).

    Returns disentanglement, completeness, informativeness_train, informativeness_test (floats) and
    importance_matrix (d, F). Factors with a single value are left out of the scores.
    """
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=factors_train.shape[1])
    importance, train_acc, test_acc = importance_gbt(
        codes_train, factors_train, codes_test, factors_test, seeds, n_jobs
    )
    used = informative_factors(factors_train)
    if not used.any():
        return {
            "disentanglement": 0.0, "completeness": 0.0,
            "informativeness_train": 0.0, "informativeness_test": 0.0,
            "importance_matrix": importance,
        }
    return {
        "disentanglement": disentanglement(importance[:, used]),
        "completeness": completeness(importance[:, used]),
        "informativeness_train": float(np.nanmean(train_acc)),
        "informativeness_test": float(np.nanmean(test_acc)),
        "importance_matrix": importance,
    }


def dci_metric(
    dataset,
    representation_fn: Optional[RepresentationFn],
    rng: np.random.Generator,
    num_train: int = 10_000,
    num_test: int = 5_000,
    n_jobs: Optional[int] = -1,
) -> dict:
    """Sample the protocol's train and test points and score them with :func:`dci`."""
    raw_train, factors_train = sample_codes(dataset, representation_fn, num_train, rng)
    raw_test, factors_test = sample_codes(dataset, representation_fn, num_test, rng)
    codes_train, codes_test = scalar_codes(raw_train, raw_test)
    seed = int(rng.integers(0, 2**31 - 1))
    return dci(codes_train, factors_train, codes_test, factors_test, seed=seed, n_jobs=n_jobs)
