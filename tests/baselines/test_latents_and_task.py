"""Latent layers, the baseline model and its training task on tiny 8x8 / 16x16 inputs."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from ldm_dis.baselines import latents
from ldm_dis.baselines.model import KINDS, BaselineModel
from ldm_dis.baselines.task import BaselineTask, CosineToMin, qlae_param_groups
from ldm_dis.config.schema import BaselineConfig, Config


def bcfg(**kw):
    cfg = OmegaConf.structured(BaselineConfig)
    for k, v in kw.items():
        cfg[k] = v
    return cfg


class TinyData:
    factor_sizes = [3, 4]
    factor_names = ["a", "b"]
    num_channels = 3
    resolution = 16

    def __len__(self):
        return 100


class PlainAccelerator:
    def backward(self, loss):
        loss.backward()

    def clip_grad_norm_(self, params, max_norm):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)


def task_cfg(kind, **baseline):
    cfg = OmegaConf.structured(Config)
    cfg.model.kind = kind
    cfg.model.baseline.base_channels = 4
    cfg.model.baseline.hidden = 16
    cfg.model.baseline.disc_hidden = 16
    cfg.model.baseline.codebook_size = 8
    for k, v in baseline.items():
        cfg.model.baseline[k] = v
    cfg.train.lr = 1e-3
    return cfg


def test_qlae_codebooks_start_at_linspace_and_straight_through_passes_gradients():
    lat = latents.PerDimQuant(bcfg(), dim=3)
    assert torch.allclose(lat.codebooks[1], torch.linspace(-0.5, 0.5, 10))
    h = torch.tensor([[0.0, 0.31, -2.0]], requires_grad=True)
    out = lat(h, 0)
    step = 1 / 9
    assert torch.allclose(out.z, torch.tensor([[-0.5 + 4 * step, -0.5 + 7 * step, -0.5]]), atol=1e-6)  # nearest values
    out.z.sum().backward(retain_graph=True)
    assert torch.equal(h.grad, torch.ones_like(h))  # straight-through: gradient of the identity
    # quantization term moves only the codebook, commitment only the encoder output
    h.grad = None
    out.terms["quant"].backward(retain_graph=True)
    assert h.grad is None and lat.codebooks.grad.abs().sum() > 0
    lat.codebooks.grad = None
    out.terms["commit"].backward()
    assert h.grad.abs().sum() > 0 and lat.codebooks.grad is None
    d = (torch.tensor([0.0, 0.31, -2.0]) - out.z.detach()[0]) ** 2
    assert math.isclose(out.terms["commit"].item(), 0.01 * d.mean().item(), rel_tol=1e-5)


def test_gaussian_latent_samples_in_training_and_returns_the_mean_in_eval():
    lat = latents.Gaussian(bcfg(beta=2.0), dim=2)
    h = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # mu (1, 0), logvar 0
    lat.eval()
    out = lat(h, 0)
    assert torch.equal(out.z, h[:, :2]) and torch.equal(out.code, h[:, :2])
    assert math.isclose(out.terms["kl"].item(), 2.0 * 0.5)
    lat.train()
    assert not torch.equal(lat(h, 0).z, h[:, :2])


def test_tcvae_terms_are_scaled_by_weights_over_pixels():
    cfg = bcfg(alpha=1.0, tc_weight=3.0, beta=1.0)
    lat = latents.Gaussian(cfg, dim=2, objective="tcvae", dataset_size=50, pixels=10).eval()
    h = torch.tensor([[0.3, -0.2, 0.0, 0.0]])
    out = lat(h, 0)  # batch of one: MI = log N, TC = (d-1) log N
    assert math.isclose(out.terms["mi"].item(), math.log(50) / 10, rel_tol=1e-5)
    assert math.isclose(out.terms["tc"].item(), 3.0 * math.log(50) / 10, rel_tol=1e-5)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_evaluation_codes_are_deterministic(kind):
    torch.manual_seed(0)
    model = BaselineModel(kind, task_cfg(kind).model.baseline, 3, 16, latent_dim=4, dataset_size=100).eval()
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    a, b = model.encode(x), model.encode(x)
    assert a.shape == (5, 4) and torch.equal(a, b)
    assert torch.equal(model(x).latent.z, a)  # eval forward decodes exactly the code
    if kind in ("qvae", "factorqvae", "dvae", "factordvae"):
        values = model.latent.codebook.values
        assert torch.isin(a, values).all()  # a code of the codebook, not a soft mixture
    if kind == "qlae":
        assert torch.isin(a, model.latent.codebooks).all()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_training_step_of_every_kind(kind):
    torch.manual_seed(0)
    task = BaselineTask(task_cfg(kind), TinyData())
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    before = {k: p.detach().clone() for k, p in task.model.named_parameters()}
    logs = task.training_step(x, torch.zeros(8, 2, dtype=torch.long), 0, PlainAccelerator())
    assert all(torch.isfinite(v) and v.dim() == 0 and not v.requires_grad for v in logs.values())
    assert "recon" in logs and "loss" in logs
    assert any(not torch.equal(before[k], p) for k, p in task.model.named_parameters())
    if KINDS[kind].tc_discriminator:
        assert {"tc", "tc_disc"} <= set(logs) and "discriminator" in task.optimizers()
    assert task.encode(x).shape == (8, 4)
    assert task.sample_images(x, torch.Generator()).shape == x.shape


def test_discriminator_step_does_not_touch_the_model():
    torch.manual_seed(0)
    task = BaselineTask(task_cfg("factorqvae"), TinyData())
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    out = task.model(x, 0)
    from ldm_dis.bottlenecks.total_correlation import discriminator_loss

    blocks = out.latent.tc_blocks
    discriminator_loss(task.discriminator, blocks[:4], blocks[4:]).backward()
    assert all(p.grad is None for p in task.model.parameters())
    assert all(p.grad is not None for p in task.discriminator.parameters())


def test_qlae_weight_decay_applies_to_weights_only():
    model = BaselineModel("qlae", task_cfg("qlae").model.baseline, 3, 16, latent_dim=4)
    decay, no_decay = qlae_param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    decayed = {id(p) for p in decay["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (name.endswith("weight") and not name.startswith("latent."))
    assert id(model.latent.codebooks) not in decayed
    task = BaselineTask(task_cfg("qlae"), TinyData())
    assert isinstance(task.optimizer, torch.optim.AdamW)


def test_cosine_lr_factor():
    f = CosineToMin(100, 0.01)
    assert f(0) == 1.0 and math.isclose(f(50), 0.505) and f(100) == 0.01 and f(10_000) == 0.01
