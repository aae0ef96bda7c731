"""A run folder travels: copied to another path with its first-stage cache deleted, it still samples, draws
attention maps and is evaluated (the first stage comes from the run's own model.safetensors), and the model
object rebuilds from it and from its save_pretrained folder with no dataset."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from ldm_dis.cli import main
from ldm_dis.config.loading import load_config

from test_figures import TINY_RUN


@pytest.fixture(scope="module")
def moved_run(tmp_path_factory):
    from ldm_dis.training.pipeline import run_training

    root = tmp_path_factory.mktemp("travel")
    cfg = load_config(None, [*TINY_RUN, "model.bottleneck.kind=dyga", "model.bottleneck.dyga.k_init=2",
                             "model.bottleneck.dyga.max_samples=64", "model.bottleneck.dyga.num_workers=1",
                             "model.bottleneck.dyga.em_iters=5", "train.epoch_steps=1",
                             f"run.dir={root / 'run'}", f"run.first_stage_cache={root / 'fs'}"])
    trainer = run_training(cfg)
    trained = trainer.task.encode(trainer.task.first_stage.decode(torch.zeros(1, 3, 8, 8)).clamp(-1, 1))
    shutil.copytree(root / "run", root / "elsewhere" / "run")
    shutil.rmtree(root / "run")
    shutil.rmtree(root / "fs")  # the first stage the config.yaml names is gone
    return root / "elsewhere" / "run", trained


def test_a_moved_run_still_samples_and_draws_attention(moved_run, tmp_path):
    run, _ = moved_run
    out = tmp_path / "grid.png"
    assert main(["sample", "interchange", str(run), "--out", str(out), "--pairs", "2",
                 "--steps", "2", "--nmi-images", "32"]) == 0
    assert out.stat().st_size > 1000
    assert main(["attention", str(run), "--out", str(tmp_path / "att.png"), "--images", "2",
                 "--steps", "2", "--nmi-images", "0"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "att.npy").sum(axis=1), 1.0, atol=1e-5)


def test_a_moved_run_is_evaluated(moved_run, tmp_path):
    run, _ = moved_run
    assert main(["evaluate", str(run), "--metrics", "mig", "--fast", "--jobs", "1",
                 "--out", str(tmp_path / "eval")]) == 0
    assert any((tmp_path / "eval").iterdir())


def test_the_model_object_from_a_moved_run_and_its_saved_folder(moved_run, tmp_path):
    from ldm_dis.models import load_pretrained
    from ldm_dis.models.ldm import LatentDiffusion

    run, trained = moved_run
    model = LatentDiffusion.from_pretrained(run, device="cpu")
    probe = model.first_stage.decode(torch.zeros(1, 3, 8, 8)).clamp(-1, 1)
    torch.testing.assert_close(model.encode(probe), trained)  # the run's own extractor, bottleneck, first stage
    assert int(model.bottleneck.num_anchors.sum()) > 0  # DyGA's anchors travel with the weights
    live = LatentDiffusion.from_pretrained(run, ema=False, device="cpu")
    assert model.weights["unet"] == "ema" and live.weights["unet"] == "live"
    assert any(not torch.equal(a, b) for a, b in zip(model.unet.parameters(), live.unet.parameters()))

    saved = model.save_pretrained(tmp_path / "saved")
    again = load_pretrained(saved, device="cpu")
    assert isinstance(again, LatentDiffusion) and again.weights["unet"] == "ema"
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    x_T = model.noise(seed=0, count=2)
    units = model.encode(probe.expand(2, -1, -1, -1))
    torch.testing.assert_close(again.decode(again.sample(units, x_T, steps=2)), model.decode(model.sample(units, x_T, steps=2)))
    panels = again.interchange(units[:1], units[1:], model.noise(seed=0), steps=2, progress=False)
    assert panels.shape == (1, 1 + 3, 3, 16, 16)
    from ldm_dis.viz.interchange_grid import save_interchange_grid  # the README's three lines, end to end

    assert save_interchange_grid(tmp_path / "grid.png", probe, probe, panels).stat().st_size > 0
    with pytest.raises(Exception, match="holds the ema U-Net only"):
        LatentDiffusion.from_pretrained(saved, ema=False)
    assert isinstance(load_pretrained(run, device="cpu"), LatentDiffusion)


def test_the_readme_python_snippet_runs_on_a_trained_run(moved_run, tmp_path, monkeypatch):
    """The README's "From Python" block, executed as written, with runs/quickstart a (moved) trained run."""
    import re
    from pathlib import Path

    from ldm_dis.runs import load_run_config
    from ldm_dis.sampling.components import dataset_images, run_dataset

    run, _ = moved_run
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"## From Python\n.*?```python\n(.*?)```", readme, re.S).group(1)
    assert 'load_pretrained("runs/quickstart")' in block and "save_interchange_grid(" in block
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "quickstart").symlink_to(run, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    images, _ = dataset_images(run_dataset(load_run_config(run)), 6, seed=0)
    namespace = {"images": images}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["panels"].shape == (3, 1 + 3, 3, 16, 16)  # 3 pairs, the source panel and one per unit
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_the_pull_benchmark_measures_a_trained_dyga_run(moved_run, tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import dyga_pull

    run, _ = moved_run
    assert dyga_pull.main([str(run), "--images", "24", "--out", str(tmp_path / "pull.json")]) == 0
    (row,) = json.loads((tmp_path / "pull.json").read_text())
    lam = load_config(run / "config.yaml").model.bottleneck.dyga.lam
    assert row["lambda"] == lam and row["step"] > 0
    assert 0 < row["delta p10"] <= row["delta median"] <= row["delta p90"] <= float(np.float32(lam))  # at most lambda (float32)
    assert row["delta / lambda median"] == pytest.approx(row["delta median"] / lam)
    assert 0 < row["move median"] <= row["move p90"]
