"""Anchor selection on 32-dimensional data with a known number of well-separated clusters, from K0 = 8
with the paper's phi = psi = 0.5: every cluster gets an anchor, every anchor is one cluster."""

import numpy as np
import pytest

from ldm_dis.bottlenecks.dyga import select_anchors
from ldm_dis.bottlenecks.dyga.anchor_selection import cluster_densities, feature_normalization


def _check_anchors(model, X, labels, centers, separation):
    n_true = len(centers)
    # every true cluster has an anchor close to its mean (well under the distance between clusters)
    nearest = np.linalg.norm(centers[:, None] - model.means_[None], axis=2).min(1)
    assert nearest.max() < 0.1 * separation, nearest
    # the points of each anchor belong at least 95% to one true cluster
    assigned = model.predict(X)
    for k in range(model.n_components_):
        mine = labels[assigned == k]
        if len(mine):
            assert np.bincount(mine, minlength=n_true).max() / len(mine) >= 0.95


@pytest.mark.parametrize("n_true", [3, 6, 12])
def test_every_cluster_gets_an_anchor(clusters, n_true):
    X, labels, centers = clusters(n_true, 300, separation=10.0, seed=n_true)
    model = select_anchors(X, k_init=8, k_max=32, seed=0)
    _check_anchors(model, X, labels, centers, separation=10.0)
    assert model.n_components_ <= 32
    if n_true == 12:  # 8 initial Gaussians cannot cover 12 clusters: splits had to happen
        assert sum(model.split_log_["splits_per_round"]) >= 4
        assert model.n_components_ >= 12


def test_dense_gaussians_are_split_and_tight_ones_are_not(clusters):
    X, labels, _ = clusters(4, 300, seed=11)
    center, scale = feature_normalization(X)
    Z = (X - center) / scale
    one_hot = np.eye(4)[labels]
    tight = cluster_densities(Z, one_hot, phi=0.5)
    merged = cluster_densities(Z, np.stack([one_hot[:, :2].sum(1), one_hot[:, 2:].sum(1)], 1), phi=0.5)
    assert tight.max() < 0.5 < merged.min()  # psi = 0.5 separates "one cluster" from "two clusters"
    # with K0 = 2 on 4 clusters, the split rounds must find all four
    model = select_anchors(X, k_init=2, random_split_prob=0.0, seed=0)
    assert model.n_components_ == 4
    assert sum(model.split_log_["splits_per_round"]) == 2


def test_k_never_exceeds_k_max(clusters):
    X, _, _ = clusters(12, 150, seed=12)
    for k_max in (8, 10):
        model = select_anchors(X, k_init=8, k_max=k_max, random_split_prob=0.5, seed=1)
        assert model.n_components_ <= k_max
        assert model.split_log_["k_before_filter"] <= k_max


def test_tiny_components_are_filtered(clusters):
    X, labels, centers = clusters(3, 300, seed=13)
    far = centers.mean(0) + 40.0  # 6 outliers far from everything: k-means++ seeds one there
    X = np.concatenate([X, far + 0.01 * np.random.default_rng(0).normal(size=(6, X.shape[1]))])
    model = select_anchors(X, k_init=4, min_count=10.0, random_split_prob=0.0, seed=0)
    assert model.split_log_["filtered"] >= 1
    assert np.linalg.norm(model.means_ - far, axis=1).min() > 20.0  # no anchor sits on the outliers
    assert model.predict_proba(X).sum(0).min() >= 10.0  # every kept Gaussian has its minimum count
    _check_anchors(model, X[:-6], labels, centers, separation=10.0)


def test_seeded_and_reproducible(clusters):
    X, _, _ = clusters(6, 200, seed=14)
    a = select_anchors(X, random_split_prob=0.3, seed=5)
    b = select_anchors(X, random_split_prob=0.3, seed=5)
    np.testing.assert_array_equal(a.means_, b.means_)
    assert a.split_log_ == b.split_log_


def test_collapsed_unit_gives_one_finite_anchor():
    # early in training a unit can output the same token for every image
    X = np.full((400, 32), 0.3)
    model = select_anchors(X, seed=0)
    assert model.n_components_ == 1
    np.testing.assert_allclose(model.means_[0], 0.3)
    assert np.isfinite(model.score_samples(X)).all()


def test_torch_fitter_normalizes_as_the_numpy_one_minmax_included():
    import torch

    from ldm_dis.bottlenecks.dyga import feature_normalization
    from ldm_dis.bottlenecks.dyga.batched_fit import normalize

    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 300, 4)) * [[[1.0]], [[3.0]]]  # (units, points, D)
    for method in ("median", "minmax"):
        z, center, scale = normalize(torch.as_tensor(features), torch.float64, method)
        for u in range(2):
            c, s = feature_normalization(features[u], method)
            np.testing.assert_allclose(center[u].numpy(), c, rtol=1e-12)
            assert float(scale[u]) == pytest.approx(s, rel=1e-12)
            np.testing.assert_allclose(z[u].numpy(), (features[u] - c) / s, rtol=1e-10)


def test_the_three_steps_each_do_their_part(clusters):
    """initial_mixture, split_gaussians and filter_gaussians, the steps select_anchors runs in order."""
    from ldm_dis.bottlenecks.dyga.anchor_selection import filter_gaussians, initial_mixture, split_gaussians
    from ldm_dis.bottlenecks.dyga.hddc import HDDC

    X, labels, _ = clusters(2, 200, dim=8, intrinsic_dim=2, seed=3)
    center, scale = feature_normalization(X)
    Z = (X - center) / scale
    rng = np.random.default_rng(0)

    def hddc(k, max_iter=30, init_resp=None):
        return HDDC(k, max_iter, random_state=int(rng.integers(2**31)), init_resp=init_resp)

    search, model, resp = initial_mixture(Z, k_init=1, search_samples=150, rng=rng, hddc=hddc)
    assert search.shape == (150, 8) and resp.shape == (150, 1)  # a subsample, one Gaussian over both clusters
    model, resp, splits = split_gaussians(search, model, resp, rng, hddc, k_max=4, phi=0.5, psi=0.5,
                                          random_split_prob=0.0, max_split_rounds=3)
    assert splits[0] == 1 and splits[-1] == 0 and resp.shape[1] == 2  # split once, into the two clusters
    # a third Gaussian holding two points: dropped, the two kept ones refitted without those points
    resp3 = np.column_stack([resp, np.zeros(len(search))])
    resp3[:2] = [0.0, 0.0, 1.0]
    model3 = HDDC(3, max_iter=1, init_resp=resp3).fit(search)
    kept, rows = filter_gaussians(search, model3, model3.predict_proba(search), hddc, min_count=10.0,
                                  max_iter=30, refit_needed=False)
    assert kept.n_components_ == 2 and len(rows) >= len(search) - 2
