"""VQ-GAN first stage: taming checkpoint import (against an oracle of the original code), loss terms,
perceptual loading, the latent scale buffer."""

from __future__ import annotations

import logging

import pytest
import torch
from omegaconf import OmegaConf

from ldm_dis.config.schema import FirstStageConfig
from ldm_dis.errors import UserInputError
from ldm_dis.models.perceptual import PerceptualLoss, build_perceptual
from ldm_dis.models.taming_import import convert_taming_state_dict
from ldm_dis.models.vqgan import FirstStage, load_first_stage
from ldm_dis.models.vqgan_loss import PatchDiscriminator, VQGANLoss, adaptive_weight, hinge_d_loss
from taming_oracle import TamingVQModel

TINY = dict(embed_dim=3, n_embed=64, base_channels=32, channel_mult=[1, 2], num_res_blocks=1)


def _tiny_cfg(**kw):
    return OmegaConf.merge(OmegaConf.structured(FirstStageConfig), {**TINY, **kw})


@pytest.fixture(scope="module")
def taming_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    oracle = TamingVQModel(ch=32, ch_mult=(1, 2), num_res_blocks=1, embed_dim=3, n_embed=64).eval()
    # the codebook spread like the latents so that quantization actually picks different codes
    with torch.no_grad():
        z = oracle.encode(torch.rand(4, 3, 16, 16) * 2 - 1)
        oracle.quantize.embedding.weight.copy_(z.permute(0, 2, 3, 1).reshape(-1, 3)[torch.randperm(4 * 64)[:64]])
    path = tmp_path_factory.mktemp("taming") / "last.ckpt"
    torch.save({"state_dict": oracle.state_dict(), "global_step": 7}, path)  # Lightning-like file
    return oracle, path


def test_taming_checkpoint_reconstructs_like_the_original(taming_ckpt):
    oracle, path = taming_ckpt
    ours = load_first_stage(path, _tiny_cfg()).eval()
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), oracle.encode(x), atol=1e-5, rtol=1e-4)
        rec_ours, rec_oracle = ours(x)[0], oracle(x)
    assert rec_oracle.abs().mean() > 1e-3  # a non-trivial image
    torch.testing.assert_close(rec_ours, rec_oracle, atol=1e-4, rtol=1e-4)


def test_taming_discriminator_keys_load_into_ours(taming_ckpt):
    oracle, path = taming_ckpt
    weights = convert_taming_state_dict(torch.load(path, weights_only=True)["state_dict"])
    disc = PatchDiscriminator()
    disc.load_state_dict(weights.discriminator)  # strict
    torch.testing.assert_close(disc.main[0].weight, oracle.loss.discriminator.main[0].weight)


def test_unknown_and_missing_keys_are_named(taming_ckpt, tmp_path):
    oracle, _ = taming_ckpt
    sd = dict(oracle.state_dict())
    sd["encoder.down.0.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": sd}, tmp_path / "extra.ckpt")
    with pytest.raises(UserInputError, match=r"encoder\.down\.0\.extra\.weight"):
        load_first_stage(tmp_path / "extra.ckpt", _tiny_cfg())
    sd = dict(oracle.state_dict())
    del sd["decoder.up.1.upsample.conv.weight"]
    torch.save({"state_dict": sd}, tmp_path / "missing.ckpt")
    with pytest.raises(UserInputError, match=r"decoder\.up_blocks\.0\.upsamplers\.0\.conv\.weight"):
        load_first_stage(tmp_path / "missing.ckpt", _tiny_cfg())


def test_mismatched_config_and_missing_file_are_clear_errors(taming_ckpt, tmp_path):
    _, path = taming_ckpt
    with pytest.raises(UserInputError, match=r"shape mismatches.*'n_embed': 64"):
        load_first_stage(path, _tiny_cfg(n_embed=128))
    with pytest.raises(UserInputError, match="does not exist"):
        load_first_stage(tmp_path / "nope.ckpt", _tiny_cfg())


