"""Permutation, discriminator and TC estimate (ldm_dis.bottlenecks.total_correlation) on hand-made codes."""

import math

import torch
from torch import nn

from ldm_dis.bottlenecks.total_correlation import (
    TCDiscriminator, batch_discriminator_loss, discriminator_loss, permute_blocks, tc_estimate,
)


def test_permutation_keeps_each_marginal_and_breaks_dependence():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4000, generator=g)
    z = torch.stack([base, base, -base], dim=1)  # three perfectly dependent latents
    p = permute_blocks(z, torch.Generator().manual_seed(1))
    for j in range(3):  # each column is a rearrangement of itself: same marginal
        assert torch.equal(p[:, j].sort().values, z[:, j].sort().values)
    corr = torch.corrcoef(p.T)
    assert corr[0, 1].abs() < 0.1 and corr[0, 2].abs() < 0.1  # was 1 and -1
    assert not torch.equal(p, z)


def test_permutation_moves_one_hot_blocks_as_units():
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 5, (50, 3), generator=g)
    one_hot = nn.functional.one_hot(idx, 5).float()  # (B, N, K)
    p = permute_blocks(one_hot, torch.Generator().manual_seed(2))
    assert torch.equal(p.sum(-1), torch.ones(50, 3))  # every block still a one-hot row
    for j in range(3):  # per-latent category counts (the marginal) unchanged
        assert torch.equal(p[:, j].sum(0), one_hot[:, j].sum(0))


def test_discriminator_has_six_linear_layers_of_1000_units():
    d = TCDiscriminator(12, 1000, 6)
    linears = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6
    assert [m.out_features for m in linears] == [1000] * 5 + [2]
    assert sum(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in d.modules()) == 5


class FixedLogits(nn.Module):
    """A 'discriminator' whose logits are (a * sum(z), 0): known density ratios."""

    def __init__(self, a: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, z):
        s = z.flatten(1).sum(1) * self.a
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_tc_estimate_known_value():
    z = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    # logit differences 0.5 * 3 = 1.5 and 0.5 * -1 = -0.5 -> mean 0.5
    assert math.isclose(tc_estimate(FixedLogits(0.5), z).item(), 0.5, rel_tol=1e-6)


def test_discriminator_loss_known_value_and_detached_inputs():
    # a = 0: both logits zero -> cross-entropy log 2 on either class
    z = torch.randn(8, 3, requires_grad=True)
    loss = discriminator_loss(FixedLogits(0.0), z[:4], z[4:])
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)
    # with all-ones codes the sums are 3 for joint and permuted alike: 0.5*(CE(label 0) + CE(label 1))
    ones = torch.ones(4, 3)
    a = 0.7
    expected = 0.5 * (math.log(1 + math.exp(-3 * a)) + math.log(1 + math.exp(3 * a)))
    d = FixedLogits(a)
    loss = discriminator_loss(d, ones, ones)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    loss = discriminator_loss(d, z[:4], z[4:])
    loss.backward()
    assert z.grad is None  # the codes are detached: only the discriminator learns from this loss
    assert d.a.grad is not None


def test_one_batch_is_split_in_halves_once_for_every_caller():
    """batch_discriminator_loss (used by FactorQ and the Factor* baselines): halves of the batch, the odd
    sample left out, a batch under 4 used twice."""
    d = TCDiscriminator(6, 8, 2)
    z = torch.randn(9, 3, 2)
    for rows, (joint, other) in ((9, (z[:4], z[4:8])), (3, (z[:3], z[:3]))):
        split = batch_discriminator_loss(d, z[:rows], torch.Generator().manual_seed(1))
        direct = discriminator_loss(d, joint, other, torch.Generator().manual_seed(1))
        assert torch.equal(split, direct)


def test_discriminator_learns_to_separate_dependent_codes():
    """A dependent joint (z2 = z1) is told from its permutation after 150 steps; TC estimate > 0."""
    torch.manual_seed(0)
    d = TCDiscriminator(2, 64, 3)
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    for _ in range(150):
        base = torch.randn(256, 1)
        z = torch.cat([base, base], 1)
        loss = discriminator_loss(d, z[:128], z[128:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5  # chance is log 2 = 0.693
    base = torch.randn(512, 1)
    assert tc_estimate(d, torch.cat([base, base], 1)).item() > 0.5
