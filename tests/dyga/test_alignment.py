"""Feature alignment: each feature moves toward one anchor by at most lambda of the distance, per
sample (no batch statistics), with gradients through the straight-through Gumbel-softmax."""

import numpy as np
import torch

from ldm_dis.bottlenecks.dyga import HDDC
from ldm_dis.bottlenecks.dyga.alignment import align_features, mixture_log_resp
from ldm_dis.config.schema import DyGAConfig


def _fitted_unit(clusters, seed=0):
    """One unit's mixture as alignment tensors (N = 1), plus features in raw units."""
    X, _, _ = clusters(4, 150, dim=8, intrinsic_dim=2, radius=1.0, seed=seed)
    X = X + 3.0  # features away from 0, as real ones are
    center, scale = X.mean(0), 2.0
    z_model = HDDC(4, random_state=0).fit((X - center) / scale)
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)[None]  # noqa: E731
    params = dict(center=as_t(center), scale=torch.tensor([scale], dtype=torch.float32),
                  means=as_t(z_model.means_), variances=as_t(z_model.variances_),
                  eigenvectors=as_t(z_model.eigenvectors_), weights=as_t(z_model.weights_))
    return X, z_model, params


def test_log_responsibilities_match_the_estimator(clusters):
    X, z_model, p = _fitted_unit(clusters)
    z = (torch.tensor(X, dtype=torch.float32)[:, None] - p["center"]) / p["scale"][:, None]
    log_r = mixture_log_resp(z, p["means"], p["variances"], p["eigenvectors"], p["weights"])[:, 0]
    expected = z_model.predict_proba((X - p["center"][0].numpy()) / 2.0)
    np.testing.assert_allclose(log_r.exp().numpy(), expected, atol=1e-4)
    # a padded (absent) component gets responsibility exactly 0
    padded = {k: torch.cat([v, v[:, :1]], 1) if k in ("means", "variances", "eigenvectors") else v
              for k, v in p.items()}
    padded["weights"] = torch.cat([p["weights"], torch.zeros(1, 1)], 1)
    log_r5 = mixture_log_resp(z, padded["means"], padded["variances"], padded["eigenvectors"], padded["weights"])
    assert torch.all(log_r5[..., -1] == -np.inf)
    np.testing.assert_allclose(log_r5[..., :4].numpy(), log_r[:, None].numpy(), atol=1e-5)


def test_moves_toward_one_anchor_by_at_most_lambda(clusters):
    X, z_model, p = _fitted_unit(clusters)
    lam = DyGAConfig().lam
    c = torch.tensor(X[:64], dtype=torch.float32)[:, None]  # (B, 1, D)
    anchors = p["center"][0] + p["scale"][0] * p["means"][0]  # (K, D) in feature units
    for stochastic in (True, False):
        out = align_features(c, **p, tau=1e-4, lam=lam, stochastic=stochastic)
        step = (out - c)[:, 0]
        # c~ - c = delta (mu - c) for one anchor mu and 0 < delta <= lambda
        to_anchor = anchors[None] - c  # (B, K, D)
        ratio = (step[:, None] * to_anchor).sum(-1) / (to_anchor * to_anchor).sum(-1)  # (B, K)
        residual = (step[:, None] - ratio[..., None] * to_anchor).norm(dim=-1)
        best = residual.argmin(1)
        delta = ratio[torch.arange(len(c)), best]
        assert torch.all(residual.min(1).values < 1e-4)
        assert torch.all((delta > 0) & (delta <= lam + 1e-6))
        assert torch.all(step.norm(dim=-1) <= lam * to_anchor[torch.arange(len(c)), best].norm(dim=-1) + 1e-5)
        if not stochastic:  # eval: the most responsible anchor
            assert torch.equal(best, torch.as_tensor(z_model.predict((X[:64] - p["center"][0].numpy()) / 2.0)))


def test_delta_follows_the_formula_per_sample(clusters):
    X, _, p = _fitted_unit(clusters)
    c = torch.tensor(X[:16], dtype=torch.float32)[:, None]
    out = align_features(c, **p, tau=1e-4, lam=0.1, stochastic=False)
    alone = torch.cat([align_features(c[i : i + 1], **p, tau=1e-4, lam=0.1, stochastic=False) for i in range(16)])
    torch.testing.assert_close(out, alone)  # no statistic of the batch enters
    # delta = lambda exp(-(1/D) sum_j |c_j - mu_j| / |c_j|), recovered from the output
    anchors = p["center"][0] + p["scale"][0] * p["means"][0]
    z = (c - p["center"]) / p["scale"][:, None]
    k = mixture_log_resp(z, p["means"], p["variances"], p["eigenvectors"], p["weights"]).argmax(-1)[:, 0]
    mu = anchors[k]
    delta = 0.1 * torch.exp(-((c[:, 0] - mu).abs() / c[:, 0].abs()).mean(-1, keepdim=True))
    torch.testing.assert_close(out[:, 0], c[:, 0] + delta * (mu - c[:, 0]))


def test_zero_coordinates_do_not_make_nan(clusters):
    _, _, p = _fitted_unit(clusters)
    c = torch.zeros(4, 1, 8, requires_grad=True)
    out = align_features(c, **p, tau=1e-4, lam=0.1)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(c.grad).all()


