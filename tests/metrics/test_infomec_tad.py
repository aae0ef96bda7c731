"""InfoMEC and TAD: normalizations by hand, known-answer codes, degenerate inputs."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from conftest import AlignedCodes, FactorImageDataset
from ldm_dis.metrics.infomec import _ratio_score, infoe_factor, infomec, infomec_metric
from ldm_dis.metrics.tad import auroc_matrix, tad


def test_ratio_score_normalization_by_hand():
    nmi = np.array([[0.8, 0.0, 0.4], [0.2, 0.5, 0.0]])  # (factors K=2, codes 3)
    # per code max/sum: 0.8, 1, 1 -> mean 14/15; InfoM = (14/15 - 1/2) / (1 - 1/2)
    assert _ratio_score(nmi, axis=0, count=2) == pytest.approx((14 / 15 - 0.5) / 0.5)
    # per factor max/sum: 0.8/1.2, 0.5/0.7; InfoC over 3 active codes
    expected = (np.mean([0.8 / 1.2, 0.5 / 0.7]) - 1 / 3) / (1 - 1 / 3)
    assert _ratio_score(nmi, axis=1, count=3) == pytest.approx(expected)
    assert _ratio_score(np.ones((3, 3)), axis=0, count=3) == pytest.approx(0.0)


def test_discrete_codes_equal_to_factors_give_identity_nmi():
    ds = FactorImageDataset((3, 4, 5))
    factors = ds.sample_factors(1000, np.random.default_rng(0))
    codes = factors[:, [2, 0, 1]] * 3 + 1  # permuted, rescaled integers
    out = infomec(codes, factors, n_jobs=1)
    expected = np.eye(3)[:, [2, 0, 1]]
    np.testing.assert_allclose(out["nmi"][expected == 1], 1.0, atol=1e-12)
    # independent pairs: only the plug-in estimator's small positive bias (about (k-1)^2 / 2n nats)
    assert out["nmi"][expected == 0].max() < 0.01
    assert out["infom"] == pytest.approx(1.0, abs=0.02) and out["infoc"] == pytest.approx(1.0, abs=0.02)
    assert out["infoe"] > 0.99


def test_continuous_aligned_near_one_and_rotation_lower(shapes_like):
    aligned = infomec_metric(shapes_like, AlignedCodes(6), np.random.default_rng(0), num_points=1000, n_jobs=1)
    rotated = infomec_metric(shapes_like, AlignedCodes(6, rotate=True), np.random.default_rng(0), num_points=1000, n_jobs=1)
    assert aligned["infom"] > 0.9 and aligned["infoc"] > 0.9
    assert rotated["infom"] < aligned["infom"] - 0.3
    assert aligned["nmi"].shape == (6, 6)


def test_null_entropy_is_log_of_number_of_classes():
    # the shortcut H_null = ln K: a balanced logistic regression on no features predicts uniform
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    null = LogisticRegression(C=np.inf, class_weight="balanced").fit(np.zeros((100, 1)), y)
    assert log_loss(y, null.predict_proba(np.zeros((100, 1)))) == pytest.approx(np.log(3), abs=1e-4)
    assert infoe_factor(np.zeros((100, 1)), y) == pytest.approx(0.0, abs=1e-4)


def test_infomec_constant_code_duplicates_and_constant_factor():
    ds = FactorImageDataset((3, 1, 4))
    factors = ds.sample_factors(500, np.random.default_rng(0))
    codes = AlignedCodes(3)(ds.images_from_factors(factors))
    codes = np.concatenate([codes, np.full((500, 1), 2.0), codes[:, :1]], axis=1)
    out = infomec(codes, factors, discrete=False, n_jobs=1)
    assert all(np.isfinite(out[k]) for k in ("infom", "infoc", "infoe"))
    assert not out["active"][3]  # the constant code is inactive
    assert np.all(out["nmi"][1] == 0.0)  # the one-valued factor has no information to share
    const = infomec(np.ones((500, 2)), factors, n_jobs=1)
    assert const["infom"] == 0.0 and const["infoe"] == pytest.approx(0.0, abs=1e-6)


def test_auroc_matrix_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    codes = np.round(rng.normal(size=(300, 3)), 1)  # rounding makes ties
    labels = rng.integers(2, size=(300, 2))
    ours = auroc_matrix(codes, labels)
    for i in range(3):
        for j in range(2):
            assert ours[i, j] == pytest.approx(roc_auc_score(labels[:, j], codes[:, i]), abs=1e-12)


def test_tad_known_answers():
    rng = np.random.default_rng(0)
    attrs = rng.integers(2, size=(2000, 3))
    codes = attrs[:, [1, 2, 0]] + 0.01 * rng.normal(size=(2000, 3))
    out = tad(codes, attrs)
    # each attribute: best AUROC 1 from its own code, the others about 0.5
    assert out["num_attributes_captured"] == 3.0
    assert out["tad"] == pytest.approx(1.5, abs=0.1)
    flipped = tad(-codes, attrs)  # both polarities count
    assert flipped["tad"] == pytest.approx(out["tad"])


def test_tad_drops_entangled_and_non_binary_attributes():
    rng = np.random.default_rng(1)
    a = rng.integers(2, size=2000)
    attrs = np.stack([a, a, rng.integers(2, size=2000), rng.integers(5, size=2000)], axis=1)
    codes = attrs[:, [0, 2, 3]] + 0.01 * rng.normal(size=(2000, 3))
    out = tad(codes, attrs)
    # attributes 0 and 1 are the same (NMI 1 > 0.2): both dropped; attribute 3 is not binary
    assert out["num_attributes"] == 3.0 and out["num_attributes_captured"] == 1.0
    assert np.isnan(out["auroc"][:, 3]).all()
    assert tad(codes[:, :1], np.full((2000, 1), 1))["tad"] == 0.0


def test_infomec_active_rules_range_and_released_iqr():
    from ldm_dis.metrics.infomec import active_codes

    rng = np.random.default_rng(0)
    factors = rng.integers(0, 4, size=(400, 2))
    wide = factors[:, 0] + 0.1 * rng.normal(size=400)  # IQR about 2
    spiky = 0.01 * rng.normal(size=400)
    spiky[0] = 100.0  # one outlier: a huge range, a tiny interquartile range
    medium = 0.5 * factors[:, 1] + 0.1 * rng.normal(size=400)  # IQR about 1
    codes = np.stack([wide, spiky, medium], axis=1)
    # range rule: only the outlier's code clears 100 / 20; IQR rule (released): IQR > largest IQR / 10
    assert active_codes(codes, discrete=False, rule="range").tolist() == [False, True, False]
    assert active_codes(codes, discrete=False, rule="iqr").tolist() == [True, False, True]
    out = infomec(codes, factors, discrete=False, n_jobs=1, active_rule="iqr")
    assert out["num_active_codes"] == 2.0 and out["active"].tolist() == [True, False, True]
    assert out["infom"] > 0.9  # each active code carries one factor
    discrete = np.stack([factors[:, 0], np.r_[np.zeros(399), 1]], axis=1)
    assert active_codes(discrete, discrete=True, rule="iqr").tolist() == [True, False]  # IQR > 0.1
    with pytest.raises(ValueError, match="active_rule='max'"):
        infomec_metric(None, None, np.random.default_rng(0), active_rule="max")