def test_safetensors_roundtrip_with_prefix(tmp_path):
    from safetensors.torch import save_file

    model = FirstStage.from_config(_tiny_cfg())
    model.set_latent_scale_from(torch.randn(64) * 4)
    save_file({f"first_stage.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    loaded = load_first_stage(tmp_path / "m.safetensors", _tiny_cfg())
    assert bool(loaded.latent_scale_set) and torch.isclose(loaded.latent_scale, model.latent_scale)


def test_latent_scale_makes_unit_std_and_is_in_state_dict():
    model = FirstStage.from_config(_tiny_cfg())
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        model.set_latent_scale_from(model.encode(x))
        z = model.encode_scaled(x)
    assert abs(z.std().item() - 1.0) < 1e-4
    assert {"latent_scale", "latent_scale_set"} <= set(model.state_dict())


def test_hinge_and_adaptive_weight():
    assert hinge_d_loss(torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])).item() == pytest.approx(0.5 * (0.5 + 0.75))
    w = torch.randn(4, requires_grad=True)
    rec, g = (3 * w).sum(), (w * 0.5).sum()
    # gradients are 3*1 and 0.5*1 per element: ratio 6
    assert adaptive_weight(rec, g, w).item() == pytest.approx(6.0 / (1 + 1e-4 / (0.5 * 2)), rel=1e-4)


def test_generator_and_discriminator_losses_train_their_parts():
    torch.manual_seed(0)
    model = FirstStage.from_config(_tiny_cfg())
    crit = VQGANLoss(disc_weight=0.75, disc_start=0, disc_layers=2)  # 16x16 images
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    rec, cb = model(x)
    loss, terms = crit.generator_loss(x, rec, cb, step=0, last_layer=model.last_layer)
    assert {"l1", "codebook", "g", "d_weight"} <= set(terms)
    loss.backward()
    assert model.vq.encoder.conv_in.weight.grad.abs().sum() > 0
    d = crit.discriminator_loss(x, rec, step=0)
    d.backward()
    assert crit.discriminator.main[0].weight.grad.abs().sum() > 0
    assert crit.discriminator_loss(x, rec, step=0) is not None
    assert VQGANLoss(disc_start=10, disc_layers=2).discriminator_loss(x, rec, step=3) is None


def test_perceptual_absent_is_a_log_note_and_a_file_loads(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        assert build_perceptual(None) is None
    assert "perceptual loss off" in caplog.text
    with pytest.raises(UserInputError, match="does not exist"):
        build_perceptual(str(tmp_path / "vgg.pth"))
    torch.manual_seed(0)
    ref = PerceptualLoss()
    # a taming checkpoint carries the LPIPS net under loss.perceptual_loss.
    torch.save({"state_dict": {f"loss.perceptual_loss.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "vq.ckpt")
    net = build_perceptual(str(tmp_path / "vq.ckpt"))
    for k, v in ref.state_dict().items():
        assert torch.equal(net.state_dict()[k], v)
    x, y = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(net(x, x), torch.zeros(2), atol=1e-6)
        assert (net(x, y) != 0).all() and net(x, y).shape == (2,)
    bad = {k: v for k, v in ref.state_dict().items() if not k.startswith("lin4")}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(UserInputError, match=r"bad\.pth.*missing keys \['lin4.model.1.weight'\]"):
        PerceptualLoss.from_file(tmp_path / "bad.pth")
    wrong = {**ref.state_dict(), "lin0.model.1.weight": torch.zeros(1, 3, 1, 1)}
    torch.save(wrong, tmp_path / "wrong.pth")  # every key present, one of the wrong shape: named too
    with pytest.raises(UserInputError, match=r"lin0\.model\.1\.weight: file \(1, 3, 1, 1\) vs model \(1, 64, 1, 1\)"):
        PerceptualLoss.from_file(tmp_path / "wrong.pth")
