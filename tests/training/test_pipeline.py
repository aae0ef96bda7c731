"""model.kind=ldm: the first stage is trained once per config in a shared cache, then reused or resumed."""

import torch
from safetensors.torch import load_file

from ldm_dis.config.loading import load_config
from ldm_dis.training.checkpoint import list_checkpoints, load_task_from_checkpoint
from ldm_dis.training.pipeline import first_stage_hash, run_training, user_first_stage_cache
from ldm_dis.training.run_log import read_log

LDM = ["model.kind=ldm", "model.first_stage.max_steps=4", "model.first_stage.batch_size=4",
       "model.first_stage.ckpt_every=2", "model.first_stage.log_every=2", "train.max_steps=2"]


def test_the_first_stage_cache_is_a_user_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("LDM_DIS_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_first_stage_cache() == tmp_path / "home" / ".cache" / "ldm_dis" / "first_stage"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_first_stage_cache() == tmp_path / "xdg" / "ldm_dis" / "first_stage"
    monkeypatch.setenv("LDM_DIS_CACHE", str(tmp_path / "mine"))
    assert user_first_stage_cache() == tmp_path / "mine" / "first_stage"


def test_first_stage_is_trained_once_reused_and_resumed(tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("LDM_DIS_CACHE", str(tmp_path / "cache"))
    make, data = tiny
    first = run_training(make(*LDM, run="a"), dataset=data)
    cache = tmp_path / "cache" / "first_stage" / first_stage_hash(first.cfg)
    weights = cache / "checkpoints" / "step_0000004" / "model.safetensors"
    assert first.task.first_stage_path == str(weights.resolve())  # the LDM got the finished first stage
    assert load_config(first.run_dir / "config.yaml").model.first_stage.checkpoint == str(weights.resolve())
    assert load_config(cache / "config.yaml").model.kind == "vqgan"
    assert [r["step"] for r in read_log(cache) if "rec" in r] == [2, 4]
    final = load_file(str(weights))

    # same first-stage config, a run in another folder, other seed and LDM settings: reused, not retrained
    second = run_training(make(*LDM, "train.seed=3", "train.lr=0.5", run="elsewhere/b"), dataset=data)
    assert second.task.first_stage_path == first.task.first_stage_path
    assert [r["step"] for r in read_log(cache) if "rec" in r] == [2, 4]

    # an interrupted first stage is resumed (to the same weights), not restarted
    import shutil

    shutil.rmtree(weights.parent)
    third = run_training(make(*LDM, run="c"), dataset=data)
    assert [s for s, _ in list_checkpoints(cache)] == [2, 4]
    assert [r["step"] for r in read_log(cache) if "rec" in r] == [2, 4]
    again = load_file(third.task.first_stage_path)
    assert all(torch.equal(final[k], again[k]) for k in final)

    # a changed first stage gets its own folder
    other = run_training(make(*LDM, "model.first_stage.n_embed=16", run="d"), dataset=data)
    assert first_stage_hash(other.cfg) != first_stage_hash(first.cfg)
    assert other.task.first_stage_path != first.task.first_stage_path
    # run.first_stage_cache still chooses another place
    own = run_training(make(*LDM, f"run.first_stage_cache={tmp_path / 'own'}", run="e"), dataset=data)
    assert own.task.first_stage_path.startswith(str((tmp_path / "own").resolve()))

    # the run folder alone rebuilds the task, first stage included: from its own checkpoint, not the cache
    cfg, task = load_task_from_checkpoint(first.run_dir, dataset=data)
    assert task.first_stage_path == str(list_checkpoints(first.run_dir)[-1][1] / "model.safetensors")
    assert torch.equal(task.net.decoder.weight, first.task.net.module.decoder.weight
                       if hasattr(first.task.net, "module") else first.task.net.decoder.weight)
