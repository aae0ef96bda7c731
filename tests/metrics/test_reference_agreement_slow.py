"""Slow: the sampling wrappers against the reference transcription at the published sizes.

Both sides draw their own samples (different generators), so they agree up to sampling noise.
Run with ``pytest tests/metrics -m slow``.
"""

import functools

import numpy as np
import pytest

import dislib_reference as reference
from conftest import AlignedCodes, FactorImageDataset
from ldm_dis.metrics import METRICS

# (metric, key, tolerance of |ours - reference|: a few standard errors at 10,000 / 5,000 points)
CASES = [
    ("factorvae", "eval_accuracy", 0.03),
    ("mig", "discrete_mig", 0.02),
    ("sap", "SAP_score", 0.02),
    ("modularity", "modularity_score", 0.02),
    ("modularity", "explicitness_score_test", 0.01),
    ("dci", "disentanglement", 0.03),
    ("dci", "completeness", 0.03),
    ("dci", "informativeness_test", 0.03),
]


@functools.cache
def _scores(name):
    """(ours, reference) for one metric on Shapes3D-shaped factors, computed once for all of its keys
    (DCI takes minutes)."""
    shapes_like = FactorImageDataset()
    rng = np.random.default_rng(123)
    mix = np.eye(6) + 0.4 * rng.normal(size=(6, 6))

    def rep(images):  # a partly entangled code, with per-sample noise so scores are not saturated
        z = AlignedCodes(6)(images) @ mix
        return z + 0.2 * np.random.default_rng(int(1e6 * abs(z[0, 0])) % 2**31).normal(size=z.shape)

    ours = METRICS[name](shapes_like, rep, np.random.default_rng(0))
    theirs = reference.CLASSIC[name](shapes_like, rep, np.random.RandomState(0))
    return ours, theirs


@pytest.mark.slow
@pytest.mark.parametrize("name,key,tol", CASES)
def test_standard_protocol_agrees_with_reference(name, key, tol):
    ours, theirs = _scores(name)
    assert ours[key] == pytest.approx(theirs[key], abs=tol)
