"""Damaged checkpoints are found when listed, skipped with a reason, and never end in a raw traceback."""

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from ldm_dis.cli import main as cli
from ldm_dis.commands.train import main as train
from ldm_dis.models.weights import read_tensors
from ldm_dis.training.checkpoint import (
    CheckpointError, checkpoint_path, checkpoint_problem, find_checkpoints, list_checkpoints, load_checkpoint,
    remove_leftovers, resolve_checkpoint, save_checkpoint,
)
from ldm_dis.training.pipeline import run_training
from ldm_dis.training.run_log import read_log

from test_pipeline import LDM


def truncate(file, keep=-100):
    data = file.read_bytes()
    file.write_bytes(data[:keep])


def small_checkpoint(tmp_path, step=1):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 3)).sum().backward()
    opt.step()
    return save_checkpoint(checkpoint_path(tmp_path, step), {"modules": {"net": net.state_dict()},
                                                             "optimizers": {"adam": opt.state_dict()}, "step": step})


@pytest.mark.parametrize("damage, reason", [
    (lambda f: truncate(f / "model.safetensors"), "model.safetensors is truncated"),
    (lambda f: truncate(f / "model.safetensors", 4), "model.safetensors is truncated"),
    (lambda f: (f / "model.safetensors").write_bytes(b"\x10" + b"\0" * 7 + b"not json" * 2), "model.safetensors has no valid safetensors header"),
    (lambda f: truncate(f / "training_state.safetensors"), "training_state.safetensors is truncated"),
    (lambda f: (f / "training_state.safetensors").unlink(), "training_state.safetensors is missing"),
    (lambda f: (f / "state.json").write_text('{"modules": '), "state.json is unreadable"),
    (lambda f: (f / "state.json").write_text(json.dumps({"modules": {"x": {"__tensor__": "x.w"}}})), "state.json refers to 1 tensors"),
])
def test_each_kind_of_damage_is_named(tmp_path, damage, reason):
    folder = small_checkpoint(tmp_path)
    assert checkpoint_problem(folder) is None
    damage(folder)
    assert reason in checkpoint_problem(folder)
    assert list_checkpoints(tmp_path) == [] and find_checkpoints(tmp_path)[1][0][1] == folder
    with pytest.raises(CheckpointError, match=re.escape("is damaged: " + reason)):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="holds no intact checkpoint"):
        resolve_checkpoint(tmp_path)


def test_a_truncated_weights_file_is_a_checkpoint_error_not_a_safetensor_error(tmp_path):
    folder = small_checkpoint(tmp_path)
    truncate(folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors is truncated"):
        read_tensors(folder / "model.safetensors")


def test_resume_skips_a_damaged_newest_checkpoint_and_says_why(tiny, capsys):
    make, data = tiny
    straight = run_training(make(run="straight"), dataset=data)
    first = run_training(make(), dataset=data)
    newest = first.run_dir / "checkpoints" / "step_0000008"
    truncate(newest / "model.safetensors")
    capsys.readouterr()
    assert train(["--resume", f"run.dir={first.run_dir}"]) == 0
    err = capsys.readouterr().err
    assert f"skipping damaged checkpoint {newest} (model.safetensors is truncated" in err and "using step_0000006" in err
    a = load_file(str(straight.run_dir / "checkpoints" / "step_0000008" / "model.safetensors"))
    b = load_file(str(newest / "model.safetensors"))  # step 8 trained again from step 6, to the same weights
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in read_log(first.run_dir) if "rec" in r] == [2, 4, 6, 8]


def test_a_fresh_run_never_overwrites_damaged_checkpoints(tiny):
    make, data = tiny
    first = run_training(make(), dataset=data)
    for _, folder in list_checkpoints(first.run_dir):
        truncate(folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        run_training(make(), dataset=data)
    with pytest.raises(CheckpointError, match="holds no intact checkpoint.*step_0000006.*step_0000008"):
        run_training(make(), dataset=data, resume=True)


def test_evaluate_picks_the_intact_checkpoint_or_names_the_damage(tiny, monkeypatch, capsys):
    import ldm_dis.data

    make, data = tiny
    run = run_training(make(), dataset=data).run_dir
    newest = run / "checkpoints" / "step_0000008"
    truncate(newest / "model.safetensors")
    monkeypatch.setattr(ldm_dis.data, "build_dataset", lambda cfg: data)
    capsys.readouterr()
    args = ["--metrics", "mig", "--jobs", "1", "--set", "mig.num_train=60", "--out", str(run / "eval")]
    assert cli(["evaluate", "--checkpoint", str(run), *args]) == 0
    assert f"skipping damaged checkpoint {newest}" in capsys.readouterr().err
    assert cli(["evaluate", "--checkpoint", str(newest), *args]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {newest} is damaged: model.safetensors is truncated" in err and "Traceback" not in err


def test_a_truncated_cached_first_stage_is_trained_again(tiny, capsys):
    make, data = tiny
    first = run_training(make(*LDM, run="a"), dataset=data)
    cache = first.run_dir.parent / "cache" / "first_stage"  # LDM_DIS_CACHE of the tiny fixture
    (entry,) = cache.iterdir()
    final = entry / "checkpoints" / "step_0000004" / "model.safetensors"
    weights = {k: v.clone() for k, v in load_file(str(final)).items()}  # not views of the file we damage
    truncate(final)
    capsys.readouterr()
    second = run_training(make(*LDM, run="b"), dataset=data)
    out = capsys.readouterr().out
    assert "first stage: removing damaged checkpoint" in out and "model.safetensors is truncated" in out
    assert second.task.first_stage_path == str(final.resolve())
    again = load_file(str(final))
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    # a run that names the damaged file itself is refused with the reason
    truncate(final)
    with pytest.raises(CheckpointError, match="model.safetensors is truncated"):
        run_training(make(*LDM, f"model.first_stage.checkpoint={final}", run="c"), dataset=data)


def test_leftovers_of_a_killed_save_are_cleared_at_start(tiny, capsys):
    make, data = tiny
    run = run_training(make("train.max_steps=4"), dataset=data).run_dir
    folder = run / "checkpoints"
    (folder / ".tmp-step_0000006-999999").mkdir()  # killed while writing step 6
    (folder / ".tmp-step_0000006-999999" / "model.safetensors").write_bytes(b"half")
    (folder / "step_0000004").rename(folder / ".old-step_0000004-999999")  # killed between the two renames
    assert [s for s, _ in list_checkpoints(run)] == [2]
    capsys.readouterr()
    run_training(make("train.max_steps=6"), dataset=data, resume=True)
    out = capsys.readouterr().out
    assert "restored step_0000004 from .old-step_0000004-999999" in out and "removed .tmp-step_0000006-999999" in out
    assert sorted(p.name for p in folder.iterdir()) == ["step_0000004", "step_0000006"]
    assert [r["step"] for r in read_log(run) if "rec" in r] == [2, 4, 6]  # resumed from the restored step 4
    assert remove_leftovers(run) == []
