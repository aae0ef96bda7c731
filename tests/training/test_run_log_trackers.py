"""Experiment trackers (Accelerate's ``log_with``) get the run's scalars and sample grids beside log.jsonl,
and the precision is accelerate's unless the config sets one."""

import subprocess
import sys

import numpy as np
import pytest
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.tracking import GeneralTracker

from ldm_dis.errors import UserInputError
from ldm_dis.training.pipeline import run_training
from ldm_dis.training.run_log import read_log, tracker_names


class RecordingTracker(GeneralTracker):
    """What a real tracker (TensorBoard, W&B) would receive, kept in lists."""

    name = "recording"
    requires_logging_directory = False

    def __init__(self):
        super().__init__()
        self.config, self.scalars, self.images, self.runs, self.finished = {}, [], [], 0, 0

    @property
    def tracker(self):
        return self

    def start(self):
        self.runs += 1

    def store_init_configuration(self, values):
        self.config = dict(values)

    def log(self, values, step=None, **kwargs):
        self.scalars.append((step, dict(values)))

    def log_images(self, values, step=None, **kwargs):
        for name, images in values.items():
            self.images.append((name, step, [np.asarray(i) for i in images]))

    def finish(self):
        self.finished += 1


def test_scalars_and_sample_grids_reach_the_trackers_and_the_jsonl(tiny):
    make, data = tiny
    tracker = RecordingTracker()
    accelerator = Accelerator(log_with=[tracker], dataloader_config=DataLoaderConfiguration(split_batches=True))
    trainer = run_training(make(), dataset=data, accelerator=accelerator)
    logged = [record["step"] for record in read_log(trainer.run_dir) if "rec" in record]
    assert [step for step, values in tracker.scalars if "rec" in values] == logged == [2, 4, 6, 8]
    assert all(isinstance(v, float) for _, values in tracker.scalars for v in values.values())
    assert tracker.config["train.lr"] == 0.01 and tracker.config["model.kind"] == "tiny"
    assert [(name, step) for name, step, _ in tracker.images] == [("samples", 4), ("samples", 8)]
    picture = tracker.images[0][2][0]
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    assert tracker.runs == tracker.finished == 1  # ended, so a second trainer on this accelerator starts afresh


def test_named_trackers_must_exist_and_be_installed():
    assert tracker_names(None) is None and tracker_names("all") == ["all"]
    with pytest.raises(UserInputError, match="not a tracker"):
        tracker_names("tensorbored")
    from accelerate.tracking import get_available_trackers

    missing = next((n for n in ("tensorboard", "wandb", "mlflow") if n not in {str(t) for t in get_available_trackers()}),
                   None)
    if missing:
        with pytest.raises(UserInputError, match="not installed"):
            tracker_names(missing)


@pytest.mark.parametrize("configured, expected", [(None, "bf16"), ("no", "no")])
def test_mixed_precision_is_accelerates_unless_the_config_sets_it(configured, expected):
    """`accelerate launch --mixed_precision bf16` passes ACCELERATE_MIXED_PRECISION to the processes."""
    overrides = [] if configured is None else [f"train.mixed_precision={configured}"]
    code = ("from ldm_dis.config import load_config; from ldm_dis.training.trainer import make_accelerator; "
            f"print(make_accelerator(load_config(None, {overrides!r})).mixed_precision)")
    env = {**__import__("os").environ, "ACCELERATE_MIXED_PRECISION": "bf16", "ACCELERATE_USE_CPU": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == expected


def test_an_ldm_run_sends_its_sample_and_interchange_grids_to_the_trackers(tmp_path):
    from pathlib import Path

    from PIL import Image

    from ldm_dis.config.loading import load_config

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pictures"))
    from test_figures import TINY_RUN  # the tiny LDM of the picture tests

    cfg = load_config(None, [*TINY_RUN, "train.sample_every=2", "train.num_sample_images=4",
                             "train.sample_interchange_pairs=2", "model.diffusion.sample_steps=2",
                             f"run.dir={tmp_path / 'run'}", f"run.first_stage_cache={tmp_path / 'fs'}"])
    tracker = RecordingTracker()
    accelerator = Accelerator(log_with=[tracker], dataloader_config=DataLoaderConfiguration(split_batches=True))
    trainer = run_training(cfg, accelerator=accelerator)
    # the LDM's last step (after the first stage's own sample grids): its samples, then its interchange grid
    assert [(name, step) for name, step, _ in tracker.images][-2:] == [("samples", 2), ("interchange", 2)]
    grid = Path(trainer.run_dir) / "samples" / "interchange_0000002.png"
    logged = tracker.images[-1][2][0]
    with Image.open(grid) as picture:
        assert logged.shape == np.asarray(picture.convert("RGB")).shape  # the PNG is what the trackers got
    # rows: source, target, source units, one per unit (3); columns: the 2 pairs
    assert logged.shape[0] > logged.shape[1]
