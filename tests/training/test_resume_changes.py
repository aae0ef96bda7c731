"""--resume never ignores a changed setting: what may change is applied (a new learning rate reaches the
restored optimizers), anything else is refused, listing the keys, before anything is trained."""

import math

import pytest
import torch

from ldm_dis.commands.train import main
from ldm_dis.config.loading import ConfigError, load_config
from ldm_dis.training.checkpoint import list_checkpoints
from ldm_dis.training.pipeline import run_training
from ldm_dis.training.resume_changes import apply_learning_rates, capture_learning_rates
from ldm_dis.training.run_log import read_log

from test_pipeline import LDM


def lr_at(run_dir, step):
    return next(r["lr/net"] for r in read_log(run_dir) if r["step"] == step and "lr/net" in r)


def test_a_new_learning_rate_reaches_the_restored_optimizer(tiny, capsys):
    make, data = tiny
    first = run_training(make("train.max_steps=4"), dataset=data)
    assert math.isclose(lr_at(first.run_dir, 4), 0.01 * 0.9**2)  # StepLR: x0.9 every 2 steps
    capsys.readouterr()
    assert main(["--resume", f"run.dir={first.run_dir}", "train.lr=0.02", "train.max_steps=8"]) == 0
    out = capsys.readouterr().out
    assert "resume: train.lr 0.01 -> 0.02" in out and "resume: learning rates now" in out
    assert math.isclose(lr_at(first.run_dir, 6), 0.02 * 0.9**3)  # the schedule goes on from its step, at the new base
    assert math.isclose(lr_at(first.run_dir, 8), 0.02 * 0.9**4)
    assert load_config(first.run_dir / "config.yaml").train.lr == 0.02


def test_other_changes_are_refused_listing_every_key_and_nothing_runs(tiny, capsys):
    make, data = tiny
    first = run_training(make("train.max_steps=4"), dataset=data)
    log_before = (first.run_dir / "log.jsonl").read_text()
    capsys.readouterr()
    code = main(["--resume", f"run.dir={first.run_dir}", "train.batch_size=6", "train.seed=3", "train.max_steps=6"])
    err = capsys.readouterr().err
    assert code == 2
    assert "2 setting(s) differ" in err and "train.batch_size: 4 -> 6" in err and "train.seed: 0 -> 3" in err
    assert "train.max_steps" not in err.split("What may change")[0]  # a resumable change is not listed as refused
    assert (first.run_dir / "log.jsonl").read_text() == log_before
    assert [s for s, _ in list_checkpoints(first.run_dir)] == [2, 4]


def test_a_changed_first_stage_is_refused_before_the_first_stage_trains(tiny):
    make, data = tiny
    first = run_training(make(*LDM), dataset=data)
    cache = first.run_dir.parent / "cache" / "first_stage"  # LDM_DIS_CACHE of the tiny fixture
    entries = sorted(cache.iterdir())
    with pytest.raises(ConfigError, match=r"model\.first_stage\.n_embed: 2048 -> 16"):
        run_training(make(*LDM, "model.first_stage.n_embed=16", "train.max_steps=4"), dataset=data, resume=True)
    assert sorted(cache.iterdir()) == entries  # no new first stage was trained
    # the same config from its file (first_stage.checkpoint unset there) resumes: the cache is found again
    run_training(make(*LDM, "train.max_steps=4"), dataset=data, resume=True)


class Task:
    """An optimizer with a LambdaLR whose lambda holds a value derived from the lr (as the baselines' floor)."""

    def __init__(self, lr, floor=1e-4):
        from ldm_dis.baselines.task import CosineToMin

        self.opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, CosineToMin(10, floor / lr))

    def optimizers(self):
        return {"opt": self.opt}

    def schedulers(self):
        return {"sched": self.sched}


def test_learning_rates_follow_the_tasks_own_schedule_exactly():
    old = Task(1e-2)
    for _ in range(4):
        old.opt.step()
        old.sched.step()
    saved = (old.opt.state_dict(), old.sched.state_dict())
    resumed, straight = Task(3e-2), Task(3e-2)
    fresh = capture_learning_rates(resumed)
    resumed.opt.load_state_dict(saved[0])
    resumed.sched.load_state_dict(saved[1])
    apply_learning_rates(resumed, fresh)
    for _ in range(4):
        straight.opt.step()
        straight.sched.step()
    # as if the run had used the new lr from the start: same rate now and after the floor is reached
    assert resumed.opt.param_groups[0]["lr"] == pytest.approx(straight.opt.param_groups[0]["lr"], rel=1e-12)
    for _ in range(10):
        resumed.sched.step()
        straight.sched.step()
    assert resumed.opt.param_groups[0]["lr"] == pytest.approx(1e-4, rel=1e-9) == straight.opt.param_groups[0]["lr"]
