"""Every picture command writes a non-empty PNG from a tiny run folder made by the real pipeline (VQ-GAN first
stage then LDM, two steps each at 16x16); the figure helpers on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ldm_dis.cli import main
from ldm_dis.config.loading import load_config
from ldm_dis.viz.attention import MIN_RANGE, colour_limits, relative_log2
from ldm_dis.viz.curves import curves_from_records, fold_constants_and_copies
from ldm_dis.viz.scatter import project_2d
from ldm_dis.viz.unit_labels import best_units, unit_factor_nmi, unit_labels

TINY_RUN = [
    "data.name=synth-shapes3d", "data.resolution=16", "data.num_workers=0",
    "model.first_stage.n_embed=16", "model.first_stage.channel_mult=[1,2]", "model.first_stage.num_res_blocks=1",
    "model.first_stage.batch_size=4", "model.first_stage.max_steps=2", "model.first_stage.disc_channels=8",
    "model.first_stage.disc_layers=1",
    "model.encoder.num_units=3", "model.encoder.unit_dim=8", "model.encoder.stem_channels=8",
    "model.encoder.channels=[8,8]", "model.encoder.hidden=16", "model.encoder.extra_fc=false", "model.encoder.unit_mlp=[8]",
    "model.unet.base_channels=32", "model.unet.channel_mult=[1,2]", "model.unet.num_res_blocks=1",
    "model.unet.attention_downsample=[1,2]", "model.unet.num_heads=2", "model.bottleneck.kind=none",
    "train.max_steps=2", "train.batch_size=4", "train.log_every=1", "train.ckpt_every=2", "train.sample_every=0",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from ldm_dis.training.pipeline import run_training

    root = tmp_path_factory.mktemp("pictures")
    cfg = load_config(None, [*TINY_RUN, f"run.dir={root / 'run'}", f"run.first_stage_cache={root / 'fs'}"])
    run_training(cfg)
    return root / "run"


def _png(path):
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as image:
        image.verify()
        return image.size


@pytest.mark.parametrize("command, extra", [
    (["sample", "interchange"], ["--pairs", "2", "--steps", "2", "--nmi-images", "64"]),
    (["sample", "interpolate"], ["--pairs", "1", "--num", "3", "--steps", "2"]),
    (["attention"], ["--images", "2", "--steps", "2", "--nmi-images", "64"]),
    (["plot", "scatter"], ["--images", "64"]),
    (["plot", "curves"], []),
])
def test_every_figure_command_writes_a_png(tiny_run, tmp_path, command, extra):
    out = tmp_path / "figure.png"
    assert main([*command, str(tiny_run), "--out", str(out), *extra]) == 0
    _png(out)
    if command == ["attention"]:  # the raw maps: (images, units, H, W), a distribution over units per pixel
        maps = np.load(out.with_suffix(".npy"))
        assert maps.shape == (2, 3, 16, 16) and maps.dtype == np.float32
        np.testing.assert_allclose(maps.sum(axis=1), 1.0, atol=1e-5)


def test_default_output_goes_to_the_run_folder_and_is_never_replaced_silently(tiny_run, capsys):
    picture = tiny_run / "pictures" / "loss_curves.png"  # the name the quickstart gives it
    assert main(["plot", "curves", str(tiny_run)]) == 0
    _png(picture)
    before = picture.read_bytes()
    assert main(["plot", "curves", str(tiny_run)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and picture.read_bytes() == before
    assert main(["plot", "curves", str(tiny_run), "--overwrite"]) == 0


def test_the_older_checkpoint_flag_still_names_the_run(tiny_run, tmp_path, capsys):
    out = tmp_path / "curves.png"
    assert main(["plot", "curves", "--checkpoint", str(tiny_run), "--out", str(out)]) == 0
    _png(out)
    assert "deprecated" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # both forms at once: a usage error
        main(["plot", "curves", str(tiny_run), "--checkpoint", str(tiny_run)])


def test_ddim_steps_default_to_the_runs_own(tiny_run):
    import argparse

    from ldm_dis.commands.picture_args import ddim_settings
    from ldm_dis.sampling.components import load_ldm_components

    ldm = load_ldm_components(tiny_run)
    assert ddim_settings(ldm, argparse.Namespace(steps=None, eta=None)) == (ldm.cfg.model.diffusion.sample_steps,
                                                                          ldm.cfg.model.diffusion.eta)
    assert ddim_settings(ldm, argparse.Namespace(steps=7, eta=0.5)) == (7, 0.5)


def test_missing_run_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "missing"
    assert main(["attention", str(run), "--steps", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unit_labels_name_the_factor_a_unit_copies():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 4, size=(600, 2))
    noise = rng.normal(size=(600, 3, 2))
    units = noise.copy()
    units[:, 0, 0] += 5 * factors[:, 1]  # unit 0 carries factor 1
    units[:, 2, 1] += 5 * factors[:, 0]  # unit 2 carries factor 0
    nmi = unit_factor_nmi(units, factors)
    assert nmi.shape == (2, 3)
    assert list(best_units(nmi)) == [2, 0]
    labels = unit_labels(nmi, ["colour", "shape"])
    assert labels[0].startswith("shape ") and labels[2].startswith("colour ")
    assert nmi[1, 0] > 0.8 and nmi[1, 1] < 0.2


def test_attention_colours_are_relative_to_uniform_and_near_uniform_stays_pale():
    n = 4
    uniform = np.full((1, n, 2, 2), 1 / n)
    near = uniform * (1 + 0.02 * np.array([1, -1, 1, -1])[None, :, None, None])
    strong = np.zeros((1, n, 2, 2)) + 0.02
    strong[0, 0] = 1 - 0.02 * (n - 1)  # unit 0 takes 94% everywhere
    rel = relative_log2(np.concatenate([uniform, near, strong]))
    np.testing.assert_allclose(rel[0], 0, atol=1e-12)  # uniform attention is the centre of the scale (white)
    limits = colour_limits(rel, "row")
    assert limits[0] == limits[1] == MIN_RANGE  # a 2% wobble is not stretched over the whole colour scale
    assert np.abs(rel[1]).max() / limits[1] < 0.05
    assert limits[2] == np.ceil(np.log2(n * strong[0, 0, 0, 0]) * 2) / 2 == 2.0  # the strongest unit sets its row's scale
    assert np.all(colour_limits(rel, "all") == limits.max())


def test_pca_projection_keeps_the_main_direction():
    rng = np.random.default_rng(1)
    t = rng.normal(size=500)
    features = np.stack([t, 2 * t, 0.01 * rng.normal(size=500), -t], axis=1)
    xy, method = project_2d(features, method="pca")
    assert method == "PCA" and xy.shape == (500, 2)
    assert abs(np.corrcoef(xy[:, 0], t)[0, 1]) > 0.999
    value, method = project_2d(t[:, None])
    assert method == "value" and np.array_equal(value[:, 0], t)


def test_curves_from_records_skips_bookkeeping_and_groups_prefixes():
    records = [{"step": 10, "epoch_end": 0, "time": 1.0, "loss": 0.5, "dyga/k_unit0": 3.0, "dyga/k_unit1": 4.0,
                "dyga/fit_seconds": 2.0, "dyga/fit_index": 1.0},
               {"step": 20, "epoch": 0, "time": 2.0, "loss": None, "note": "x"},
               {"step": 20, "end": "max_steps", "steps_run": 20, "train_seconds": 4.0, "images_per_s": 80.0}]
    panels = curves_from_records(records)
    assert sorted(panels) == ["dyga/fit_seconds", "dyga/k", "loss"]  # the end-of-training summary is no curve
    key, steps, values = panels["loss"][0]
    assert key == "loss" and list(steps) == [10] and list(values) == [0.5]  # the None (non-finite) is left out
    assert [k for k, *_ in panels["dyga/k"]] == ["dyga/k_unit0", "dyga/k_unit1"]


def test_constant_values_and_copies_get_no_panel():
    records = [{"step": s, "loss": 1.0 / s, "diffusion": 1.0 / s, "lr/ldm": 3e-4, "images_per_s": 10.0 + s}
               for s in (1, 2, 3)]
    panels, notes = fold_constants_and_copies(curves_from_records(records))
    assert sorted(panels) == ["images_per_s", "loss = diffusion"]
    assert notes == ["lr/ldm = 0.0003"]
