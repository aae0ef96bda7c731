"""InfoMEC: InfoM (modularity), InfoE (explicitness), InfoC (compactness) (Hsu et al. 2023).

NMI[i, j] = I(s_i; z_j) / H(s_i) for factor (source) i and code j, in nats. Continuous codes are
standardized and I is the k-NN estimate ``mutual_info_classif(n_neighbors=10)``; discrete codes use
``mutual_info_score``. Active codes (``active_rule``): "range", range > (largest range) / 20 for
continuous codes and range > 0 for discrete ones (Hsu et al.); "iqr", the released code's rule,
interquartile range > (largest IQR) / 10 for continuous codes and IQR > 0.1 for discrete ones. Over active codes, with K factors and A active codes:
InfoM = (mean_j max_i NMI / sum_i NMI - 1/K) / (1 - 1/K),
InfoC = (mean_i max_j NMI / sum_j NMI - 1/A) / (1 - 1/A).
InfoE = mean over factors of (H_null - CE) / H_null, where CE is the training log-loss of an
unpenalized multinomial logistic regression (class_weight="balanced", lbfgs, 100 iterations) on the
standardized (or one-hot) codes, and H_null that of the same model on no features: with balanced
weights that model predicts the uniform distribution, so H_null = ln(#classes) exactly.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import mutual_info_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from ldm_dis.metrics.information import entropy, informative_factors, mutual_info_matrix, relabel
from ldm_dis.metrics.parallel import run_jobs
from ldm_dis.metrics.sampling import RepresentationFn, sample_codes
from ldm_dis.metrics.units import scalar_codes

# a code column with at most this many distinct values is treated as discrete (a quantized latent)
MAX_DISCRETE_VALUES = 64


def is_discrete(codes: np.ndarray) -> bool:
    """True when every code column takes at most MAX_DISCRETE_VALUES distinct values."""
    return all(len(np.unique(codes[:, j])) <= MAX_DISCRETE_VALUES for j in range(codes.shape[1]))


def standardize(codes: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column; constant columns become 0 instead of NaN."""
    std = codes.std(axis=0)
    return (codes - codes.mean(axis=0)) / np.where(std > 0, std, 1.0)


def one_hot(codes: np.ndarray) -> np.ndarray:
    """Discrete codes (n, d) -> concatenated one-hot columns (n, sum of distinct values per code)."""
    blocks = []
    for j in range(codes.shape[1]):
        labels, k = relabel(codes[:, j])
        blocks.append(np.eye(k)[labels])
    return np.concatenate(blocks, axis=1)


def _factor_mi_continuous(codes_std: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """k-NN MI (nats) of every standardized code column (n, d) with one factor (n,). Returns (d,)."""
    return mutual_info_classif(codes_std, y, discrete_features=False, n_neighbors=10, random_state=seed)


def nmi_matrix(codes: np.ndarray, factors: np.ndarray, discrete: bool, seed: int = 0, n_jobs=-1) -> np.ndarray:
    """NMI (F, d): I(factor_i; code_j) / H(factor_i); rows of constant factors are 0."""
    num_factors = factors.shape[1]
    ent = np.array([entropy(factors[:, i]) for i in range(num_factors)])
    if discrete:
        mi = mutual_info_matrix(codes, factors).T
    else:
        codes_std = standardize(codes)
        used = np.flatnonzero(ent > 0)
        rows = run_jobs(_factor_mi_continuous, [(codes_std, factors[:, i], seed) for i in used], n_jobs=n_jobs)
        mi = np.zeros((num_factors, codes.shape[1]))
        for i, row in zip(used, rows):
            mi[i] = row
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ent[:, None] > 0, mi / ent[:, None], 0.0)


