"""A full disk while saving: a clear message, a non-zero exit, the previous checkpoint intact, nothing
half-written left; and a run restarted after dying before its first checkpoint logs each step once."""

import errno
import os

import pytest
import torch

import ldm_dis.training.checkpoint as checkpoint
from ldm_dis.commands.train import main
from ldm_dis.training.checkpoint import checkpoint_problem, list_checkpoints, load_checkpoint
from ldm_dis.training.pipeline import run_training
from ldm_dis.training.run_log import read_log

from test_finite_weights import args


def test_disk_full_while_saving(tiny, tmp_path, monkeypatch, capsys):
    _, data = tiny
    write = checkpoint._write_tensors
    calls = []

    def full_disk(path, tensors):
        calls.append(path)
        if len(calls) > 2:  # the first checkpoint (two files) fits, the second does not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        write(path, tensors)

    monkeypatch.setattr(checkpoint, "_write_tensors", full_disk)
    code = main(args(tmp_path, "run"))
    err = capsys.readouterr().err
    run = tmp_path / "run"
    assert code == 2, err
    assert "cannot write checkpoint" in err and "step_0000004" in err and "No space left on device" in err
    assert f"the newest checkpoint {run / 'checkpoints' / 'step_0000002'} is intact" in err and "Traceback" not in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000002"]  # no .tmp-* folder
    assert checkpoint_problem(run / "checkpoints" / "step_0000002") is None
    assert load_checkpoint(run)["step"] == 2

    # space again: the run resumes from that checkpoint
    monkeypatch.setattr(checkpoint, "_write_tensors", write)
    assert main(args(tmp_path, "run", "--resume")) == 0
    assert [s for s, _ in list_checkpoints(run)] == [6, 8]


def test_disk_full_elsewhere_in_the_run_is_a_clear_message(tiny, tmp_path, monkeypatch, capsys):
    from ldm_dis.training import run_log

    _, data = tiny
    real_open = open

    def full(path, mode="r", *a, **k):
        if str(path).endswith("log.jsonl") and "a" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(run_log, "open", full, raising=False)
    code = main(args(tmp_path, "run"))
    err = capsys.readouterr().err
    assert code == 2 and "cannot write" in err and "log.jsonl" in err and "No space left on device" in err


def test_a_restart_after_dying_before_the_first_checkpoint_logs_each_step_once(tiny):
    make, data = tiny
    cfg = make("train.log_every=1", "train.ckpt_every=5", "train.max_steps=6")
    from ldm_dis.training.pipeline import build_trainer

    trainer = build_trainer(cfg, data, None)
    step = trainer.task.training_step

    def dies_at_step_3(images, factors, i, acc):
        if i == 3:
            raise KeyboardInterrupt  # the process is gone before step 5's first checkpoint
        return step(images, factors, i, acc)

    trainer.task.training_step = dies_at_step_3
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert [r["step"] for r in read_log(cfg.run.dir) if "rec" in r] == [1, 2, 3]
    assert list_checkpoints(cfg.run.dir) == []
    run_training(make("train.log_every=1", "train.ckpt_every=5", "train.max_steps=6"), dataset=data)
    assert [r["step"] for r in read_log(cfg.run.dir) if "rec" in r] == [1, 2, 3, 4, 5, 6]
    assert torch.is_tensor(load_checkpoint(cfg.run.dir)["modules"]["net"]["decoder.weight"])
