"""MIG, SAP, modularity and explicitness: hand-computed cases, the reference, known-answer codes."""

import numpy as np
import pytest

import dislib_reference as reference
from conftest import AlignedCodes, FactorImageDataset
from ldm_dis.metrics.mig import mig, mig_from_mi, mig_metric
from ldm_dis.metrics.modularity import modularity_explicitness, modularity_from_mi
from ldm_dis.metrics.sap import sap, sap_from_scores


def _arrays(sizes, rep, n, seed):
    ds = FactorImageDataset(sizes)
    factors = ds.sample_factors(n, np.random.default_rng(seed))
    return rep(ds.images_from_factors(factors)), factors


def _noisy(codes, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    return codes @ (np.eye(codes.shape[1]) + 0.5 * rng.normal(size=(codes.shape[1],) * 2)) + scale * rng.normal(size=codes.shape)


def test_mig_gap_by_hand():
    m = np.array([[0.6, 0.1], [0.2, 0.1], [0.0, 0.3]])
    gaps = mig_from_mi(m, np.array([1.2, 0.0]))
    assert gaps[0] == pytest.approx((0.6 - 0.2) / 1.2)
    assert np.isnan(gaps[1])  # a factor with zero entropy is left out, not divided by


def test_mig_equals_reference_on_same_codes():
    codes, factors = _arrays((4, 6, 3), AlignedCodes(3), 2000, 0)
    codes = _noisy(codes, 1)
    ours = mig(codes, factors)["discrete_mig"]
    assert ours == pytest.approx(reference.mig_from_arrays(codes.T, factors.T)["discrete_mig"], abs=1e-12)


def test_mig_high_for_aligned_and_lower_for_rotated(shapes_like):
    aligned = mig_metric(shapes_like, AlignedCodes(6), np.random.default_rng(0), num_train=2000)
    rotated = mig_metric(shapes_like, AlignedCodes(6, rotate=True), np.random.default_rng(0), num_train=2000)
    assert aligned["discrete_mig"] > 0.8
    assert rotated["discrete_mig"] < aligned["discrete_mig"] - 0.4


def test_mig_constant_code_constant_factor_and_duplicates():
    codes, factors = _arrays((4, 1, 3), AlignedCodes(3), 500, 0)
    out = mig(np.concatenate([codes, np.zeros((500, 1))], 1), factors)
    assert np.isfinite(out["discrete_mig"]) and out["discrete_mig"] > 0.8
    dup = mig(np.repeat(codes, 2, axis=1), factors)
    assert dup["discrete_mig"] == pytest.approx(0.0, abs=1e-12)  # two codes share each factor: no gap


def test_sap_gap_by_hand_and_single_code():
    scores = np.array([[0.9, 0.2], [0.5, 0.6], [0.1, 0.3]])
    assert sap_from_scores(scores) == pytest.approx(((0.9 - 0.5) + (0.6 - 0.3)) / 2)
    assert sap_from_scores(np.array([[0.7, 0.4]])) == pytest.approx(0.55)


def test_sap_equals_reference_on_same_codes():
    codes, factors = _arrays((3, 4), AlignedCodes(2), 600, 0)
    codes = _noisy(codes, 2)
    test_codes, test_factors = codes[400:], factors[400:]
    ours = sap(codes[:400], factors[:400], test_codes, test_factors)["SAP_score"]
    theirs = reference.sap_from_arrays(codes[:400].T, factors[:400].T, test_codes.T, test_factors.T)["SAP_score"]
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_modularity_by_hand():
    m = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    # code 0: fully modular (1); code 1: 1 - (2 - 1) / (1 * 1) = 0; code 2 carries nothing: 0
    assert modularity_from_mi(m) == pytest.approx(1 / 3)
    three = np.array([[2.0, 1.0, 1.0]])  # 1 - (6 - 4) / (4 * 2)
    assert modularity_from_mi(three) == pytest.approx(0.75)


def test_modularity_explicitness_equal_reference_on_same_codes():
    codes, factors = _arrays((3, 5, 2), AlignedCodes(3), 800, 0)
    codes = _noisy(codes, 3)
    ours = modularity_explicitness(codes[:500], factors[:500], codes[500:], factors[500:])
    theirs = reference.modularity_from_arrays(codes[:500].T, factors[:500].T, codes[500:].T, factors[500:].T)
    for key in ("modularity_score", "explicitness_score_train", "explicitness_score_test"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9)


def test_modularity_explicitness_degenerate_inputs_stay_finite():
    codes, factors = _arrays((3, 1, 4), AlignedCodes(3), 400, 0)
    codes = np.concatenate([codes, np.ones((400, 1)), codes[:, :1]], axis=1)  # constant and duplicated
    out = modularity_explicitness(codes, factors, codes, factors)
    assert all(np.isfinite(out[k]) for k in ("modularity_score", "explicitness_score_train", "explicitness_score_test"))
