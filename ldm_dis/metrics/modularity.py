"""Modularity and explicitness (Ridgeway and Zemel 2018), disentanglement_lib's protocol.

10,000 train / 5,000 test points. Modularity: m = 20-bin discretized MI (d, F); per code
1 - (sum_j m_ij^2 - max_j m_ij^2) / (max_j m_ij^2 (F - 1)), 0 where the max is 0; mean over codes.
Explicitness: codes standardized with the training mean/std; per factor a one-vs-rest logistic
regression (liblinear, C = 1: the sklearn default the reference ran with); the ROC-AUC of each class
against the rest, averaged over classes (macro); mean over factors, on train and on test.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.multiclass import OneVsRestClassifier

from ldm_dis.metrics.information import histogram_discretize, informative_factors, mutual_info_matrix
from ldm_dis.metrics.parallel import run_jobs
from ldm_dis.metrics.sampling import RepresentationFn, sample_codes
from ldm_dis.metrics.units import scalar_codes


def modularity_from_mi(m: np.ndarray) -> float:
    """m: (d, F) mutual information. Mean over codes of the Ridgeway-Zemel modularity."""
    sq = np.square(m)
    top = sq.max(axis=1)
    if m.shape[1] == 1:  # one factor: every informative code is trivially modular
        per_code = np.where(top > 0, 1.0, 0.0)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            per_code = 1.0 - (sq.sum(axis=1) - top) / (top * (m.shape[1] - 1))
        per_code = np.where(top > 0, per_code, 0.0)
    return float(per_code.mean())


def macro_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Mean over classes of the one-vs-rest ROC-AUC; classes absent from y (no positive) are skipped."""
    aucs = [
        roc_auc_score(y == c, proba[:, k])
        for k, c in enumerate(classes)
        if 0 < np.sum(y == c) < len(y)
    ]
    return float(np.mean(aucs)) if aucs else float("nan")


def explicitness_factor(x_train, y_train, x_test, y_test) -> tuple[float, float]:
    """ROC-AUC (train, test) of a one-vs-rest logistic regression predicting one factor (n,)."""
    clf = OneVsRestClassifier(LogisticRegression(solver="liblinear"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    return (
        macro_auc(y_train, clf.predict_proba(x_train), clf.classes_),
        macro_auc(y_test, clf.predict_proba(x_test), clf.classes_),
    )


def modularity_explicitness(codes_train, factors_train, codes_test, factors_test, num_bins: int = 20,
                            n_jobs: Optional[int] = -1) -> dict:
    """On precomputed codes (n, d) and factors (n, F). Returns modularity_score,
    explicitness_score_train, explicitness_score_test and mutual_info (d, F).
    Factors with one value are left out of both scores."""
    used = np.flatnonzero(informative_factors(factors_train))
    m = mutual_info_matrix(histogram_discretize(codes_train, num_bins), factors_train)
    mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant code standardizes to 0 instead of NaN
    x_train, x_test = (codes_train - mean) / std, (codes_test - mean) / std
    # threads, not processes: the F logistic regressions (liblinear, GIL released) take under two CPU
    # seconds at the standard sizes, less than handing the data to worker processes would cost
    jobs = [(x_train, factors_train[:, j], x_test, factors_test[:, j]) for j in used]
    costs = [len(np.unique(factors_train[:, j])) for j in used]  # one regression per class
    aucs = np.array(run_jobs(explicitness_factor, jobs, n_jobs=n_jobs, costs=costs, threads=True)).reshape(-1, 2)
    return {
        "modularity_score": modularity_from_mi(m[:, used]) if len(used) else 0.0,
        "explicitness_score_train": float(np.nanmean(aucs[:, 0])) if len(used) else 0.0,
        "explicitness_score_test": float(np.nanmean(aucs[:, 1])) if len(used) else 0.0,
        "mutual_info": m,
    }


def modularity_metric(
    dataset,
    representation_fn: Optional[RepresentationFn],
    rng: np.random.Generator,
    num_train: int = 10_000,
    num_test: int = 5_000,
    num_bins: int = 20,
    n_jobs: Optional[int] = -1,
) -> dict:
    """Sample the protocol's train and test points and score them."""
    raw_train, factors_train = sample_codes(dataset, representation_fn, num_train, rng)
    raw_test, factors_test = sample_codes(dataset, representation_fn, num_test, rng)
    codes_train, codes_test = scalar_codes(raw_train, raw_test)
    return modularity_explicitness(codes_train, factors_train, codes_test, factors_test, num_bins, n_jobs=n_jobs)