def _point_on_boundary(p):
    """A feature on the segment between anchors 0 and 1 where both are equally responsible (D,)."""
    anchors = p["center"][0] + p["scale"][0] * p["means"][0]
    lo, hi = 0.0, 1.0
    for _ in range(60):  # bisection on the sign of log r_0 - log r_1
        t = 0.5 * (lo + hi)
        c = anchors[0] + t * (anchors[1] - anchors[0])
        z = (c - p["center"]) / p["scale"][:, None]
        log_r = mixture_log_resp(z[None], p["means"], p["variances"], p["eigenvectors"], p["weights"])[0, 0]
        lo, hi = (t, hi) if log_r[0] > log_r[1] else (lo, t)
    return c


def test_gradients_pass(clusters):
    X, _, p = _fitted_unit(clusters)
    c = torch.tensor(X[:32], dtype=torch.float32)[:, None].requires_grad_(True)
    out = align_features(c, **p, tau=1e-4, lam=0.1, stochastic=True)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    assert torch.isfinite(c.grad).all()
    assert c.grad.abs().sum() > 0
    # the straight-through path: the mixture's parameters enter only through the responsibilities,
    # so they receive gradient only if the soft Gumbel-softmax passes it (visible at a larger tau;
    # at tau = 1e-4 the soft weights saturate away from decision boundaries)
    between = _point_on_boundary(p)[None, None].expand(len(c), 1, 8)
    variances = p["variances"].clone().requires_grad_(True)
    out = align_features(between, **{**p, "variances": variances}, tau=1.0, lam=0.1, stochastic=True)
    (out * weights).sum().backward()
    assert variances.grad is not None and variances.grad.abs().sum() > 0


def test_exact_zero_coordinates_follow_the_guarded_formula():
    """ReLU tokens hold exact zeros: c_j = 0 with mu_j != 0 makes |c_j - mu_j| / eps huge, so delta = 0
    (the feature stays); c_j = mu_j = 0 adds nothing to the sum. Finite values and gradients either way."""
    d = 4
    one_anchor = dict(center=torch.zeros(1, d), scale=torch.ones(1), means=torch.ones(1, 1, d),
                      variances=torch.ones(1, 1, d), eigenvectors=torch.eye(d)[None, None], weights=torch.ones(1, 1))
    c = torch.tensor([[[0.0, 2.0, 2.0, 2.0]]], requires_grad=True)
    out = align_features(c, **one_anchor, tau=1e-4, lam=0.1, stochastic=True)
    out.sum().backward()
    assert torch.equal(out.detach(), c.detach()) and torch.isfinite(c.grad).all()
    zero_anchor = {**one_anchor, "means": torch.tensor([[[0.0, 1.0, 1.0, 1.0]]])}
    out = align_features(c.detach(), **zero_anchor, tau=1e-4, lam=0.1, stochastic=False)
    delta = 0.1 * np.exp(-(0.0 + 3 * 0.5) / d)  # |2 - 1| / 2 on three coordinates, 0 on the zero one
    torch.testing.assert_close(out, c.detach() + delta * (zero_anchor["means"] - c.detach()))


def test_released_alignment_follows_the_released_formula(clusters):
    """alignment: released reproduces ddpm_dyga.py: batch min/max normalization, the argmax anchor left
    in normalized units, one lambda for the batch; a sample's result depends on its batch."""
    from ldm_dis.bottlenecks.dyga.alignment import released_alignment

    X, _, _ = clusters(3, 100, dim=8, intrinsic_dim=2, seed=1)
    X = X - X.min() + 0.5  # positive features (no zeros), as ReLU tokens away from 0
    Z = (X - X.max()) / (X.max() - X.min() + 1e-6)  # the fit's normalization (whole set, one scalar pair)
    model = HDDC(3, random_state=0).fit(Z)
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)[None]  # noqa: E731
    p = dict(means=as_t(model.means_), variances=as_t(model.variances_), eigenvectors=as_t(model.eigenvectors_),
             weights=as_t(model.weights_))

    def by_hand(x):  # as the released code computes it
        z = (x - x.max()) / (x.max() - x.min() + 1e-6)
        cq = model.means_[model.predict(z)]
        lam = 0.1 * np.exp(-np.mean(np.abs((x - cq) / (x + 1e-6))))
        return lam * cq + (1 - lam) * x, lam

    c = torch.tensor(X[:40], dtype=torch.float32)[:, None].requires_grad_(True)  # (B, 1, D)
    out, lam = released_alignment(c, **p, lam=0.1)
    expect, expect_lam = by_hand(X[:40])
    np.testing.assert_allclose(float(lam.detach()), expect_lam, rtol=1e-4)
    assert expect_lam > 1e-3  # the pull is visible without zeros
    np.testing.assert_allclose(out.detach()[:, 0].numpy(), expect, rtol=1e-4, atol=1e-6)
    out.sum().backward()
    assert torch.isfinite(c.grad).all()
    alone, _ = released_alignment(c[:5].detach(), **p, lam=0.1)
    assert not torch.allclose(alone, out[:5].detach())  # batch statistics: other samples change the result
    # an exact zero in the tokens makes |(c - cq) / (c + 1e-6)| about 1e6 there: lambda is then about 0
    with_zero = X[:40].copy()
    with_zero[0, 0] = 0.0
    _, lam_zero = released_alignment(torch.tensor(with_zero, dtype=torch.float32)[:, None], **p, lam=0.1)
    np.testing.assert_allclose(float(lam_zero), by_hand(with_zero)[1], rtol=1e-3)
    assert float(lam_zero) < 0.1 * float(lam.detach())
