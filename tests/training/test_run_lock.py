"""One writer per run folder, with real processes: a second process on a busy run.dir is refused at once
(naming the folder and the holder's PID); runs sharing a first-stage cache entry take turns."""

import subprocess
import sys

import pytest

from test_processes import LAUNCH, env_for, tiny_args

from ldm_dis.training.checkpoint import list_checkpoints
from ldm_dis.training.run_lock import RunFolderBusy, hold_run_folder
from ldm_dis.training.run_log import read_log

PYTHON = [sys.executable, LAUNCH]


def start_hanging(tmp_path, run, *extra, step=3):
    """A training process that stops in step ``step`` until the test creates the release file."""
    release = tmp_path / f"release-{run}"
    proc = subprocess.Popen(PYTHON + tiny_args(tmp_path, run, *extra),
                            env=env_for(tmp_path, TINY_HANG_AT_STEP=str(step), TINY_RELEASE_FILE=str(release)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "HANGING" in line:
            return proc, release
    proc.wait(timeout=30)
    raise AssertionError(f"the first process ended (exit {proc.returncode}) before step {step}")


def finish(proc, release) -> str:
    release.touch()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    return out


def test_a_second_process_on_a_busy_run_folder_is_refused_at_once(tmp_path):
    holder, release = start_hanging(tmp_path, "shared")
    try:
        run_dir = tmp_path / "shared"
        log_before = (run_dir / "log.jsonl").read_text()
        for extra in ((), ("--resume",)):  # a fresh run and a resume alike
            # refused at once: queued behind the holder (which waits for us), it would time out
            second = subprocess.run(PYTHON + tiny_args(tmp_path, "shared", *extra), env=env_for(tmp_path),
                                    capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
            assert str(run_dir) in second.stderr and f"pid {holder.pid}" in second.stderr, second.stderr
            assert "WEIGHTS" not in second.stdout  # it trained nothing
        assert (run_dir / "log.jsonl").read_text() == log_before
        assert [s for s, _ in list_checkpoints(run_dir)] == [2]
    finally:
        out = finish(holder, release)
    assert "WEIGHTS rank=0 step=8" in out
    assert [r["step"] for r in read_log(run_dir) if "rec" in r] == [2, 4, 6, 8]  # one writer, each step once


def test_runs_sharing_a_first_stage_take_turns_and_the_second_reuses_it(tmp_path):
    ldm = ["model.kind=ldm", "model.first_stage.max_steps=4", "model.first_stage.batch_size=4",
           "model.first_stage.ckpt_every=2", "model.first_stage.log_every=2", "train.max_steps=2"]
    first, release = start_hanging(tmp_path, "a", *ldm)  # hangs inside the first stage
    try:
        second = subprocess.Popen(PYTHON + tiny_args(tmp_path, "b", *ldm), env=env_for(tmp_path),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in second.stdout:
            seen.append(line)
            if "waiting for" in line:
                break
        assert f"pid {first.pid}" in seen[-1] and ".first_stage" in seen[-1], "".join(seen)[-3000:]
    finally:
        finish(first, release)
    rest, _ = second.communicate(timeout=120)
    out = "".join(seen) + rest
    assert second.returncode == 0, out[-3000:]
    assert "first stage: reusing" in out and "first stage: training" not in out
    (cache,) = (tmp_path / ".first_stage").iterdir()
    assert [r["step"] for r in read_log(cache) if "rec" in r] == [2, 4]  # trained once


def test_the_lock_is_released_after_the_block_and_refuses_inside_it(tmp_path):
    with hold_run_folder(tmp_path / "run"):
        assert "pid" in (tmp_path / "run" / ".lock").read_text()
        child = subprocess.run([sys.executable, "-c", (
            "import sys; from ldm_dis.training.run_lock import hold_run_folder\n"
            "try:\n    hold_run_folder(sys.argv[1]).__enter__()\nexcept Exception as e:\n    print(type(e).__name__, e)")
            , str(tmp_path / "run")], capture_output=True, text=True, timeout=60)
        assert child.stdout.startswith("RunFolderBusy"), child.stdout + child.stderr
    with hold_run_folder(tmp_path / "run"):  # free again
        pass
    assert issubclass(RunFolderBusy, Exception)
    with pytest.raises(RunFolderBusy):
        with hold_run_folder(tmp_path / "other"):
            with hold_run_folder(tmp_path / "other"):  # a second open file description is a second writer
                pass
