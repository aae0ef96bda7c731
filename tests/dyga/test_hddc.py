"""HDDC as an estimator: its density is the structured Gaussian, its dimensions come from the scree
test, it models low-dimensional clusters better than a diagonal mixture, and it follows scikit-learn's
estimator conventions (validated parameters, NotFittedError, learned attributes ending in `_`)."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture

from ldm_dis.bottlenecks.dyga import HDDC
from ldm_dis.bottlenecks.dyga.hddc import scree_dimension


def test_scree_dimension_on_hand_made_spectra():
    # gaps 1, 7, 0.2, 0 -> largest 7; gaps >= 0.2 * 7 = 1.4: only the second -> d = 2
    assert scree_dimension(np.array([10.0, 9.0, 2.0, 1.8, 1.8]), 0.2) == 2
    # a gap of 1 is above 0.1 * 7: the first gap also counts, but d is the *last* such index
    assert scree_dimension(np.array([10.0, 9.0, 2.0, 1.8, 1.8]), 0.1) == 2
    assert scree_dimension(np.array([10.0, 3.0, 2.9, 2.8, 0.1]), 0.2) == 4  # last big gap wins
    assert scree_dimension(np.array([1.0, 1.0, 1.0]), 0.2) == 0  # isotropic: no subspace
    assert scree_dimension(np.array([5.0]), 0.2) == 0


def test_log_density_is_the_structured_gaussian(clusters):
    X, _, _ = clusters(3, 200, seed=1)
    model = HDDC(3, random_state=0, max_iter=5).fit(X)
    reference = np.stack(
        [np.log(model.weights_[k]) + multivariate_normal(model.means_[k], model.covariances_[k]).logpdf(X)
         for k in range(3)], axis=1)
    np.testing.assert_allclose(model.weighted_log_prob(X), reference, rtol=1e-8, atol=1e-6)
    # the covariance really is [a_ij b_i Q_i d_i]: d_i free eigenvalues, the rest tied to b_i
    for k in range(3):
        d = model.intrinsic_dims_[k]
        spectrum = np.sort(np.linalg.eigvalsh(model.covariances_[k]))[::-1]
        np.testing.assert_allclose(spectrum[d:], model.noise_variances_[k], rtol=1e-6)
        assert np.all(spectrum[:d] > model.noise_variances_[k])


def test_recovers_intrinsic_dimension_and_clusters(clusters):
    X, labels, centers = clusters(4, 400, intrinsic_dim=3, seed=2)
    model = HDDC(4, random_state=0).fit(X)
    assert model.converged_
    assert list(model.intrinsic_dims_) == [3, 3, 3, 3]
    pred = model.predict(X)
    for k in range(4):  # every component is one true cluster
        assert np.bincount(labels[pred == k], minlength=4).max() == (pred == k).sum()
    np.testing.assert_allclose(model.predict_proba(X).sum(1), 1.0)
    assert model.weights_.sum() == pytest.approx(1.0)


def test_beats_diagonal_mixture_on_low_dimensional_data(clusters):
    X, _, _ = clusters(5, 600, intrinsic_dim=2, noise=0.01, seed=3)
    train, test = X[:2000], X[2000:]
    hddc = HDDC(5, random_state=0).fit(train)
    diag = GaussianMixture(5, covariance_type="diag", random_state=0).fit(train)
    # subspaces at random angles: a diagonal covariance cannot follow them, the structured one can
    assert hddc.score(test) > diag.score(test) + 10.0


def test_affine_equivariance_and_seeded_reproducibility(clusters):
    X, _, _ = clusters(3, 300, seed=4)
    a = HDDC(3, random_state=7).fit(X)
    b = HDDC(3, random_state=7).fit(3.0 * X + 1.5)
    np.testing.assert_allclose(b.means_, 3.0 * a.means_ + 1.5, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(b.variances_, 9.0 * a.variances_, rtol=1e-6)
    assert b.score(3.0 * X + 1.5) == pytest.approx(a.score(X) - X.shape[1] * np.log(3.0), rel=1e-8)
    c = a.transformed(3.0, np.full(X.shape[1], 1.5))
    np.testing.assert_allclose(c.score_samples(3.0 * X + 1.5), b.score_samples(3.0 * X + 1.5), rtol=1e-6)
    np.testing.assert_array_equal(HDDC(3, random_state=7).fit(X).means_, a.means_)


def test_continues_from_given_responsibilities(clusters):
    X, labels, _ = clusters(3, 200, seed=5)
    resp = np.eye(3)[labels]
    model = HDDC(3, max_iter=1, init_resp=resp).fit(X)  # one M-step on the true labels
    assert model.n_components_ == 3
    for k in range(3):
        np.testing.assert_allclose(model.means_[k], X[labels == k].mean(0))
    with pytest.raises(ValueError, match=r"init_resp has shape \(600, 3\).*\(600, 4\) was expected"):
        HDDC(4, init_resp=resp).fit(X)


def test_passes_scikit_learns_estimator_checks():
    """check_estimator's 41 checks: get/set_params and clone, input validation (1-D, NaN, sparse, complex,
    n_features_in_), NotFittedError, fit idempotence, pickling, ..."""
    import warnings

    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(HDDC(n_components=2, max_iter=10, random_state=0), on_fail=None)
    failed = {r["check_name"]: str(r["exception"])[:200] for r in results if r["status"] == "failed"}
    assert len(results) > 30 and failed == {}


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score", "weighted_log_prob"])
def test_not_fitted_error_before_fit(method):
    from sklearn.exceptions import NotFittedError

    model = HDDC(2)
    with pytest.raises(NotFittedError, match="HDDC instance is not fitted yet"):
        getattr(model, method)(np.zeros((4, 3)))
    for attribute in ("n_components_", "covariances_"):
        with pytest.raises(NotFittedError):
            getattr(model, attribute)
    with pytest.raises(NotFittedError):
        model.transformed(2.0, np.zeros(3))


@pytest.mark.parametrize("param, value", [
    ("n_components", 0), ("n_components", 2.5), ("max_iter", 0), ("tol", -1e-3), ("dim_threshold", 1.5),
    ("reg_covar", -1.0), ("random_state", "seven"), ("init_resp", "labels"),
])
def test_parameters_are_validated_by_fit_naming_the_parameter(param, value):
    from sklearn.utils._param_validation import InvalidParameterError

    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(InvalidParameterError, match=f"The '{param}' parameter of HDDC must be"):
        HDDC(**{"n_components": 2, param: value}).fit(X)


def test_initial_values_are_parameters_and_learned_state_ends_in_underscore(clusters):
    X, labels, _ = clusters(3, 100, seed=6)
    resp = np.eye(3)[labels]
    model = HDDC(3, max_iter=2, init_resp=resp)
    assert model.get_params()["init_resp"] is resp  # the start of EM is set like every hyperparameter
    before = set(vars(model))
    model.fit(X)
    learned = set(vars(model)) - before
    assert learned and all(name.endswith("_") for name in learned), sorted(learned)
    assert {"means_", "weights_", "reg_floor_", "n_features_in_", "n_iter_"} <= learned
    assert model.n_iter_ == 2