def _ratio_score(matrix: np.ndarray, axis: int, count: int) -> float:
    """(mean of max/sum along ``axis`` - 1/count) / (1 - 1/count); entries with zero sum count as 1/count."""
    if count <= 1:
        return 1.0 if count == 1 else 0.0
    total = matrix.sum(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(total > 0, matrix.max(axis=axis) / total, 1.0 / count)
    return float((ratio.mean() - 1.0 / count) / (1.0 - 1.0 / count))


def infoe_factor(features: np.ndarray, y: np.ndarray) -> float:
    """Normalized predictive information of one factor (n,) from features (n, p)."""
    labels, k = relabel(y)
    model = LogisticRegression(C=np.inf, class_weight="balanced", solver="lbfgs", max_iter=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 100 iterations is the protocol
        model.fit(features, labels)
    cross_entropy = log_loss(labels, model.predict_proba(features), labels=np.arange(k))
    h_null = np.log(k)
    return float((h_null - cross_entropy) / h_null)


ACTIVE_RULES = ("range", "iqr")


def active_codes(codes: np.ndarray, discrete: bool, rule: str = "range") -> np.ndarray:
    """(d,) bool: the codes InfoM and InfoC are computed over (see the module docstring)."""
    if rule == "range":
        spread = codes.max(axis=0) - codes.min(axis=0)
        return spread > 0 if discrete else spread > spread.max() / 20
    if rule == "iqr":
        q1, q3 = np.quantile(codes, [0.25, 0.75], axis=0)
        spread = q3 - q1
        return spread > 0.1 if discrete else spread > spread.max() / 10
    raise ValueError(f"InfoMEC active_rule={rule!r}: expected one of {list(ACTIVE_RULES)}")


def infomec(codes: np.ndarray, factors: np.ndarray, discrete: Optional[bool] = None, seed: int = 0, n_jobs=-1,
            active_rule: str = "range") -> dict:
    """InfoMEC on precomputed codes (n, d) and factors (n, F).

    discrete: None decides from the codes (see :func:`is_discrete`). active_rule: "range" or "iqr" (the
    released code's). Returns infom, infoe, infoc, num_active_codes (floats), nmi (F, d) and active (d,)
    bool. Constant factors are left out.
    """
    codes = np.asarray(codes)
    discrete = is_discrete(codes) if discrete is None else discrete
    active = active_codes(codes, discrete, active_rule)
    nmi = nmi_matrix(codes, factors, discrete, seed, n_jobs)
    used = informative_factors(factors)
    pruned = nmi[np.ix_(used, active)]
    num_factors, num_active = int(used.sum()), int(active.sum())
    features = one_hot(codes) if discrete else standardize(codes)
    infoe = run_jobs(infoe_factor, [(features, factors[:, i]) for i in np.flatnonzero(used)], n_jobs=n_jobs)
    empty = num_factors == 0 or num_active == 0
    return {
        "infom": 0.0 if empty else _ratio_score(pruned, axis=0, count=num_factors),
        "infoc": 0.0 if empty else _ratio_score(pruned, axis=1, count=num_active),
        "infoe": float(np.mean(infoe)) if infoe else 0.0,
        "num_active_codes": float(num_active),
        "nmi": nmi,
        "active": active,
    }


def infomec_metric(
    dataset,
    representation_fn: Optional[RepresentationFn],
    rng: np.random.Generator,
    num_points: int = 10_000,
    discrete: Optional[bool] = None,
    n_jobs: Optional[int] = -1,
    active_rule: str = "range",
) -> dict:
    """Sample the points and score them with :func:`infomec`."""
    if active_rule not in ACTIVE_RULES:  # before encoding anything
        raise ValueError(f"InfoMEC active_rule={active_rule!r}: expected one of {list(ACTIVE_RULES)}")
    raw, factors = sample_codes(dataset, representation_fn, num_points, rng)
    codes = raw if raw.ndim == 2 else scalar_codes(raw)[0]
    return infomec(codes, factors, discrete=discrete, seed=int(rng.integers(0, 2**31 - 1)), n_jobs=n_jobs,
                   active_rule=active_rule)
