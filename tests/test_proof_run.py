"""The GPU proof run (configs/proof_gpu.yaml through `ldm-dis quickstart`), shrunk to seconds on a CPU:
every stage runs, the time budget stops the LDM at a checkpoint, and summary.json holds what a GPU run
is read for (images/s and steps of both trainings, peak GPU memory, the metrics)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from ldm_dis.config import load_config

ROOT = Path(__file__).resolve().parents[1]

# the proof's command with small networks, few steps and small metric samples; the keys are the proof's
TINY = [
    "data.resolution=32", "data.subset=96", "data.num_workers=0",
    "model.first_stage.n_embed=16", "model.first_stage.channel_mult=[1,1,1]", "model.first_stage.num_res_blocks=1",
    "model.first_stage.disc_channels=8", "model.first_stage.disc_layers=1", "model.first_stage.batch_size=8",
    "model.first_stage.max_steps=2", "model.first_stage.max_minutes=null", "model.first_stage.log_every=1",
    "model.encoder.num_units=3", "model.encoder.unit_dim=8", "model.encoder.stem_channels=8",
    "model.encoder.channels=[8,8,8,8]", "model.encoder.hidden=16", "model.encoder.unit_mlp=[8,8]",
    "model.unet.base_channels=32", "model.unet.channel_mult=[1,1]", "model.unet.num_res_blocks=1",
    "model.unet.attention_downsample=[1]", "model.unet.num_heads=2", "model.diffusion.sample_steps=2",
    "model.bottleneck.dyga.max_samples=96", "model.bottleneck.dyga.k_init=2", "model.bottleneck.dyga.k_max=4",
    "train.batch_size=8", "train.max_steps=50", "train.max_minutes=0.0001", "train.epoch_steps=1",
    "train.log_every=1", "train.num_sample_images=2",
    "eval.metric_protocol.factorvae={num_variance_estimate: 64, num_train: 20, num_eval: 10, batch_size: 8}",
    "eval.metric_protocol.dci={num_train: 64, num_test: 32}", "eval.metric_protocol.mig={num_train: 64}",
    "eval.metric_protocol.infomec={num_points: 64}", "eval.jobs=1",
]


def test_proof_config_is_the_paper_model_with_budgets():
    proof, paper = load_config("proof_gpu.yaml"), load_config("shapes3d.yaml")
    for section in ("unet", "diffusion"):
        assert proof.model[section] == paper.model[section], section
    fs, ref = proof.model.first_stage, paper.model.first_stage
    for key in ("embed_dim", "n_embed", "base_channels", "channel_mult", "num_res_blocks", "disc_weight", "disc_start"):
        assert fs[key] == ref[key], key
    assert proof.model.encoder.extra_fc and proof.model.encoder.num_units == 20
    assert proof.data.resolution == 64 and proof.train.batch_size == 512 and proof.train.mixed_precision == "bf16"
    assert proof.model.bottleneck.kind == "dyga" and proof.model.unet.skip_dropout == 0.2
    assert not proof.eval.fast and not proof.eval.metric_protocol  # the published sample sizes
    # the budgets leave about 3 of the 8 minutes for set-up, the DyGA fits, metrics and pictures
    assert fs.max_minutes + proof.train.max_minutes <= 4.5


def test_proof_command_runs_every_stage_on_a_cpu(tmp_path):
    # a process of its own, as the command runs (accelerate keeps one precision per process)
    run = tmp_path / "proof"
    subprocess.run([sys.executable, "-m", "ldm_dis.cli", "quickstart", "--config", "proof_gpu.yaml", *TINY,
                    f"run.dir={run}", "--images", "1", "--nmi-images", "24"], check=True, cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    report = json.loads((run / "summary.json").read_text())
    ldm, first = report["training"]["ldm"], report["training"]["first_stage"]
    assert ldm["end"] == "max_minutes" and 1 <= ldm["steps"] < 50  # stopped by its budget, at a checkpoint
    assert ldm["images_total"] == 8 * ldm["steps"] and ldm["images_per_s"] > 0
    assert ldm["dyga_fits"] and ldm["dyga_fits"][0]["seconds"] > 0  # anchors fitted after the first epoch
    assert (first["end"], first["steps"], first["images_total"]) == ("max_steps", 2, 16)
    assert report["device"]["type"] == "cpu" and report["device"]["mixed_precision"] == "bf16"
    assert ldm["peak_gpu_memory_bytes"] is None
    assert set(report["stages"]) == {"data", "train", "evaluate", "interchange", "attention", "scatter", "curves"}
    assert all(s["seconds"] > 0 and s["peak_gpu_memory_bytes"] is None for s in report["stages"].values())
    assert set(report["metrics"]) == {"factorvae", "dci", "mig", "infomec"}
    assert report["metric_protocol_overrides"]["dci"] == {"num_train": 64, "num_test": 32}
    for picture in ("dataset", "interchange", "attention", "scatter", "loss_curves"):
        assert (run / "pictures" / f"{picture}.png").stat().st_size > 0
