"""Only finite weights are called good: checked before a checkpoint is written, named, or resumed from."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from ldm_dis.commands.train import main
from ldm_dis.training.checkpoint import CheckpointError, last_good_checkpoint, list_checkpoints
from ldm_dis.training.pipeline import run_training

from tiny_training_task import TINY_OVERRIDES


def args(tmp_path, run, *extra):
    (tmp_path / "tiny.yaml").write_text("model:\n  kind: tiny\n")
    return ["--config", str(tmp_path / "tiny.yaml"), *TINY_OVERRIDES, f"run.dir={tmp_path / run}", *extra]


def poison(checkpoint, key="net.decoder.weight"):
    """Replace one tensor of a checkpoint's weights by NaNs (a valid file, as an older run may have left)."""
    file = checkpoint / "model.safetensors"
    tensors = {k: v.clone() for k, v in load_file(str(file)).items()}
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, str(file))


def test_non_finite_weights_write_no_checkpoint_and_exit_non_zero(tiny, tmp_path, capsys, monkeypatch):
    _, data = tiny
    # the command line refuses train.lr=inf when the config loads; a config built in code reaches the trainer
    from ldm_dis.config.loading import load_config
    from ldm_dis.training.trainer import TrainingDiverged

    cfg = load_config(None, [*TINY_OVERRIDES, f"run.dir={tmp_path / 'inf'}", "train.max_steps=1"])
    cfg.train.lr = float("inf")
    with pytest.raises(TrainingDiverged, match=r"step 1: \d+ of \d+ tensors .* NaN or infinite \(net\..*no checkpoint is written"):
        run_training(cfg, dataset=data)  # the loss of step 1 is finite: only the weights tell
    assert list_checkpoints(tmp_path / "inf") == []

    # through the command: weights made NaN by a step whose loss is finite end the run with exit 3
    import tiny_training_task

    step = tiny_training_task.TinyTask.training_step

    def poisoning_step(self, images, factors, i, acc):
        out = step(self, images, factors, i, acc)
        if i == 2:
            with torch.no_grad():
                acc.unwrap_model(self.net).decoder.weight.fill_(float("nan"))
        return out

    monkeypatch.setattr(tiny_training_task.TinyTask, "training_step", poisoning_step)
    code = main(args(tmp_path, "nan", "train.ckpt_every=3"))
    err = capsys.readouterr().err
    assert code == 3, err
    assert "step 3:" in err and "net.decoder.weight" in err and "no checkpoint is written" in err
    assert list_checkpoints(tmp_path / "nan") == []


def test_the_last_good_checkpoint_named_on_divergence_is_finite(tiny, tmp_path, capsys):
    make, data = tiny
    run = run_training(make("train.max_steps=4"), dataset=data).run_dir
    poison(run / "checkpoints" / "step_0000004")
    assert last_good_checkpoint(run).name == "step_0000002"
    code = main(args(tmp_path, "run", "train.max_steps=6", "--resume"))
    err = capsys.readouterr().err
    assert code == 2 and "step_0000004: 1 weight tensors are NaN" in err and "Last good checkpoint: " in err
    assert err.rstrip().endswith("to resume from it)") and str(run / "checkpoints" / "step_0000002") in err

    # a run that diverges names the newest finite checkpoint, not merely the newest
    from ldm_dis.training.pipeline import build_trainer
    from ldm_dis.training.trainer import TrainingDiverged

    trainer = build_trainer(make("train.max_steps=6"), data, None)
    trainer.task.nan_at_step = 2
    trainer.resume(run / "checkpoints" / "step_0000002")
    with pytest.raises(TrainingDiverged, match="step 3: loss term 'rec' is nan") as info:
        trainer.fit()
    assert str(info.value).endswith(f"Last good checkpoint: {run / 'checkpoints' / 'step_0000002'}")


def test_a_healthy_run_is_unaffected_and_its_checkpoints_are_good(tiny):
    make, data = tiny
    trainer = run_training(make(), dataset=data)
    assert [s for s, _ in list_checkpoints(trainer.run_dir)] == [6, 8]
    assert last_good_checkpoint(trainer.run_dir).name == "step_0000008"
    poison(trainer.run_dir / "checkpoints" / "step_0000008", "center.value")  # a buffer counts as much as a weight
    assert last_good_checkpoint(trainer.run_dir).name == "step_0000006"
    with pytest.raises(CheckpointError, match="center.value"):
        trainer.resume()
