"""DCI: formulas pinned by hand, agreement with the reference's formulas, known-answer codes."""

import numpy as np
import pytest

import dislib_reference as reference
from conftest import AlignedCodes, FactorImageDataset
from ldm_dis.metrics.dci import completeness, dci, dci_metric, disentanglement

SMALL = (3, 4, 2)


def _sample(dataset, rep, n, seed):
    rng = np.random.default_rng(seed)
    factors = dataset.sample_factors(n, rng)
    return rep(dataset.images_from_factors(factors)), factors


def test_hand_computed_two_by_two():
    # code 0 explains factor 0 only; code 1 splits evenly over both factors
    r = np.array([[1.0, 0.0], [1.0, 1.0]])
    # D = rho_0 * 1 + rho_1 * 0 with rho = (1/3, 2/3); C = w_0 * 0 + w_1 * 1 with w = (2/3, 1/3)
    assert disentanglement(r) == pytest.approx(1 / 3, abs=1e-8)
    assert completeness(r) == pytest.approx(1 / 3, abs=1e-8)


def test_entropy_base_is_number_of_factors_and_of_codes():
    # one code spread evenly over 3 factors: H_3 = 1, so D = 0 (base e would give 1 - ln 3 < 0)
    assert disentanglement(np.ones((1, 3))) == pytest.approx(0.0, abs=1e-8)
    # 4 codes evenly on one factor: base 4 -> C = 0
    assert completeness(np.ones((4, 1))) == pytest.approx(0.0, abs=1e-8)
    assert disentanglement(np.eye(5)) == pytest.approx(1.0, abs=1e-8)
    assert completeness(np.eye(5)) == pytest.approx(1.0, abs=1e-8)


def test_formulas_equal_reference_on_random_matrices():
    rng = np.random.default_rng(0)
    for shape in [(10, 6), (3, 7), (6, 6)]:
        r = rng.random(shape) * (rng.random(shape) > 0.3)
        assert disentanglement(r) == pytest.approx(reference.dci_disentanglement(r), abs=1e-12)
        assert completeness(r) == pytest.approx(reference.dci_completeness(r), abs=1e-12)


def test_zero_importance_gives_zero_not_nan():
    assert disentanglement(np.zeros((4, 3))) == pytest.approx(0.0, abs=1e-8)
    assert completeness(np.zeros((4, 3))) == pytest.approx(0.0, abs=1e-8)


def test_aligned_codes_score_near_one_and_rotation_lower():
    ds = FactorImageDataset(SMALL)
    aligned = dci(*_sample(ds, AlignedCodes(3), 300, 0), *_sample(ds, AlignedCodes(3), 150, 1), n_jobs=1)
    rotated = dci(*_sample(ds, AlignedCodes(3, rotate=True), 300, 0),
                  *_sample(ds, AlignedCodes(3, rotate=True), 150, 1), n_jobs=1)
    assert aligned["disentanglement"] > 0.95 and aligned["completeness"] > 0.95
    assert aligned["informativeness_test"] > 0.95
    assert rotated["disentanglement"] < aligned["disentanglement"] - 0.3
    assert rotated["completeness"] < aligned["completeness"] - 0.3
    assert aligned["importance_matrix"].shape == (3, 3)


def test_parallel_equals_serial_and_same_seed_same_numbers():
    ds = FactorImageDataset(SMALL)
    rep = AlignedCodes(3, rotate=True)
    serial = dci_metric(ds, rep, np.random.default_rng(5), num_train=200, num_test=100, n_jobs=1)
    parallel = dci_metric(ds, rep, np.random.default_rng(5), num_train=200, num_test=100, n_jobs=2)
    for key in serial:
        np.testing.assert_array_equal(serial[key], parallel[key])


def test_constant_factor_and_constant_code_give_finite_scores():
    ds = FactorImageDataset((3, 1, 4))  # the middle factor has one value
    codes, factors = _sample(ds, lambda im: np.concatenate([AlignedCodes(3)(im), np.ones((len(im), 1))], 1), 200, 0)
    out = dci(codes, factors, codes, factors, n_jobs=1)
    scalars = [v for v in out.values() if np.ndim(v) == 0]
    assert np.all(np.isfinite(scalars))
    assert out["importance_matrix"][:, 1].sum() == 0.0  # the constant factor has no classifier
    assert out["importance_matrix"][3].sum() == 0.0  # the constant code is never used
    assert out["disentanglement"] > 0.9  # the one-valued factor does not count as a factor


def test_agrees_with_reference_on_same_codes():
    ds = FactorImageDataset(SMALL)
    rng = np.random.default_rng(3)
    mix = np.linalg.qr(rng.normal(size=(3, 3)))[0] + np.eye(3)
    (ctr, ftr), (cte, fte) = _sample(ds, AlignedCodes(3), 300, 0), _sample(ds, AlignedCodes(3), 150, 1)
    # per-sample noise: continuous codes, so equally good splits (broken by a random seed) are rare
    ctr, cte = ctr @ mix + 0.3 * rng.normal(size=ctr.shape), cte @ mix + 0.3 * rng.normal(size=cte.shape)
    ours = dci(ctr, ftr, cte, fte, seed=7, n_jobs=1)
    # dci(seed=7) seeds factor j's trees with the j-th draw of default_rng(7); the reference leaves
    # the trees' tie-breaking seed unset, so the oracle is given the same seeds to compare exactly
    seeds = np.random.default_rng(7).integers(0, 2**31 - 1, size=3)
    theirs = reference.dci_from_arrays(ctr.T, ftr.T, cte.T, fte.T, seeds=seeds)
    for key in ("disentanglement", "completeness", "informativeness_train", "informativeness_test"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12)
