"""Known values of the VAE-family loss terms (ldm_dis.baselines.losses)."""

import math

import torch

from ldm_dis.baselines import losses


def test_gaussian_kl_known_values():
    assert torch.allclose(losses.gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)), torch.zeros(2))
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 * (1 + 0) and 0.5 * (2 - 1 - log 2)
    expected = 0.5 + 0.5 * (1 - math.log(2))
    assert math.isclose(losses.gaussian_kl(mu, logvar).item(), expected, rel_tol=1e-6)


def brute_force_mws(z, mu, logvar, n):
    """Loops over i, j, k: the minibatch-weighted sampling estimates of Chen et al. 2018."""
    b, d = z.shape

    def log_normal(x, m, lv):
        return -0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 / math.exp(lv))

    out = []
    for i in range(b):
        per_j = [sum(log_normal(z[i, k], mu[j, k], logvar[j, k]) for k in range(d)) for j in range(b)]
        log_qz = math.log(sum(math.exp(v) for v in per_j)) - math.log(b * n)
        log_prod = 0.0
        for k in range(d):
            log_prod += math.log(sum(math.exp(log_normal(z[i, k], mu[j, k], logvar[j, k])) for j in range(b))) - math.log(b * n)
        log_qzx = sum(log_normal(z[i, k], mu[i, k], logvar[i, k]) for k in range(d))
        log_pz = sum(log_normal(z[i, k], 0.0, 0.0) for k in range(d))
        out.append((log_qzx - log_qz, log_qz - log_prod, log_prod - log_pz))
    return torch.tensor(out, dtype=torch.float64)


def test_mws_matches_brute_force_on_a_tiny_batch():
    g = torch.Generator().manual_seed(0)
    z, mu = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    logvar = torch.randn(3, 2, generator=g, dtype=torch.float64) * 0.3
    mi, tc, dwkl = losses.tc_decomposition_mws(z, mu, logvar, dataset_size=10)
    expected = brute_force_mws(z, mu, logvar, 10)
    assert torch.allclose(torch.stack([mi, tc, dwkl], 1), expected, atol=1e-9)


def test_mws_single_sample_closed_form_and_sum():
    """Batch of one: MI = log N and TC = (d - 1) log N exactly; the three terms sum to log q(z|x) - log p(z)."""
    z = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    mu = torch.tensor([[0.0, -0.5, 1.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, -1.0, 0.5]], dtype=torch.float64)
    n = 480_000
    mi, tc, dwkl = losses.tc_decomposition_mws(z, mu, logvar, n)
    assert math.isclose(mi.item(), math.log(n), rel_tol=1e-12)
    assert math.isclose(tc.item(), 2 * math.log(n), rel_tol=1e-12)
    log_qzx = losses.gaussian_log_density(z, mu, logvar).sum()
    log_pz = losses.gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum()
    assert math.isclose((mi + tc + dwkl).item(), (log_qzx - log_pz).item(), rel_tol=1e-12)


def test_mws_tc_is_near_zero_for_independent_codes_and_large_for_dependent_ones():
    g = torch.Generator().manual_seed(0)
    logvar = torch.full((512, 2), math.log(0.01))
    mu_ind = torch.randn(512, 2, generator=g)
    base = torch.randn(512, 1, generator=g)
    mu_dep = torch.cat([base, base], 1)
    tc_ind = losses.tc_decomposition_mws(mu_ind, mu_ind, logvar, 512)[1].mean()
    tc_dep = losses.tc_decomposition_mws(mu_dep, mu_dep, logvar, 512)[1].mean()
    assert tc_dep > tc_ind + 1.0


def test_reconstruction_known_values():
    images = torch.tensor([-1.0, 1.0, 0.0]).view(1, 3, 1, 1)  # [0, 1] scale: 0, 1, 0.5
    means = torch.tensor([0.0, 0.5, 0.5]).view(1, 3, 1, 1)
    assert math.isclose(losses.reconstruction_loss(means, images, "gaussian").item(), 0.25 / 3, rel_tol=1e-6)
    logits = torch.zeros(1, 3, 1, 1)  # sigmoid 0.5: BCE log 2 for every target
    assert math.isclose(losses.reconstruction_loss(logits, images, "bernoulli").item(), math.log(2), rel_tol=1e-6)
    assert torch.allclose(losses.decoded_to_images(logits, "bernoulli"), torch.zeros(1, 3, 1, 1))
    assert torch.allclose(losses.decoded_to_images(means, "gaussian"), torch.tensor([-1.0, 0.0, 0.0]).view(1, 3, 1, 1))


def test_bioae_terms_known_values():
    z = torch.tensor([[-2.0, 1.0, 0.0, 3.0]])
    assert math.isclose(losses.bioae_nonnegativity(z).item(), 0.5)  # only -2 is negative: 2 / 4
    assert math.isclose(losses.bioae_activity(z).item(), (4 + 1 + 0 + 9) / 4)
