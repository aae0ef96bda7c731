"""FactorQ and FSQ bottlenecks of the diffusion model, built through the registry."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from ldm_dis.bottlenecks import build_bottleneck
from ldm_dis.bottlenecks.fsq import bound, quantize
from ldm_dis.config.schema import BottleneckConfig


def make(kind, num_units=5, unit_dim=8, **section):
    cfg = OmegaConf.structured(BottleneckConfig)
    cfg.kind = kind
    for k, v in section.items():
        cfg[kind][k] = v
    return build_bottleneck(cfg, num_units, unit_dim)


def test_factorq_training_output_losses_and_gradients():
    torch.manual_seed(0)
    bn = make("factorq", disc_hidden=32)
    assert bn.acts_on == "scalars"
    x = torch.randn(8, 5, requires_grad=True)
    out = bn(x)
    assert out.value.shape == (8, 5)
    assert set(out.losses) == {"kl", "tc"} and set(out.disc_losses) == {"tc_disc"}
    kl_raw = out.losses["kl"].item() / 1e-3
    assert 0 <= kl_raw <= math.log(64) + 1e-6
    (out.value.sum() + out.losses["kl"] + out.losses["tc"]).backward(retain_graph=True)
    assert x.grad.abs().sum() > 0 and bn.codebook.values.grad is not None
    x.grad = None
    out.disc_losses["tc_disc"].backward()
    assert x.grad is None  # the discriminator trains on detached codes
    assert all(p.grad is not None for p in bn.discriminator_parameters())
    assert len(bn.discriminator_parameters()) == 12  # 6 linear layers


def test_factorq_eval_is_the_nearest_code_and_step_drives_tau():
    bn = make("factorq", disc_hidden=16)
    assert bn.tau(0) == 1.0 and math.isclose(bn.tau(200_000), math.exp(-2.0))
    assert not hasattr(bn, "set_step") and not hasattr(bn, "step")  # one channel: the forward's argument
    x = torch.randn(16, 5)
    soft = {}
    for step in (0, 100_000, 400_000):  # the same Gumbel noise at a falling temperature: the one-hot sharpens
        torch.manual_seed(3)
        logits = bn.codebook.distance_logits(x)
        one_hot, _ = bn.codebook.quantize(logits, bn.tau(step), stochastic=True)
        torch.manual_seed(3)
        torch.testing.assert_close(bn(x, step).value, one_hot @ bn.codebook.values)
        soft[step] = float(one_hot.detach().max(-1).values.mean())
    assert soft[0] < soft[100_000] < soft[400_000]
    bn.eval()
    x = torch.randn(4, 5)
    out = bn(x)
    values = bn.codebook.values
    nearest = values[(x.unsqueeze(-1) - values).abs().argmin(-1)]
    assert torch.equal(out.value, nearest) and torch.equal(bn(x).value, out.value)
    assert out.losses == {} and out.disc_losses == {}


def test_fsq_grid_has_exactly_the_levels_and_passes_gradients():
    levels = torch.tensor([8.0, 5.0, 5.0])
    z = torch.linspace(-20, 20, 4001).unsqueeze(1).expand(-1, 3)
    q = quantize(z, levels)
    for i, l in enumerate([8, 5, 5]):
        assert len(torch.unique(q[:, i])) == l
        assert q[:, i].min() >= -1 and q[:, i].max() <= 1
    assert torch.equal(torch.unique(q[:, 1]), torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert abs(bound(torch.zeros(1, 3), levels)).max() < 1e-6  # zero maps to the centre

    torch.manual_seed(0)
    bn = make("fsq", num_units=4, unit_dim=8)
    assert bn.acts_on == "tokens" and bn.codebook_size == 200
    tokens = torch.randn(6, 4, 8, requires_grad=True)
    out = bn(tokens)
    assert out.value.shape == (6, 4, 8) and out.losses == {}
    out.value.sum().backward()
    assert tokens.grad.abs().sum() > 0  # straight-through rounding
    codes = bn.codes(tokens.detach())
    assert torch.allclose(codes * torch.tensor([4.0, 2.0, 2.0]), (codes * torch.tensor([4.0, 2.0, 2.0])).round())


def test_constructors_take_explicit_arguments_with_the_configs_defaults():
    """FSQ(levels, dim), FactorQ(num_units, ...), DyGABottleneck(num_units, unit_dim, ...): each argument
    defaults to its config key's default, and from_config passes every key its class uses."""
    import dataclasses
    import inspect

    from ldm_dis.bottlenecks.dyga import DyGABottleneck
    from ldm_dis.bottlenecks.factorq import FactorQ
    from ldm_dis.bottlenecks.fsq import FSQ
    from ldm_dis.config.schema import DyGAConfig, FactorQConfig

    fsq = FSQ([8, 5], dim=6)
    assert fsq.codebook_size == 40 and fsq.project_in.in_features == 6
    with pytest.raises(ValueError, match="levels"):
        FSQ([8, 1], dim=6)
    for cls, section, not_arguments in ((FactorQ, FactorQConfig, {"disc_lr"}), (DyGABottleneck, DyGAConfig, set())):
        params = inspect.signature(cls).parameters
        keys = {f.name: f.default for f in dataclasses.fields(section)}
        assert set(keys) - not_arguments <= set(params), cls  # nothing of its section left unread
        for key in set(keys) - not_arguments:
            assert params[key].default == keys[key], (cls, key)
    bn = make("factorq", num_units=3, codebook_size=7, disc_hidden=5, disc_layers=3, beta=0.5)
    assert (bn.codebook.values.numel(), bn.beta, bn.discriminator.net[0].out_features) == (7, 0.5, 5)
    assert len(bn.discriminator_parameters()) == 6
