"""Global scalar codebook, Gumbel-softmax, KL to the uniform prior, temperature schedule."""

import math

import torch

from ldm_dis.bottlenecks.scalar_codebook import (
    ScalarCodebook,
    gumbel_softmax_sample,
    gumbel_temperature,
    kl_to_uniform,
)


def test_kl_to_uniform_is_zero_for_a_uniform_posterior():
    logits = torch.full((3, 5, 64), 2.5)  # any constant: softmax is uniform
    assert torch.allclose(kl_to_uniform(logits), torch.zeros(3, 5), atol=1e-6)


def test_kl_to_uniform_known_values():
    q = torch.tensor([0.75, 0.25])
    expected = 0.75 * math.log(0.75 * 2) + 0.25 * math.log(0.25 * 2)
    assert math.isclose(kl_to_uniform(q.log()).item(), expected, rel_tol=1e-5)
    peaked = torch.tensor([50.0, 0.0, 0.0, 0.0])  # ~one-hot: KL -> log K
    assert math.isclose(kl_to_uniform(peaked).item(), math.log(4), rel_tol=1e-5)


def test_temperature_schedule():
    assert gumbel_temperature(0, 1e-5) == 1.0
    assert math.isclose(gumbel_temperature(100_000, 1e-5), math.exp(-1), rel_tol=1e-12)
    assert gumbel_temperature(10**7, 1e-5, tau_min=0.1) == 0.1


def test_distance_logits_and_eval_is_nearest_code():
    cb = ScalarCodebook(3)
    with torch.no_grad():
        cb.values.copy_(torch.tensor([-1.0, 0.0, 2.0]))
    z = torch.tensor([[-0.9, 0.4, 1.2, 5.0]])
    logits = cb.distance_logits(z)
    assert torch.allclose(logits[0, 0], -torch.tensor([0.01, 0.81, 8.41]))
    one_hot, z_q = cb.quantize(logits, tau=1.0, stochastic=False)
    assert torch.equal(z_q, torch.tensor([[-1.0, 0.0, 2.0, 2.0]]))
    assert torch.equal(one_hot.sum(-1), torch.ones(1, 4))
    again = cb.quantize(cb.distance_logits(z), tau=1.0, stochastic=False)[1]
    assert torch.equal(again, z_q)  # deterministic


def test_gumbel_path_passes_gradients_to_codes_and_codebook():
    cb = ScalarCodebook(8)
    z = torch.randn(4, 3, requires_grad=True)
    one_hot, z_q = cb.quantize(cb.distance_logits(z), tau=0.5, stochastic=True, generator=torch.Generator().manual_seed(0))
    z_q.pow(2).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert cb.values.grad is not None and cb.values.grad.abs().sum() > 0
    assert torch.allclose(one_hot.sum(-1), torch.ones(4, 3), atol=1e-5)


def test_gumbel_samples_follow_the_posterior():
    """The argmax of Gumbel-perturbed logits is an exact categorical sample (Gumbel-max trick)."""
    probs = torch.tensor([0.5, 0.3, 0.2])
    logits = probs.log().expand(40_000, 3)
    sample = gumbel_softmax_sample(logits, tau=0.1, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(sample.argmax(-1), minlength=3).float() / 40_000
    assert torch.allclose(freq, probs, atol=0.01)
    assert sample.max(-1).values.mean() > 0.95  # low temperature: nearly one-hot
