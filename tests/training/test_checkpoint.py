"""Checkpoint files: round trip of nested optimizer state, atomic replacement, pruning, RNG streams."""

import json
import random

import numpy as np
import pytest
import torch

from ldm_dis.training.checkpoint import (
    CheckpointError, checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint,
    prune_checkpoints, resolve_checkpoint, save_checkpoint,
)
from ldm_dis.models.weights import read_tensors
from ldm_dis.training.rng import capture_rng, restore_rng


def adam_state():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), betas=(0.5, 0.9))
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return net, opt


def test_round_trip_keeps_tensors_int_keys_and_tuples(tmp_path):
    net, opt = adam_state()
    state = {"modules": {"net": net.state_dict()}, "optimizers": {"adam": opt.state_dict()}, "step": 3,
             "rng": [capture_rng()]}
    folder = save_checkpoint(checkpoint_path(tmp_path, 3), state, "a: 1\n")
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.yaml", "model.safetensors", "state.json", "training_state.safetensors"]
    loaded = load_checkpoint(tmp_path)
    assert loaded["step"] == 3
    assert torch.equal(loaded["modules"]["net"]["weight"], net.weight)
    saved = opt.state_dict()
    back = loaded["optimizers"]["adam"]
    assert back["param_groups"][0]["betas"] == (0.5, 0.9)
    assert set(back["state"]) == {0, 1}
    assert torch.equal(back["state"][0]["exp_avg"], saved["state"][0]["exp_avg"])
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    fresh.load_state_dict(back)  # what torch itself accepts
    assert torch.equal(read_tensors(folder / "model.safetensors")["net.bias"], net.bias)


def test_saving_again_replaces_atomically_and_pruning_keeps_the_newest(tmp_path):
    net, _ = adam_state()
    for step in (1, 2, 3):
        save_checkpoint(checkpoint_path(tmp_path, step), {"modules": {"net": net.state_dict()}, "step": step})
    with torch.no_grad():
        net.weight.zero_()
    save_checkpoint(checkpoint_path(tmp_path, 3), {"modules": {"net": net.state_dict()}, "step": 3})
    assert load_checkpoint(tmp_path)["modules"]["net"]["weight"].abs().sum() == 0
    # a folder left half-written by a crash is never taken for a checkpoint
    (tmp_path / "checkpoints" / ".tmp-step_0000009-1").mkdir()
    (tmp_path / "checkpoints" / "step_0000010").mkdir()  # no state.json: incomplete
    assert latest_checkpoint(tmp_path).name == "step_0000003"
    prune_checkpoints(tmp_path, 2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]
    assert json.loads((checkpoint_path(tmp_path, 3) / "state.json").read_text())["step"] == 3


def test_missing_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="neither a checkpoint folder"):
        resolve_checkpoint(tmp_path)


def test_rng_streams_continue_after_restore():
    state = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn(), random.gauss(0, 1))
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn(), random.gauss(0, 1)) == expected


def test_the_run_folder_of_a_checkpoint_is_computed_in_one_place(tmp_path):
    """run_dir_of (verified) and checkpoint_run_dir (layout only) give the run folder of a run folder, a
    checkpoint folder or a file in one; no other module works it out from the path."""
    from pathlib import Path

    import ldm_dis
    from ldm_dis.runs import checkpoint_run_dir, run_dir_of

    net, opt = adam_state()
    folder = save_checkpoint(checkpoint_path(tmp_path / "run", 2), {"modules": {"net": net.state_dict()}, "step": 2}, "a: 1\n")
    for given in (tmp_path / "run", folder, folder / "model.safetensors"):
        assert run_dir_of(given) == tmp_path / "run"
    assert checkpoint_run_dir(folder / "model.safetensors") == checkpoint_run_dir(folder) == tmp_path / "run"
    assert checkpoint_run_dir(tmp_path / "other") == tmp_path / "other"  # a folder outside the layout: itself
    package = Path(ldm_dis.__file__).parent
    others = [p for p in package.rglob("*.py") if p.name != "runs.py" and ".parent.parent" in p.read_text()]
    assert others == []
