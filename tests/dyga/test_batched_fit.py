"""The torch fitter (all units at once) against the numpy one: the same EM step for step in float64,
the same anchors on well-separated clusters in float32, and the same behaviour where randomness makes
the two differ (splits find every cluster, K stays within k_max, tiny Gaussians are filtered)."""

import numpy as np
import pytest
import torch

from ldm_dis.bottlenecks.dyga import HDDC, select_anchors
from ldm_dis.bottlenecks.dyga.anchor_selection import cluster_densities as np_cluster_densities
from ldm_dis.bottlenecks.dyga.batched_fit import _median_kth, cluster_densities, fit_units
from ldm_dis.bottlenecks.dyga.batched_hddc import (
    e_step, fit_em, kmeans_plusplus_resp, scree_dimensions, weighted_log_prob,
)
from ldm_dis.bottlenecks.dyga.hddc import scree_dimension

from test_anchor_selection import _check_anchors


def _units(features):
    """[(n, D), ...] -> (n, N, D) tensor, as the bottleneck passes features."""
    return torch.tensor(np.stack(features, axis=1))


def test_em_matches_hddc_step_for_step_in_float64(clusters):
    # three groups fitted at once; the last is padded with far-away rows of weight 0
    data = [clusters(3, 200, seed=1)[0], clusters(4, 150, intrinsic_dim=2, seed=2)[0],
            clusters(2, 250, seed=3)[0][:450]]
    n, k = 600, 4
    X = torch.zeros(3, n, 32, dtype=torch.float64)
    weight = torch.zeros(3, n, dtype=torch.float64)
    resp = torch.zeros(3, n, k, dtype=torch.float64)
    active = torch.tensor([[True, True, True, False], [True] * 4, [True, True, True, False]])
    references = []
    for g, x in enumerate(data):
        kg = int(active[g].sum())
        start = HDDC(kg, random_state=g)._initial_resp(x)
        hddc = HDDC(kg, max_iter=6, random_state=g, init_resp=start).fit(x)
        references.append(hddc)
        X[g, :len(x)] = torch.tensor(x)
        X[g, len(x):] = 1e3  # padding: must not count
        weight[g, :len(x)] = 1
        resp[g, :len(x), :kg] = torch.tensor(start)
    fit = fit_em(X, resp, active, weight=weight, max_iter=6)
    for g, ref in enumerate(references):
        kg, rows = ref.n_components_, len(data[g])
        m = fit.mixtures
        assert int(fit.n_iter[g]) == ref.n_iter_
        assert float(fit.lower_bound[g]) == pytest.approx(ref.lower_bound_, abs=1e-9)
        np.testing.assert_allclose(m.means[g, :kg].numpy(), ref.means_, atol=1e-10)
        np.testing.assert_allclose(m.variances[g, :kg].numpy(), ref.variances_, rtol=1e-9)
        np.testing.assert_allclose(m.weights[g, :kg].numpy(), ref.weights_, atol=1e-12)
        np.testing.assert_array_equal(m.dims[g, :kg].numpy(), ref.intrinsic_dims_)
        assert not m.active[g, kg:].any() and float(m.weights[g, kg:].sum()) == 0
        x = X[g:g + 1, :rows]
        np.testing.assert_allclose(weighted_log_prob(x, m.take([g]))[0, :, :kg].numpy(),
                                   ref.weighted_log_prob(data[g]), rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(e_step(x, m.take([g]))[1][0, :, :kg].numpy(), ref.predict_proba(data[g]),
                                   atol=1e-9)


def test_float32_em_stays_within_float_rounding_of_float64(clusters):
    x, _, _ = clusters(5, 300, noise=0.005, seed=4)  # tight noise directions: where float32 could lose digits
    start = torch.tensor(HDDC(5, random_state=0)._initial_resp(x))[None]
    active = torch.ones(1, 5, dtype=torch.bool)
    exact = fit_em(torch.tensor(x)[None], start, active)
    single = fit_em(torch.tensor(x, dtype=torch.float32)[None], start.float(), active)
    assert float(single.lower_bound[0]) == pytest.approx(float(exact.lower_bound[0]), abs=1e-4)
    np.testing.assert_allclose(single.mixtures.means.numpy(), exact.mixtures.means.numpy(), atol=1e-4)
    np.testing.assert_allclose(single.mixtures.variances.numpy(), exact.mixtures.variances.numpy(), rtol=1e-3)


def test_scree_densities_and_median_match_numpy(clusters):
    rng = np.random.default_rng(0)
    spectra = np.sort(rng.exponential(size=(50, 12)), axis=1)[:, ::-1]
    spectra[:5, 6:] = spectra[:5, 6:7]  # tied tails
    spectra[5] = 1.0  # isotropic
    got = scree_dimensions(torch.tensor(spectra.copy()), 0.2).numpy()
    assert got.tolist() == [scree_dimension(s, 0.2) for s in spectra]
    X, labels, _ = clusters(4, 100, seed=5)
    resp = np.eye(4)[labels] * 0.9 + 0.025
    np.testing.assert_allclose(cluster_densities(torch.tensor(X)[None], torch.tensor(resp)[None], 0.5)[0].numpy(),
                               np_cluster_densities(X, resp, 0.5), rtol=1e-12)
    for n in (7, 8):  # odd and even counts: the GPU's kthvalue path gives numpy's median
        values = torch.tensor(rng.normal(size=(n, 3)))
        np.testing.assert_allclose(_median_kth(values, 0).numpy(), np.median(values.numpy(), axis=0))


def test_kmeans_plusplus_draws_seeds_only_from_weighted_points(clusters):
    X, labels, _ = clusters(3, 100, seed=6)
    weight = torch.tensor(labels != 2, dtype=torch.float64)  # cluster 2 is padding
    generator = torch.Generator().manual_seed(0)
    resp = kmeans_plusplus_resp(torch.tensor(X)[None], weight[None], 2, generator)[0]
    assigned = resp.argmax(1).numpy()
    # one seed in each of the two allowed clusters: each cluster's points share their nearest seed
    for c in (0, 1):
        assert len(set(assigned[labels == c])) == 1
    assert assigned[labels == 0][0] != assigned[labels == 1][0]


def _agree(torch_model, numpy_model, X):
    assert torch_model.n_components_ == numpy_model.n_components_
    distance = np.linalg.norm(numpy_model.means_[:, None] - torch_model.means_[None], axis=2)
    assert distance.min(1).max() < 1e-4  # feature units; clusters are 10 apart, radius 1
    assert distance.min(0).max() < 1e-4
    assert torch_model.score(X) == pytest.approx(numpy_model.score(X), abs=1e-5)


@pytest.mark.parametrize("unit_batch", [None, 3])  # one unit at a time (a CPU's default), all at once (a GPU's)
def test_same_anchors_as_numpy_on_separated_clusters(clusters, unit_batch):
    # K0 = the number of clusters: both fitters seed one Gaussian per cluster and converge to the same
    # maximum; 2,400 points > search_samples exercises the subsample search and the refit on all points
    data = [clusters(6, 400, intrinsic_dim=dim, seed=30 + dim)[0] for dim in (2, 3, 4)]
    options = dict(k_init=6, random_split_prob=0.0, search_samples=1000, refit_iters=2)
    fit = fit_units(_units(data), seed=0, unit_batch=unit_batch, **options)  # float32
    for u, X in enumerate(data):
        _agree(fit.unit_hddc(u), select_anchors(X, seed=0, **options), X)
    assert fit.mixtures.means.shape == (3, 32, 32)
    k = fit.num_anchors
    for u in range(3):  # padding: the neutral component, zero weight
        assert float(fit.mixtures.weights[u, k[u]:].abs().sum()) == 0
        assert torch.equal(fit.mixtures.eigenvectors[u, k[u]:], torch.eye(32).double().expand(32 - k[u], 32, 32))
        assert float(fit.mixtures.weights[u].sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("n_true", [3, 6, 12])
def test_every_cluster_gets_an_anchor_with_all_units_at_once(clusters, n_true):
    # three units with different data in one call: each finds its own clusters
    sets = [clusters(n_true, 2400 // n_true, separation=10.0, seed=n_true + 10 * u) for u in range(3)]
    fit = fit_units(_units([s[0] for s in sets]), k_init=8, k_max=32, seed=0, unit_batch=3)
    for u, (X, labels, centers) in enumerate(sets):
        model = fit.unit_hddc(u)
        _check_anchors(model, X, labels, centers, separation=10.0)
        if n_true == 12:  # 8 initial Gaussians cannot cover 12 clusters: splits had to happen
            assert sum(model.split_log_["splits_per_round"]) >= 4
            assert model.n_components_ >= 12


def test_split_rounds_find_clusters_from_two_gaussians(clusters):
    X, labels, centers = clusters(4, 300, seed=11)
    fit = fit_units(_units([X]), k_init=2, random_split_prob=0.0, seed=0)
    model = fit.unit_hddc(0)
    assert sum(model.split_log_["splits_per_round"]) >= 2
    _check_anchors(model, X, labels, centers, separation=10.0)


def test_k_never_exceeds_k_max_and_a_blob_fills_it():
    blob = np.random.default_rng(0).normal(size=(3000, 8))
    for k_max in (6, 12):
        fit = fit_units(_units([blob, blob[::-1].copy()]), k_init=4, k_max=k_max, random_split_prob=0.5, seed=1,
                        unit_batch=2)
        assert fit.num_anchors.max() <= k_max
        assert all(log["k_before_filter"] == k_max for log in fit.logs)  # every Gaussian of a blob is dense
    numpy_model = select_anchors(blob, k_init=4, k_max=12, seed=1)
    torch_model = fit_units(_units([blob]), k_init=4, k_max=12, seed=1).unit_hddc(0)
    # different random draws, the same kind of mixture: as good a fit within a few hundredths of a nat
    assert torch_model.score(blob) == pytest.approx(numpy_model.score(blob), abs=0.05)


def test_tiny_components_are_filtered(clusters):
    X, labels, centers = clusters(3, 300, seed=13)
    far = centers.mean(0) + 40.0  # 6 outliers far from everything: k-means++ seeds one there
    X = np.concatenate([X, far + 0.01 * np.random.default_rng(0).normal(size=(6, X.shape[1]))])
    model = fit_units(_units([X]), k_init=4, min_count=10.0, random_split_prob=0.0, seed=0).unit_hddc(0)
    assert model.split_log_["filtered"] >= 1
    assert np.linalg.norm(model.means_ - far, axis=1).min() > 20.0
    assert model.predict_proba(X).sum(0).min() >= 10.0
    _check_anchors(model, X[:-6], labels, centers, separation=10.0)


def test_collapsed_unit_and_seeded_reproducibility(clusters):
    X, _, _ = clusters(6, 200, seed=14)
    constant = np.full_like(X, 0.3)  # early in training a unit can output the same token for every image
    a = fit_units(_units([X, constant]), random_split_prob=0.3, seed=5, unit_batch=2)
    b = fit_units(_units([X, constant]), random_split_prob=0.3, seed=5, unit_batch=2)
    assert torch.equal(a.mixtures.means, b.mixtures.means) and a.logs == b.logs
    assert int(a.num_anchors[1]) == 1
    assert torch.isfinite(a.mixtures.variances).all() and torch.isfinite(a.mixtures.means).all()
    with pytest.raises(ValueError, match="k_init"):
        fit_units(_units([X]), k_init=9, k_max=8)
