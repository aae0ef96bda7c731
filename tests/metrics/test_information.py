"""Discretization, entropy and mutual information against hand values and sklearn."""

import numpy as np
from sklearn.metrics import mutual_info_score

import dislib_reference as reference
from ldm_dis.metrics.information import (
    entropy,
    histogram_discretize,
    informative_factors,
    mutual_info_matrix,
)


def test_entropy_is_in_nats():
    assert np.isclose(entropy(np.array([0, 0, 1, 1])), np.log(2))
    assert np.isclose(entropy(np.array([5, 6, 7, 8])), np.log(4))
    assert entropy(np.array([3, 3, 3])) == 0.0


def test_histogram_discretize_matches_reference_digitize():
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.normal(size=(500, 3)), np.full((500, 1), 2.0)], axis=1)
    ours = histogram_discretize(codes, 20)
    theirs = reference.histogram_discretize(codes.T, 20).T.astype(np.int64) - 1
    np.testing.assert_array_equal(ours, theirs)
    assert ours.min() == 0 and ours[:, 0].max() == 19  # the maximum lands in the last bin


def test_mutual_info_matrix_matches_sklearn():
    rng = np.random.default_rng(1)
    factors = rng.integers(0, [3, 5, 1], size=(400, 3))  # the last factor is constant
    codes = np.stack([factors[:, 0] * 2 + rng.integers(2, size=400), rng.integers(7, size=400),
                      np.zeros(400, dtype=int)], axis=1)
    m = mutual_info_matrix(codes, factors)
    for i in range(3):
        for j in range(3):
            assert np.isclose(m[i, j], mutual_info_score(factors[:, j], codes[:, i]), atol=1e-12)
    assert m[:, 2].max() == 0.0 and m[2].max() == 0.0


def test_code_equal_to_factor_has_mi_equal_to_entropy():
    y = np.array([0, 1, 2, 2, 1, 0, 0, 0])
    m = mutual_info_matrix(y[:, None], y[:, None])
    assert np.isclose(m[0, 0], entropy(y))


def test_informative_factors_flags_single_valued_columns():
    factors = np.array([[0, 1, 4], [1, 1, 4], [2, 1, 5]])
    np.testing.assert_array_equal(informative_factors(factors), [True, False, True])
