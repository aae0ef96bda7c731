"""The training loop in one process: records, checkpoints, resume, NaN stop, epoch hooks, export."""


import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ldm_dis.config.loading import load_config
from ldm_dis.errors import UserInputError
from ldm_dis.training.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint
from ldm_dis.training.pipeline import run_training
from ldm_dis.training.run_log import read_log


def weights(run_dir):
    return load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))


def test_run_folder_holds_config_log_samples_and_newest_checkpoints(tiny):
    make, data = tiny
    cfg = make()
    trainer = run_training(cfg, dataset=data)
    run = trainer.run_dir
    assert (run / "config.yaml").read_text().count("kind: tiny") == 1
    log = read_log(run)
    steps = [r["step"] for r in log if "rec" in r]
    assert steps == [2, 4, 6, 8]
    assert all(r["images_per_s"] > 0 and "lr/net" in r for r in log if "rec" in r)
    # 12 images / batch 4 = 3 steps per epoch: hooks after steps 3 and 6, with their numbers logged
    assert trainer.task.epochs_seen == [0, 1]
    assert [r["epoch_end"] for r in log if "center_norm" in r] == [0, 1]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000004.png", "step_0000008.png"]
    assert [s for s, _ in list_checkpoints(run)] == [6, 8]  # keep_last=2
    state = load_checkpoint(run)
    assert state["step"] == 8 and state["epoch"] == 2 and len(state["rng"]) == 1
    assert set(state["modules"]) == {"net", "ema", "critic", "center"}
    assert state["modules"]["center"]["value"].abs().sum() > 0  # epoch-end state is checkpointed
    assert state["optimizers"]["critic"]["state"][0]["momentum_buffer"].shape == (1, 3)
    assert state["schedulers"]["net"]["last_epoch"] == 8


