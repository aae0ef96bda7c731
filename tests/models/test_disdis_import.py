"""Import of released dis-dis checkpoints (Lightning .ckpt + Gaussian .npz) against an oracle of the released
code (disdis_oracle.py): the imported parts compute what the released modules compute, the Gaussian file
aligns as the released code aligns, and every misfit is an error naming the key."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

from disdis_oracle import (
    FeatureExtractor as ReleasedExtractor, UNetModel, fitted_gaussians, lightning_checkpoint, released_alignment,
    tiny_disdis, write_checkpoint, write_gaussians,
)
from ldm_dis.errors import CheckpointError
from ldm_dis.models.disdis_import import describe_released_extractor, import_disdis, released_extractor_names
from ldm_dis.models.disdis_unet import describe_released_unet, released_unet_names

HEADS = ["model.unet.num_heads=4"]  # not in the weights: the oracle's U-Net has 4 heads


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """(oracle, ckpt path, npz path, mixtures) of one small released model."""
    folder = tmp_path_factory.mktemp("disdis")
    oracle = tiny_disdis()
    mixtures = fitted_gaussians(oracle, torch.rand(200, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1, seed=2)
    ckpt = write_checkpoint(oracle, folder / "epoch=000012.ckpt")
    npz = write_gaussians(mixtures, folder / "gaussian-epoch=000012.npz")
    return oracle, ckpt, npz, mixtures


@pytest.fixture(scope="module")
def imported(released):
    _, ckpt, npz, _ = released
    return import_disdis(ckpt, npz, overrides=HEADS)


def _images(n=6, seed=2):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _unet_inputs(seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 1000, (4,), generator=g), torch.rand(4, 3, 8, generator=g) + 0.5


def _released_unet(oracle, ema: bool):
    wrapper = copy.deepcopy(oracle.model)
    if ema:
        oracle.model_ema.copy_to(wrapper)
    return wrapper.diffusion_model.eval()


# ------------------------------------------------------------------------------------- the parts
@torch.no_grad()
def test_extractor_and_first_stage_compute_what_the_released_ones_compute(released, imported):
    oracle, *_ = released
    x = _images()
    scalars = oracle.cond_stage_model.image_encoder(x)
    assert scalars.std(0).min() > 0.1  # the scalars depend on the image
    torch.testing.assert_close(imported.feature_extractor.scalars(x), scalars, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(imported.feature_extractor(x), oracle.cond_stage_model(x), atol=1e-5, rtol=1e-5)
    # diffusion latents: scale_factor * quant_conv(encoder(x)), pre-quantization (VQModelInterface.encode)
    assert float(imported.first_stage.latent_scale) == pytest.approx(0.8731) and bool(imported.first_stage.latent_scale_set)
    torch.testing.assert_close(imported.latents(x, announce=False), 0.8731 * oracle.first_stage_model.encode(x),
                               atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_unet_is_the_ema_by_default_and_the_live_one_on_request(released, imported):
    oracle, ckpt, npz, _ = released
    x_t, t, context = _unet_inputs()
    ema_out, live_out = _released_unet(oracle, True)(x_t, t, context), _released_unet(oracle, False)(x_t, t, context)
    assert (ema_out - live_out).abs().max() > 0.05  # the EMA really differs from the live weights
    assert imported.weights["unet"] == "ema"
    torch.testing.assert_close(imported.unet(x_t, t, context), ema_out, atol=1e-5, rtol=1e-4)
    live = import_disdis(ckpt, npz, overrides=HEADS, ema=False)
    assert live.weights["unet"] == "live"
    torch.testing.assert_close(live.unet(x_t, t, context), live_out, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_unet_with_conv_resampling_and_attention_everywhere(tmp_path):
    oracle = tiny_disdis(seed=5, resblock_updown=False, attention=(1, 2), num_heads=2)
    model = import_disdis(write_checkpoint(oracle, tmp_path / "conv.ckpt"), overrides=["model.unet.num_heads=2"])
    assert model.model_cfg.unet.resblock_updown is False and list(model.model_cfg.unet.attention_downsample) == [1, 2]
    assert model.model_cfg.bottleneck.kind == "none"  # no Gaussian file
    x_t, t, context = _unet_inputs()
    torch.testing.assert_close(model.unet(x_t, t, context), _released_unet(oracle, True)(x_t, t, context), atol=1e-5, rtol=1e-4)


def test_schedule_architecture_and_protocol_come_from_the_file(imported):
    cfg = imported.model_cfg
    assert (cfg.diffusion.num_train_timesteps, cfg.diffusion.beta_schedule) == (1000, "scaled_linear")
    assert (cfg.diffusion.beta_start, cfg.diffusion.beta_end) == (0.0015, 0.0155)
    betas = torch.linspace(0.0015**0.5, 0.0155**0.5, 1000, dtype=torch.float64) ** 2
    torch.testing.assert_close(imported.noise_scheduler.alphas_cumprod, torch.cumprod(1 - betas, 0).float(), rtol=1e-5, atol=1e-7)
    assert (cfg.encoder.num_units, cfg.encoder.unit_dim, cfg.encoder.stem_channels, list(cfg.encoder.channels)) == (3, 8, 8, [16, 32, 32, 32])
    assert (cfg.unet.base_channels, list(cfg.unet.channel_mult), cfg.unet.num_res_blocks, cfg.unet.num_heads) == (32, [1, 2], 1, 4)
    assert cfg.unet.resblock_updown is True and cfg.bottleneck.dyga.alignment == "released"
    assert imported.resolution == 16 and imported.latent_shape == (3, 8, 8)


def test_released_full_size_architecture_maps_key_for_key_onto_the_defaults():
    """The released shapes3d.yaml U-Net and FeatureExtractor (built on the meta device: shapes only) have
    exactly the keys and shapes of ours at the schema defaults (paper Tables 8, 9), and read back as them."""
    from ldm_dis.config.loading import load_config
    from ldm_dis.models.feature_extractor import FeatureExtractor
    from ldm_dis.models.unet import UNet

    cfg = load_config(None, ["protocol=released", "data.resolution=64"]).model
    with torch.device("meta"):
        theirs = UNetModel(in_channels=3, model_channels=64, out_channels=3, num_res_blocks=2, attention_resolutions=[1, 2, 4],
                           dropout=0.1, channel_mult=(1, 2, 4, 4), num_heads=8, use_scale_shift_norm=True,
                           resblock_updown=True, context_dim=32, skip_dropout=0.2).state_dict()
        ours = UNet.from_config(cfg.unet, in_channels=3, context_dim=32)
        extractor = ReleasedExtractor(latent_units=20, d=64, image_size=64, num_channels=3, context_dim=32).state_dict()
        fx = FeatureExtractor.from_config(cfg.encoder, image_size=64)
    names = released_unet_names(ours)
    assert {names[k]: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert describe_released_unet(theirs) == {
        "model.unet.base_channels": 64, "model.unet.channel_mult": [1, 2, 4, 4], "model.unet.num_res_blocks": 2,
        "model.unet.attention_downsample": [1, 2, 4], "model.unet.use_scale_shift_norm": True,
        "model.unet.resblock_updown": True, "model.first_stage.embed_dim": 3, "model.encoder.unit_dim": 32}
    fx_names = released_extractor_names(fx)
    flat = {n for v in fx_names.values() for n in (v if isinstance(v, list) else [v])}
    assert flat == set(extractor)
    described = describe_released_extractor(extractor)
    assert described["data.resolution"] == 64 and described["model.encoder.extra_fc_width"] == 4096
    assert {k: described[f"model.encoder.{k}"] for k in ("num_units", "unit_dim", "stem_channels", "hidden", "unit_mlp")} == \
        {"num_units": 20, "unit_dim": 32, "stem_channels": 64, "hidden": 256, "unit_mlp": [256, 512]}


# --------------------------------------------------------------------------------- DyGA's anchors
@torch.no_grad()
def test_gaussian_file_aligns_units_as_the_released_code(released, imported):
    oracle, _, _, mixtures = released
    x = _images(16, seed=4)
    tokens = oracle.cond_stage_model(x)
    expected, chosen, lam = released_alignment(tokens, mixtures)
    assert lam > 0.01 and (expected - tokens).abs().max() > 0.02  # the alignment moves the units
    assert all(len(set(chosen[:, i].tolist())) > 1 for i in range(3))  # samples pick different anchors
    torch.testing.assert_close(imported.encode(x), expected, atol=1e-5, rtol=1e-5)
    bn = imported.bottleneck
    assert bn.num_anchors.tolist() == [len(m) for m, _, _ in mixtures]
    for i, (means, sigma, pi) in enumerate(mixtures):
        k = len(means)
        torch.testing.assert_close(bn.means[i, :k], torch.from_numpy(means))
        torch.testing.assert_close(bn.weights[i, :k], torch.from_numpy(pi))
        q, v = bn.eigenvectors[i, :k].double(), bn.variances[i, :k].double()
        rebuilt = torch.einsum("kij,kj,klj->kil", q, v, q)
        torch.testing.assert_close(rebuilt, torch.from_numpy(sigma).double() + 1e-6 * torch.eye(8), atol=1e-6, rtol=1e-4)


# ------------------------------------------------------------------------------------- saved folder
@torch.no_grad()
def test_cli_writes_a_saved_model_that_from_pretrained_opens(released, imported, tmp_path, capsys):
    from ldm_dis.cli import main
    from ldm_dis.models.ldm import LatentDiffusion

    _, ckpt, npz, _ = released
    out = tmp_path / "imported"
    assert main(["import", "disdis", "--gaussians", str(npz), str(ckpt), str(out), *HEADS]) == 0
    assert "ema U-Net" in capsys.readouterr().out
    model = LatentDiffusion.from_pretrained(out, device="cpu")
    assert model.weights["unet"] == "ema"
    x = _images(8, seed=6)
    torch.testing.assert_close(model.encode(x), imported.encode(x))
    x_t, t, context = _unet_inputs()
    torch.testing.assert_close(model.unet(x_t, t, context), imported.unet(x_t, t, context))
    assert main(["import", "disdis", "--gaussians", str(npz), str(ckpt), str(out), *HEADS]) == 2  # no silent overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_picture_commands_open_the_imported_folder(released, imported, tmp_path, capsys):
    from ldm_dis.cli import main

    _, ckpt, npz, _ = released
    out = tmp_path / "imported"
    assert main(["import", "disdis", "--gaussians", str(npz), str(ckpt), str(out), *HEADS, "data.name=synth-shapes3d"]) == 0
    assert main(["sample", "interchange", str(out), "--pairs", "1", "--steps", "2", "--nmi-images", "0"]) == 0
    assert (out / "pictures" / "interchange.png").is_file()
    bare = imported.save_pretrained(tmp_path / "bare")  # a saved model without the data section
    assert main(["sample", "interchange", str(bare), "--pairs", "1", "--steps", "2", "--nmi-images", "0"]) == 2
    assert "without config.yaml" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ errors
def _state(released):
    return dict(lightning_checkpoint(released[0])["state_dict"])


def _save(tmp_path, sd, name="bad.ckpt"):
    torch.save({"state_dict": sd, "epoch": 1, "global_step": 2}, tmp_path / name)
    return tmp_path / name


def test_missing_and_unexpected_keys_are_named_in_the_files_names(released, tmp_path):
    sd = _state(released)
    del sd["cond_stage_model.mlps.1.layers.2.bias"]
    sd["cond_stage_model.image_encoder.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"missing keys \['mlps\.1\.layers\.2\.bias'\]; unexpected keys "
                                              r"\['image_encoder\.extra\.weight'\]"):
        import_disdis(_save(tmp_path, sd), overrides=HEADS)
    sd = _state(released)
    del sd["model.diffusion_model.output_blocks.2.1.proj_in.bias"]
    with pytest.raises(CheckpointError, match=r"model\.diffusion_model.*missing keys \['output_blocks\.2\.1\.proj_in\.bias'\]"):
        import_disdis(_save(tmp_path, sd), overrides=HEADS)
    sd = _state(released)
    del sd["model_ema.diffusion_modelout2weight"]
    with pytest.raises(CheckpointError, match=r"model_ema.*missing keys \['diffusion_modelout2weight'\]"):
        import_disdis(_save(tmp_path, sd), overrides=HEADS)
    sd = _state(released)
    sd["logvar"] = torch.zeros(1000)
    with pytest.raises(CheckpointError, match=r"unexpected keys \['logvar'\]"):
        import_disdis(_save(tmp_path, sd), overrides=HEADS)


def test_wrong_shape_names_the_key_and_both_shapes(released, tmp_path):
    sd = _state(released)
    sd["cond_stage_model.image_encoder.encoder.4.running_var"] = torch.ones(17)
    with pytest.raises(CheckpointError, match=r"image_encoder\.encoder\.4\.running_var: file \(17,\) vs model \(16,\)"):
        import_disdis(_save(tmp_path, sd), overrides=HEADS)


def test_a_config_of_another_architecture_is_refused_with_the_keys_to_set(released, imported, tmp_path):
    from omegaconf import OmegaConf

    from ldm_dis.config.loading import load_config

    _, ckpt, npz, _ = released
    path = tmp_path / "fits.yaml"  # the file's own architecture as a config file
    OmegaConf.save({"data": {"resolution": 16}, "model": OmegaConf.to_container(imported.model_cfg)}, path)

    def config(*overrides):
        return load_config(path, ["protocol=released", *overrides])

    with pytest.raises(CheckpointError, match=r"model\.unet\.num_res_blocks: config 2, file 1.*beta_end: config 0\.012, "
                                              r"file 0\.0155.*Set model\.unet\.num_res_blocks=1"):
        import_disdis(ckpt, npz, cfg=config("model.unet.num_res_blocks=2", "model.diffusion.beta_end=0.012"))
    with pytest.raises(CheckpointError, match="alignment must be 'released'"):
        import_disdis(ckpt, npz, cfg=config("model.bottleneck.dyga.alignment=paper"))
    with pytest.raises(CheckpointError, match=r"a unit with 4 Gaussians; model\.bottleneck\.dyga\.k_max=3"):
        import_disdis(ckpt, npz, cfg=config("model.bottleneck.dyga.k_max=3", "model.bottleneck.dyga.k_init=2"))
    with pytest.raises(CheckpointError, match="needs the run's Gaussian file"):
        import_disdis(ckpt, None, cfg=config())
    model = import_disdis(ckpt, npz, cfg=config())  # the same config fits
    x = _images()
    torch.testing.assert_close(model.encode(x), imported.encode(x))


def test_a_unet_ours_cannot_express_is_refused(released, tmp_path):
    sd = _state(released)
    sd["model.diffusion_model.input_blocks.1.1.transformer_blocks.1.norm1.weight"] = torch.ones(32)
    with pytest.raises(CheckpointError, match=r"transformer_depth > 1.*no counterpart"):
        import_disdis(_save(tmp_path, sd), overrides=HEADS)
    sd = _state(released)
    sd["model.diffusion_model.label_emb.weight"] = torch.zeros(10, 128)
    with pytest.raises(CheckpointError, match="class labels"):
        import_disdis(_save(tmp_path, sd), overrides=HEADS)


def test_not_a_disdis_checkpoint(tmp_path):
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a dis-dis latent diffusion checkpoint"):
        import_disdis(tmp_path / "other.ckpt")


class _Payload:
    """Unpickling this runs os.makedirs(marker): what a weights-only load must refuse."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_a_checkpoint_that_would_run_code_is_refused_unrun(released, tmp_path):
    marker = tmp_path / "code-ran"
    ckpt = lightning_checkpoint(released[0])
    ckpt["callbacks"]["evil"] = _Payload(marker)
    torch.save(ckpt, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match=r"evil\.ckpt.*weights_only=True.*GLOBAL os\.makedirs"):
        import_disdis(tmp_path / "evil.ckpt", overrides=HEADS)
    assert not marker.exists()


