"""SAP score (Kumar et al. 2018) for discrete factors, disentanglement_lib's protocol.

10,000 train / 5,000 test points; for every (code, factor) pair the test accuracy of
LinearSVC(C=0.01, class_weight="balanced") fitted on that single code; per factor the gap between the
two best codes; mean over factors. The codes' fits run in threads (liblinear releases the GIL): 60
one-feature LinearSVC fits take about one CPU second at the standard sizes, less than handing the data
to worker processes would cost.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from ldm_dis.metrics.information import informative_factors
from ldm_dis.metrics.parallel import run_jobs
from ldm_dis.metrics.sampling import RepresentationFn, sample_codes
from ldm_dis.metrics.units import scalar_codes


def code_scores(x_train, factors_train, x_test, factors_test) -> np.ndarray:
    """Test accuracy of a single code (n,) for every factor. Returns (F,), NaN for constant factors."""
    scores = np.full(factors_train.shape[1], np.nan)
    for j in np.flatnonzero(informative_factors(factors_train)):
        clf = LinearSVC(C=0.01, class_weight="balanced")
        with warnings.catch_warnings():
            # liblinear's iteration cap is part of the protocol; its warning is noise here
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x_train[:, None], factors_train[:, j])
        scores[j] = np.mean(clf.predict(x_test[:, None]) == factors_test[:, j])
    return scores


def sap_from_scores(score_matrix: np.ndarray) -> float:
    """score_matrix: (d, F). Mean over factors (ignoring NaN columns) of best - second best code."""
    cols = ~np.isnan(score_matrix).all(axis=0)
    if not cols.any():
        return 0.0
    top = np.sort(score_matrix[:, cols], axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros(top.shape[1])
    return float(np.mean(top[0] - second))


def sap(codes_train, factors_train, codes_test, factors_test, n_jobs: Optional[int] = -1) -> dict:
    """SAP on precomputed codes (n, d) and factors (n, F). Returns SAP_score and score_matrix (d, F)."""
    jobs = [(codes_train[:, i], factors_train, codes_test[:, i], factors_test) for i in range(codes_train.shape[1])]
    score_matrix = np.stack(run_jobs(code_scores, jobs, n_jobs=n_jobs, threads=True))
    return {"SAP_score": sap_from_scores(score_matrix), "score_matrix": score_matrix}


def sap_metric(
    dataset,
    representation_fn: Optional[RepresentationFn],
    rng: np.random.Generator,
    num_train: int = 10_000,
    num_test: int = 5_000,
    n_jobs: Optional[int] = -1,
) -> dict:
    """Sample the protocol's train and test points and score them with :func:`sap`."""
    raw_train, factors_train = sample_codes(dataset, representation_fn, num_train, rng)
    raw_test, factors_test = sample_codes(dataset, representation_fn, num_test, rng)
    codes_train, codes_test = scalar_codes(raw_train, raw_test)
    return sap(codes_train, factors_train, codes_test, factors_test, n_jobs=n_jobs)
