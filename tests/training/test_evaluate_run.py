"""`ldm-dis evaluate` on a trained run: a checkpoint and its export give the same numbers, and FID is
computed from DDIM samples of the run (with a tiny stand-in for the Inception network)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ldm_dis.cli import main
from ldm_dis.config.loading import load_config

SIZES = (3, 4, 2)  # every combination once: 24 images, so the export is a full table
SMALL = ["--set", "factorvae.num_variance_estimate=200", "--set", "factorvae.num_train=20",
         "--set", "factorvae.num_eval=10", "--set", "dci.num_train=100", "--set", "dci.num_test=50",
         "--set", "mig.num_train=200", "--set", "infomec.num_points=200"]


def _images() -> np.ndarray:
    """(24, 16, 16, 3) uint8: hue by factor 0, a bar at a column set by factor 1, its width by factor 2."""
    grid = np.stack(np.unravel_index(np.arange(int(np.prod(SIZES))), SIZES), axis=1)
    images = np.zeros((len(grid), 16, 16, 3), np.uint8)
    for img, (hue, x, size) in zip(images, grid):
        img[..., hue] = 120
        img[:, 3 * x: 3 * x + 2 + 2 * size] = 255
    return images


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny LDM (first stage and LDM 2 steps each) on a 24-image arrays dataset, and its export."""
    from ldm_dis.training.pipeline import run_training

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evaluate")
    np.savez(root / "grid.npz", images=_images())
    cfg = load_config(None, [
        "data.name=arrays", f"data.path={root / 'grid.npz'}", f"data.factor_sizes={list(SIZES)}",
        "data.factor_names=[hue,x,size]", "data.resolution=16", "data.num_workers=0",
        "model.first_stage.n_embed=16", "model.first_stage.channel_mult=[1,2]", "model.first_stage.num_res_blocks=1",
        "model.first_stage.batch_size=4", "model.first_stage.max_steps=2", "model.first_stage.disc_channels=8",
        "model.first_stage.disc_layers=1",
        "model.encoder.num_units=3", "model.encoder.unit_dim=8", "model.encoder.stem_channels=8",
        "model.encoder.channels=[8,8]", "model.encoder.hidden=16", "model.encoder.extra_fc=false",
        "model.encoder.unit_mlp=[8]", "model.encoder.final_relu=false",
        "model.unet.base_channels=32", "model.unet.channel_mult=[1,2]", "model.unet.num_res_blocks=1",
        "model.unet.attention_downsample=[1,2]", "model.unet.num_heads=2", "model.bottleneck.kind=none",
        "model.diffusion.sample_steps=2",
        "train.max_steps=2", "train.batch_size=4", "train.log_every=1", "train.ckpt_every=2", "train.sample_every=0",
        f"run.dir={root / 'run'}", f"run.first_stage_cache={root / 'fs'}",
    ])
    run_training(cfg)
    assert main(["export", str(root / "run"), "--out", str(root / "codes.npz")]) == 0
    return root


def _evaluate(run, out, *args):
    assert main(["evaluate", *args, "--seed", "3", "--jobs", "1", "--out", str(run / out)]) == 0
    return json.loads((run / out / "metrics.json").read_text())


@pytest.mark.parametrize("protocol", ["paper", "released"])
def test_checkpoint_and_its_exported_codes_give_the_same_numbers(run, protocol):
    metrics = ["--metrics", "factorvae", "dci", "mig", "infomec", "--protocol", protocol, *SMALL]
    direct = _evaluate(run, f"ckpt_{protocol}", "--checkpoint", str(run / "run"), *metrics)
    exported = _evaluate(run, f"codes_{protocol}", "--codes", str(run / "codes.npz"), *metrics)
    assert direct["unit_pca"] == exported["unit_pca"] == ("sample" if protocol == "paper" else "all")
    assert direct["infomec_active"] == exported["infomec_active"] == ("range" if protocol == "paper" else "iqr")
    assert set(direct["scores"]) == {"factorvae", "dci", "mig", "infomec"}
    assert direct["scores"] == exported["scores"]  # exactly: same draws, same PCA, same float32 codes
    assert direct["matrices"] == exported["matrices"]


def test_the_export_records_the_runs_evaluation_choices(run):
    from ldm_dis.metrics import CodeTable

    assert CodeTable.from_npz(str(run / "codes.npz")).protocol == {"unit_pca": "sample", "infomec_active": "range"}
    # without --protocol, a checkpoint and its codes both follow what the run's config (here: paper) says
    direct = _evaluate(run, "ckpt_default", "--checkpoint", str(run / "run"), "--metrics", "mig",
                       "--set", "mig.num_train=200")
    assert direct["unit_pca"] == "sample"


class _MeanColour(torch.nn.Module):
    """Stands in for the Inception file: uint8 images (n, 3, H, W) -> mean colour and its square (n, 6)."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        m = x.float().mean(dim=(2, 3)) / 255.0
        return torch.cat([m, m * m], dim=1)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_fid_from_the_command_line_scores_ddim_samples(run, monkeypatch):
    weights = run / "stand_in_inception.pt"
    torch.jit.script(_MeanColour()).save(str(weights))
    monkeypatch.delenv("LDM_DIS_INCEPTION_WEIGHTS", raising=False)
    args = ["--metrics", "fid", "--inception-weights", str(weights), "--set", "fid.num_points=12"]
    direct = _evaluate(run, "fid", "--checkpoint", str(run / "run"), *args)
    assert direct["skipped"] == {} and np.isfinite(direct["scores"]["fid"]["fid"]) and direct["scores"]["fid"]["fid"] > 0
    again = _evaluate(run, "fid_again", "--checkpoint", str(run / "run"), *args)
    assert again["scores"] == direct["scores"]  # x_T and the conditioning images come from the seed
    codes = _evaluate(run, "fid_codes", "--codes", str(run / "codes.npz"), *args)
    assert "codes only" in codes["skipped"]["fid"]
