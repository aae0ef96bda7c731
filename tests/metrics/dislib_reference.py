"""INDEPENDENT ORACLE for tests and the benchmark: a minimal transcription of disentanglement_lib's
metric formulas and sampling loops (google-research/disentanglement_lib, evaluation/metrics/
factor_vae.py, dci.py, mig.py, sap_score.py, modularity_explicitness.py, utils.py), serial, as the
reference runs them. It is not part of the package; it exists to check that our implementation
agrees with the reference's numbers and to time the reference-style computation.

Conventions kept from the reference: codes are (num_codes, num_points) and factors
(num_factors, num_points); samples come from a ``numpy.random.RandomState``; representations are
computed 16 (or 64 for FactorVAE) observations at a time and stacked with ``np.vstack``.
Two adaptations to current libraries, both noted where they occur: scipy/sklearn calls that no
longer exist in their old form, and ``LogisticRegression`` now needs ``solver="liblinear"`` wrapped
in one-vs-rest to reproduce the old default.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
import sklearn.metrics
from sklearn import svm
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import MultiLabelBinarizer


# ---- utils.py
def generate_batch_factor_code(dataset, rep_fn, num_points, random_state, batch_size=16):
    representations, factors = None, None
    i = 0
    while i < num_points:
        n = min(num_points - i, batch_size)
        f = sample_factors(dataset, n, random_state)
        r = rep_fn(dataset.images_from_factors(f))
        factors = f if i == 0 else np.vstack((factors, f))
        representations = r if i == 0 else np.vstack((representations, r))
        i += n
    return np.transpose(representations), np.transpose(factors)


def sample_factors(dataset, n, random_state):
    return np.stack([random_state.randint(k, size=n) for k in dataset.factor_sizes], axis=1)


def histogram_discretize(target, num_bins=20):
    discretized = np.zeros_like(target)
    for i in range(target.shape[0]):
        discretized[i, :] = np.digitize(target[i, :], np.histogram(target[i, :], num_bins)[1][:-1])
    return discretized


def discrete_mutual_info(mus, ys):
    m = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            m[i, j] = sklearn.metrics.mutual_info_score(ys[j, :], mus[i, :])
    return m


def discrete_entropy(ys):
    return np.array([sklearn.metrics.mutual_info_score(ys[j, :], ys[j, :]) for j in range(ys.shape[0])])


# ---- factor_vae.py
def factor_vae(dataset, rep_fn, random_state, batch_size=64, num_train=10000, num_eval=5000,
               num_variance_estimate=10000, prune_threshold=0.05):
    obs = dataset.images_from_factors(sample_factors(dataset, num_variance_estimate, random_state))
    global_variances = np.var(rep_fn(obs), axis=0, ddof=1)
    active_dims = np.sqrt(global_variances) >= prune_threshold
    if not active_dims.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0}

    def votes_of(num_points):
        votes = np.zeros((len(dataset.factor_sizes), global_variances.shape[0]), dtype=np.int64)
        for _ in range(num_points):
            factor_index = random_state.randint(len(dataset.factor_sizes))
            factors = sample_factors(dataset, batch_size, random_state)
            factors[:, factor_index] = factors[0, factor_index]
            local = np.var(rep_fn(dataset.images_from_factors(factors)), axis=0, ddof=1)
            # the reference indexes with the boolean mask, so argmin is a position among active dims
            argmin = np.argmin(local[active_dims] / global_variances[active_dims])
            votes[factor_index, argmin] += 1
        return votes

    training_votes = votes_of(num_train)
    classifier = np.argmax(training_votes, axis=0)
    other_index = np.arange(training_votes.shape[1])
    train_accuracy = np.sum(training_votes[classifier, other_index]) / np.sum(training_votes)
    eval_votes = votes_of(num_eval)
    eval_accuracy = np.sum(eval_votes[classifier, other_index]) / np.sum(eval_votes)
    return {"train_accuracy": train_accuracy, "eval_accuracy": eval_accuracy}


# ---- dci.py
def compute_importance_gbt(x_train, y_train, x_test, y_test, seeds=None):
    # seeds: not in the reference (it leaves random_state unset); tests pass ours to compare exactly
    importance_matrix = np.zeros([x_train.shape[0], y_train.shape[0]])
    train_loss, test_loss = [], []
    for i in range(y_train.shape[0]):
        model = GradientBoostingClassifier(random_state=None if seeds is None else int(seeds[i]))
        model.fit(x_train.T, y_train[i, :])
        importance_matrix[:, i] = np.abs(model.feature_importances_)
        train_loss.append(np.mean(model.predict(x_train.T) == y_train[i, :]))
        test_loss.append(np.mean(model.predict(x_test.T) == y_test[i, :]))
    return importance_matrix, np.mean(train_loss), np.mean(test_loss)


def dci_disentanglement(importance_matrix):
    per_code = 1.0 - scipy.stats.entropy(importance_matrix.T + 1e-11, base=importance_matrix.shape[1])
    if importance_matrix.sum() == 0.0:
        importance_matrix = np.ones_like(importance_matrix)
    code_importance = importance_matrix.sum(axis=1) / importance_matrix.sum()
    return np.sum(per_code * code_importance)


def dci_completeness(importance_matrix):
    per_factor = 1.0 - scipy.stats.entropy(importance_matrix + 1e-11, base=importance_matrix.shape[0])
    if importance_matrix.sum() == 0.0:
        importance_matrix = np.ones_like(importance_matrix)
    factor_importance = importance_matrix.sum(axis=0) / importance_matrix.sum()
    return np.sum(per_factor * factor_importance)


def dci_from_arrays(mus_train, ys_train, mus_test, ys_test, seeds=None):
    importance, train_acc, test_acc = compute_importance_gbt(mus_train, ys_train, mus_test, ys_test, seeds)
    return {"informativeness_train": train_acc, "informativeness_test": test_acc,
            "disentanglement": dci_disentanglement(importance), "completeness": dci_completeness(importance)}


def dci(dataset, rep_fn, random_state, num_train=10000, num_test=5000):
    mus_train, ys_train = generate_batch_factor_code(dataset, rep_fn, num_train, random_state)
    mus_test, ys_test = generate_batch_factor_code(dataset, rep_fn, num_test, random_state)
    return dci_from_arrays(mus_train, ys_train, mus_test, ys_test)


# ---- mig.py
def mig_from_arrays(mus_train, ys_train):
    m = discrete_mutual_info(histogram_discretize(mus_train), ys_train)
    entropy = discrete_entropy(ys_train)
    sorted_m = np.sort(m, axis=0)[::-1]
    return {"discrete_mig": np.mean(np.divide(sorted_m[0, :] - sorted_m[1, :], entropy[:]))}


def mig(dataset, rep_fn, random_state, num_train=10000):
    return mig_from_arrays(*generate_batch_factor_code(dataset, rep_fn, num_train, random_state))


# ---- sap_score.py (discrete factors)
def sap_from_arrays(mus, ys, mus_test, ys_test):
    score_matrix = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            classifier = svm.LinearSVC(C=0.01, class_weight="balanced")
            classifier.fit(mus[i, :][:, np.newaxis], ys[j, :])
            pred = classifier.predict(mus_test[i, :][:, np.newaxis])
            score_matrix[i, j] = np.mean(pred == ys_test[j, :])
    sorted_matrix = np.sort(score_matrix, axis=0)
    return {"SAP_score": np.mean(sorted_matrix[-1, :] - sorted_matrix[-2, :])}


def sap(dataset, rep_fn, random_state, num_train=10000, num_test=5000):
    mus, ys = generate_batch_factor_code(dataset, rep_fn, num_train, random_state)
    mus_test, ys_test = generate_batch_factor_code(dataset, rep_fn, num_test, random_state)
    return sap_from_arrays(mus, ys, mus_test, ys_test)


# ---- modularity_explicitness.py
def modularity_from_mi(mutual_information):
    squared_mi = np.square(mutual_information)
    max_squared_mi = np.max(squared_mi, axis=1)
    numerator = np.sum(squared_mi, axis=1) - max_squared_mi
    denominator = max_squared_mi * (squared_mi.shape[1] - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        modularity_score = 1.0 - numerator / denominator
    modularity_score[max_squared_mi == 0.0] = 0.0
    return np.mean(modularity_score)


def explicitness_per_factor(mus_train, y_train, mus_test, y_test):
    # adaptation: the reference's LogisticRegression() defaulted to liblinear one-vs-rest
    clf = OneVsRestClassifier(LogisticRegression(solver="liblinear")).fit(mus_train.T, y_train)
    mlb = MultiLabelBinarizer()
    roc_train = roc_auc_score(mlb.fit_transform(np.expand_dims(y_train, 1)), clf.predict_proba(mus_train.T))
    roc_test = roc_auc_score(mlb.fit_transform(np.expand_dims(y_test, 1)), clf.predict_proba(mus_test.T))
    return roc_train, roc_test


def modularity_from_arrays(mus_train, ys_train, mus_test, ys_test):
    scores = {"modularity_score": modularity_from_mi(discrete_mutual_info(histogram_discretize(mus_train), ys_train))}
    mean, std = np.mean(mus_train, axis=1), np.std(mus_train, axis=1)
    train_norm = (mus_train - mean[:, None]) / std[:, None]
    test_norm = (mus_test - mean[:, None]) / std[:, None]
    rocs = [explicitness_per_factor(train_norm, ys_train[i], test_norm, ys_test[i]) for i in range(ys_train.shape[0])]
    scores["explicitness_score_train"] = np.mean([r[0] for r in rocs])
    scores["explicitness_score_test"] = np.mean([r[1] for r in rocs])
    return scores


def modularity(dataset, rep_fn, random_state, num_train=10000, num_test=5000):
    mus_train, ys_train = generate_batch_factor_code(dataset, rep_fn, num_train, random_state)
    mus_test, ys_test = generate_batch_factor_code(dataset, rep_fn, num_test, random_state)
    return modularity_from_arrays(mus_train, ys_train, mus_test, ys_test)


CLASSIC = {"factorvae": factor_vae, "dci": dci, "mig": mig, "sap": sap, "modularity": modularity}
