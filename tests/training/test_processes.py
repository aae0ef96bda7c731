"""Real processes: two CPU processes with DDP (gloo), and a run killed with SIGKILL then resumed."""

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from tiny_training_task import TINY_OVERRIDES, TinyDataset, register, weights_digest

from ldm_dis.config.loading import load_config
from ldm_dis.training.checkpoint import list_checkpoints, load_checkpoint
from ldm_dis.training.pipeline import run_training

LAUNCH = str(Path(__file__).with_name("launch_tiny.py"))
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))


def env_for(tmp_path, **extra):
    env = {**os.environ, "TINY_WATCH_DIR": str(tmp_path), "HF_HOME": str(tmp_path / "hf"),
           "TINY_THREADS": str(torch.get_num_threads()), "PYTHONUNBUFFERED": "1", **extra}
    env.pop("TINY_NAN_AT_STEP", None)
    return env


def tiny_args(tmp_path, run, *extra):
    config = tmp_path / "tiny.yaml"
    config.write_text("model:\n  kind: tiny\n")
    return ["--config", str(config), *TINY_OVERRIDES, f"run.dir={tmp_path / run}", *extra]


def digests(stdout):
    return re.findall(r"WEIGHTS rank=(\d) step=(\d+) sha=([0-9a-f]{64})", stdout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_agree_and_only_rank0_writes(tmp_path, monkeypatch):
    command = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_cpu_threads_per_process", "1",
               "--main_process_port", str(free_port()), LAUNCH,
               *tiny_args(tmp_path, "ddp", "--export-codes")]
    done = subprocess.run(command, env=env_for(tmp_path, ACCELERATE_USE_CPU="1", TINY_THREADS="1"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = digests(done.stdout)
    assert sorted(r for r, _, _ in ranks) == ["0", "1"]  # two processes really trained
    assert ranks[0][1] == ranks[1][1] == "8"
    assert ranks[0][2] == ranks[1][2]  # identical weights on both processes
    assert "WRITES rank=1 []" in done.stdout
    state = load_checkpoint(tmp_path / "ddp")
    assert state["num_processes"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # each process its own stream
    # codes gathered from both processes come back in dataset order
    from ldm_dis.training.export import load_representation

    register(monkeypatch)

    saved = np.load(tmp_path / "ddp" / "codes.npz")
    data = TinyDataset()
    _, representation_fn = load_representation(tmp_path / "ddp", dataset=data)
    images = np.stack([data[i][0].numpy() for i in range(len(data))])
    np.testing.assert_allclose(saved["codes"], representation_fn(images), rtol=1e-5, atol=1e-6)


def test_sigkilled_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    python = [sys.executable, LAUNCH]
    register(monkeypatch)
    straight = run_training(load_config(None, tiny_args(tmp_path, "straight")[2:]), dataset=TinyDataset())

    # step 5 is done and logged but not checkpointed when the process dies in step 6
    victim = subprocess.Popen(python + tiny_args(tmp_path, "killed"), env=env_for(tmp_path, TINY_HANG_AT_STEP="5"),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in victim.stdout:
            if "HANGING" in line:
                break
        os.kill(victim.pid, signal.SIGKILL)
    finally:
        victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert [s for s, _ in list_checkpoints(tmp_path / "killed")] == [2, 4]

    resumed = subprocess.run(python + tiny_args(tmp_path, "killed", "--resume"), env=env_for(tmp_path),
                             capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert digests(resumed.stdout) == [("0", "8", weights_digest(straight))]