def test_resume_continues_exactly_and_refuses_to_overwrite(tiny):
    make, data = tiny
    run_training(make(run="straight"), dataset=data)
    run_training(make("train.max_steps=5", run="resumed"), dataset=data)  # stops mid-epoch, after a step with no checkpoint
    with pytest.raises(CheckpointError, match="--resume"):
        run_training(make(run="resumed"), dataset=data)
    trainer = run_training(make(run="resumed"), dataset=data, resume=True)
    a, b = weights(trainer.run_dir.parent / "straight"), weights(trainer.run_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the log has each step once, as if never interrupted
    assert [r["step"] for r in read_log(trainer.run_dir) if "rec" in r] == [2, 4, 5, 6, 8]


def test_nan_loss_stops_naming_step_and_term_and_keeps_last_checkpoint(tiny, monkeypatch, capsys, tmp_path):
    from ldm_dis.commands.train import main

    make, data = tiny
    good = run_training(make("train.max_steps=4", run="good"), dataset=data)
    monkeypatch.setenv("TINY_NAN_AT_STEP", "5")
    (tmp_path / "tiny.yaml").write_text("model:\n  kind: tiny\n")
    from tiny_training_task import TINY_OVERRIDES

    code = main(["--config", str(tmp_path / "tiny.yaml"), *TINY_OVERRIDES, f"run.dir={tmp_path / 'bad'}"])
    err = capsys.readouterr().err
    assert code == 3
    assert "step 6: loss term 'rec' is nan" in err and "step_0000004" in err
    assert [s for s, _ in list_checkpoints(tmp_path / "bad")] == [2, 4]
    a, b = weights(good.run_dir), weights(tmp_path / "bad")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mismatched_checkpoint_is_an_error_naming_the_module(tiny):
    make, data = tiny
    run_training(make("train.max_steps=2"), dataset=data)
    from ldm_dis.training.pipeline import build_trainer

    cfg = make("train.max_steps=4")
    trainer = build_trainer(cfg, data, None)
    trainer.task.center.register_buffer("extra", torch.zeros(1))
    with pytest.raises(CheckpointError, match=r"module 'center'(.|\n)*missing keys \['extra'\]"):
        trainer.resume()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        build_trainer(make(run="empty"), data, None).resume()


def test_exported_codes_follow_dataset_order_and_match_the_representation_fn(tiny, tmp_path):
    from ldm_dis.training.export import export_representation, load_representation

    make, data = tiny
    trainer = run_training(make(), dataset=data, export_codes=str(tmp_path / "codes.npz"))
    saved = np.load(tmp_path / "codes.npz")
    assert saved["codes"].shape == (12, 3) and saved["codes"].dtype == np.float32
    np.testing.assert_array_equal(saved["factors"], np.stack(np.unravel_index(np.arange(12), (4, 3)), 1))
    assert list(saved["factor_names"]) == ["x", "shade"]
    # the batch size of the export in training: GEMM kernels are chosen by shape, so another batch size may
    # round the last bit of float32 otherwise (the representation_fn check below allows for that)
    again = export_representation(trainer.run_dir / "checkpoints" / "step_0000008", dataset=data,
                                  batch_size=trainer.cfg.train.batch_size)
    assert again == trainer.run_dir / "codes.npz"
    np.testing.assert_array_equal(np.load(again)["codes"], saved["codes"])
    _, representation_fn = load_representation(trainer.run_dir, dataset=data)
    images = np.stack([data[i][0].numpy() for i in range(12)])
    np.testing.assert_allclose(representation_fn(images), saved["codes"], rtol=1e-6, atol=1e-6)


def test_export_of_a_random_subset_keeps_each_rows_factors(tiny, tmp_path, capsys):
    from ldm_dis.training.export import export_representation

    make, data = tiny
    trainer = run_training(make(), dataset=data, export_codes=str(tmp_path / "all.npz"))
    full = np.load(tmp_path / "all.npz")
    part = np.load(export_representation(trainer.run_dir, tmp_path / "part.npz", batch_size=4, dataset=data,
                                         num=5, seed=1))
    index = np.ravel_multi_index(tuple(part["factors"].T), (4, 3))
    assert len(index) == 5 and len(np.unique(index)) == 5 and np.all(np.diff(index) > 0)  # distinct, in order
    np.testing.assert_allclose(part["codes"], full["codes"][index], rtol=1e-6, atol=1e-6)
    again = np.load(export_representation(trainer.run_dir, tmp_path / "again.npz", dataset=data, num=5, seed=1))
    np.testing.assert_array_equal(again["factors"], part["factors"])  # seeded
    assert "export: 100%" in capsys.readouterr().err  # the progress bar, with its rate
    from ldm_dis.cli import main  # evaluate scores a partial export by sampling among its rows

    assert main(["evaluate", "--codes", str(tmp_path / "part.npz"), "--metrics", "mig", "--jobs", "1",
                 "--set", "mig.num_train=40", "--out", str(tmp_path / "eval")]) == 0
    with pytest.raises(UserInputError, match="--num 0"):
        export_representation(trainer.run_dir, tmp_path / "none.npz", dataset=data, num=0)


@pytest.mark.parametrize("num_processes", [1, 2, 3])
def test_export_batches_split_across_processes_come_back_in_order(num_processes):
    from ldm_dis.training.export import _Batches

    positions = np.array([3, 5, 8, 9, 11, 20, 21, 30])
    shares = [_Batches(None, positions, 3, r, num_processes) for r in range(num_processes)]  # 3, 3, 2 rows
    assert len(shares[0]) == 3 and [shares[0].size(k) for k in range(3)] == [3, 3, 2]
    gathered = [np.concatenate([b.rows(k) for b in shares]) for k in range(3)]  # what accelerator.gather returns
    assert all(len(b.rows(k)) == len(shares[0].rows(k)) for b in shares for k in range(3))  # equal shares
    kept = np.concatenate([g[:shares[0].size(k)] for k, g in enumerate(gathered)])  # as encode_dataset trims
    np.testing.assert_array_equal(kept, positions)


def test_export_command_names_the_run_and_keeps_an_existing_file(tiny, monkeypatch, capsys):
    import ldm_dis.data
    from ldm_dis.cli import main

    make, data = tiny
    trainer = run_training(make(), dataset=data)
    monkeypatch.setattr(ldm_dis.data, "build_dataset", lambda cfg: data)
    assert main(["export", str(trainer.run_dir), "--num", "6"]) == 0
    assert np.load(trainer.run_dir / "codes.npz")["codes"].shape == (6, 3)
    assert main(["export", str(trainer.run_dir)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(trainer.run_dir), "--overwrite"]) == 0
    assert np.load(trainer.run_dir / "codes.npz")["codes"].shape == (12, 3)


def test_resume_without_config_uses_the_runs_own_config(tiny):
    from ldm_dis.commands.train import main

    make, data = tiny
    first = run_training(make("train.lr=0.02"), dataset=data)
    assert main(["--resume", f"run.dir={first.run_dir}", "train.max_steps=10"]) == 0
    state = load_checkpoint(first.run_dir)
    assert state["step"] == 10
    saved = load_config(first.run_dir / "config.yaml")  # rewritten with the override, the rest kept
    assert (saved.train.max_steps, saved.train.lr, saved.model.kind) == (10, 0.02, "tiny")
    assert main(["train.max_steps=10"]) == 2  # no config, no --resume: a clear error


class _Clock:
    """time.perf_counter for the budget alone: every reading is 10 s after the previous one."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 10.0
        return self.now


def test_time_budget_stops_at_a_checkpoint_and_the_log_records_it(tiny, monkeypatch):
    from ldm_dis.errors import UserInputError
    from ldm_dis.training import budget
    from ldm_dis.training.pipeline import training_finished
    from ldm_dis.training.run_log import training_summary

    make, data = tiny
    monkeypatch.setattr(budget, "time", _Clock())
    cfg = make("train.max_minutes=0.5", "train.ckpt_every=100")  # 30 s: spent at the third step's check
    run_training(cfg, dataset=data)
    assert [s for s, _ in list_checkpoints(cfg.run.dir)] == [3]  # not a checkpoint step: saved because it stopped
    summary = training_summary(cfg.run.dir)
    assert (summary["end"], summary["steps"], summary["steps_run"], summary["images_seen"]) == ("max_minutes", 3, 3, 12)
    assert summary["images_per_s"] > 0 and summary["peak_gpu_memory_bytes"] is None  # CPU
    assert training_finished(cfg.run.dir, cfg.train)  # a budgeted run is trained once
    assert not training_finished(cfg.run.dir, make().train)  # without the budget it is resumed to max_steps
    full = make(run="full")
    run_training(full, dataset=data)
    assert training_summary(full.run.dir)["end"] == "max_steps" and training_finished(full.run.dir, full.train)
    with pytest.raises(UserInputError, match="`train.max_minutes`=0.0: must be greater than 0"):  # when the config loads
        make("train.max_minutes=0", run="zero")