def test_gaussian_file_errors_name_the_problem(released, tmp_path):
    oracle, ckpt, _, mixtures = released
    np.savez(tmp_path / "extra.npz", means=np.zeros((2, 8)), sigma=np.zeros((2, 8, 8)), pi=np.ones(2), K=np.array([2]),
             labels=np.zeros(2))
    with pytest.raises(CheckpointError, match=r"missing \[\], unexpected \['labels'\]"):
        import_disdis(ckpt, tmp_path / "extra.npz", overrides=HEADS)
    bad = [(m, s, w) for m, s, w in mixtures]
    np.savez(tmp_path / "count.npz", means=np.concatenate([m for m, _, _ in bad]), sigma=np.concatenate([s for _, s, _ in bad]),
             pi=np.concatenate([w for _, _, w in bad]), K=np.array([2, 3, 3]))
    with pytest.raises(CheckpointError, match=r"K = \[2, 3, 3\] must be one count >= 1 per unit, summing to the 9 rows"):
        import_disdis(ckpt, tmp_path / "count.npz", overrides=HEADS)
    write_gaussians(mixtures[:2], tmp_path / "two.npz")
    with pytest.raises(CheckpointError, match=r"holds 2 units of dimension \[8\]; the model has 3 units of 8"):
        import_disdis(ckpt, tmp_path / "two.npz", overrides=HEADS)
    with pytest.raises(CheckpointError, match="does not exist"):
        import_disdis(ckpt, tmp_path / "nope.npz", overrides=HEADS)
