"""The real tasks through the whole command on synth-shapes3d at 32x32 (slow: minutes on a CPU)."""

import numpy as np
import pytest

from ldm_dis.commands.train import main
from ldm_dis.training.checkpoint import list_checkpoints, load_checkpoint

SMALL = ["data.subset=64", "data.num_workers=0", "train.batch_size=8", "train.log_every=1", "train.ckpt_every=2",
         "train.sample_every=2", "train.num_sample_images=4", "train.epoch_steps=2"]


@pytest.mark.slow
def test_ldm_pipeline_trains_first_stage_then_ldm_then_exports(tmp_path):
    args = ["--config", "quickstart.yaml", *SMALL, f"run.dir={tmp_path / 'ldm'}",
            f"run.first_stage_cache={tmp_path / '.first_stage'}", "model.first_stage.max_steps=2",
            "model.first_stage.batch_size=8", "model.first_stage.ckpt_every=2", "model.diffusion.sample_steps=2"]
    assert main([*args, "train.max_steps=2"]) == 0
    assert main([*args, "train.max_steps=3", "--resume", "--export-codes"]) == 0
    assert [s for s, _ in list_checkpoints(tmp_path / "ldm")] == [2, 3]
    assert list_checkpoints(next((tmp_path / ".first_stage").iterdir()))[-1][0] == 2
    state = load_checkpoint(tmp_path / "ldm")
    assert "bottleneck" in state["modules"]
    codes = np.load(tmp_path / "ldm" / "codes.npz")
    assert codes["codes"].shape[0] == codes["factors"].shape[0] == 64


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["betavae", "factorqvae"])
def test_baseline_trains_resumes_and_exports(tmp_path, kind):
    args = ["--config", f"baselines/cpu_{kind}.yaml", *SMALL, f"run.dir={tmp_path / kind}"]
    assert main([*args, "train.max_steps=2"]) == 0
    assert main([*args, "train.max_steps=4", "--resume", "--export-codes"]) == 0
    assert np.load(tmp_path / kind / "codes.npz")["codes"].shape[0] == 64
