"""Train every VAE-family baseline on synth-shapes3d (32x32) within one CPU time budget each, score them,
and write the table into docs/results.md.

    python benchmarks/baselines.py                       # 600 s of training per baseline
    python benchmarks/baselines.py --short               # 150 s per baseline
    python benchmarks/baselines.py --kinds ae factorqvae --budget-s 300

Each baseline uses ``configs/baselines/cpu_<kind>.yaml`` and the same path as a user: ``run_training``
(train.py) writes the run folder and checkpoint, then the representation is read back from the checkpoint
(``training.export.load_representation``) and scored by ``metrics.evaluate`` (fast protocol). The budget
is turned into a number of steps by timing a few steps of that baseline (data loading included) first, so
every baseline gets about the same CPU time, not the same number of steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import seconds_per_step, write_results

ROOT = Path(__file__).resolve().parents[1]
# AE and FactorQVAE first: the sanity check of the whole chain is that FactorQVAE's DCI beats the AE's
KINDS = ["ae", "factorqvae", "qvae", "qlae", "betavae", "factorvae", "betatcvae", "bioae", "dvae", "factordvae"]


def reconstruction_mse(task, dataset, count: int = 512, seed: int = 0) -> float:
    """Mean squared error of eval-mode reconstructions, pixels in [0, 1] (the papers' MSE column scale)."""
    idx = np.random.default_rng(seed).choice(len(dataset), count, replace=False)
    images = torch.stack([dataset[int(j)][0] for j in idx])
    recon = task.sample_images(images, torch.Generator().manual_seed(seed))
    return float((((recon - images) / 2) ** 2).mean())


def run_one(kind: str, budget_s: float, runs_dir: Path, metrics, seed: int, dci_points: int) -> dict:
    from ldm_dis.config.loading import load_config
    from ldm_dis.data import build_dataset
    from ldm_dis.metrics import evaluate
    from ldm_dis.training.export import load_representation
    from ldm_dis.training.pipeline import run_training

    run_dir = runs_dir / kind
    cfg = load_config(f"baselines/cpu_{kind}.yaml", [f"run.dir={run_dir}", f"train.seed={seed}"])
    dataset = build_dataset(cfg.data)
    per_step = seconds_per_step(cfg, dataset)
    steps = max(50, int(budget_s / per_step))
    cfg.train.max_steps = steps
    cfg.model.baseline.lr_anneal_steps = steps
    cfg.train.ckpt_every = steps
    cfg.train.sample_every = steps
    cfg.train.log_every = max(1, steps // 20)
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    trainer = run_training(cfg, dataset=dataset)
    train_s = time.perf_counter() - start
    mse = reconstruction_mse(trainer.task, dataset, seed=seed)
    start = time.perf_counter()
    _, representation_fn = load_representation(run_dir, dataset=dataset)
    protocol = {"dci": {"num_train": dci_points, "num_test": dci_points // 2}}
    result = evaluate(dataset, representation_fn, metrics, seed=seed, fast=True, protocol=protocol)
    eval_s = time.perf_counter() - start
    row = {"kind": kind, "steps": steps, "train_s": round(train_s, 1), "eval_s": round(eval_s, 1), "mse": mse,
           "scores": result["scores"], "skipped": result["skipped"], "metric_s": result["seconds"]}
    (run_dir / "benchmark.json").write_text(json.dumps(row, indent=1))
    return row


def table(rows, budget_s: float, command: str, dci_points: int, title: str = "") -> str:
    def get(row, metric, key):
        value = row["scores"].get(metric, {}).get(key)
        return "-" if value is None else f"{value:.3f}"

    lines = [
        f"## VAE-family baselines on synth-shapes3d (CPU){title}",
        "",
        f"Command: `{command}`",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} CPU cores ({platform.machine()}), "
        f"torch {torch.__version__}, load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        f"Each baseline trained for a budget of {budget_s:.0f} s of CPU time on "
        "synth-shapes3d at 32x32, batch 64, with `configs/baselines/cpu_<kind>.yaml` (the published Shapes3D "
        f"weights), then scored from its checkpoint with the fast metric protocol (seed 0; DCI on {dci_points} "
        f"train / {dci_points // 2} test points). MSE: eval-mode "
        "reconstruction, pixels in [0, 1]. The budget becomes a step count by timing a few steps first (at "
        "least 50 steps); `train s` is the measured wall time, which departs from the budget when the load "
        "of a shared machine changes between the timing and the run. A short CPU run, not the papers' 100k "
        "GPU steps: compare the baselines with each other, not with the published numbers.",
        "",
        "| model | steps | train s | MSE | DCI D | DCI C | DCI I (test) | FactorVAE (eval) | MIG | InfoM | InfoC | InfoE |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['steps']} | {r['train_s']:.0f} | {r['mse']:.4f} | {get(r, 'dci', 'disentanglement')} | "
            f"{get(r, 'dci', 'completeness')} | {get(r, 'dci', 'informativeness_test')} | "
            f"{get(r, 'factorvae', 'eval_accuracy')} | {get(r, 'mig', 'discrete_mig')} | {get(r, 'infomec', 'infom')} | "
            f"{get(r, 'infomec', 'infoc')} | {get(r, 'infomec', 'infoe')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=600.0, help="training seconds per baseline (at most 600)")
    parser.add_argument("--short", action="store_true", help="150 s per baseline")
    parser.add_argument("--kinds", nargs="+", default=KINDS, choices=KINDS)
    parser.add_argument("--metrics", nargs="+", default=["dci", "factorvae", "mig", "infomec"])
    parser.add_argument("--runs-dir", default=str(ROOT / "runs" / "benchmark_baselines"))
    parser.add_argument("--results", default=str(ROOT / "docs" / "results.md"), help="'' to print only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dci-points", type=int, default=2000, help="DCI training points (test: half)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--section", default="baselines",
                        help="name of the marked section of --results that this run replaces")
    parser.add_argument("--reuse", action="store_true",
                        help="take a baseline's row from <runs-dir>/<kind>/benchmark.json when it exists (resume a cut run)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = 150.0 if args.short else min(args.budget_s, 600.0)
    command = "python benchmarks/baselines.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = []
    for kind in args.kinds:
        done = Path(args.runs_dir) / kind / "benchmark.json"
        if args.reuse and done.is_file():
            row = json.loads(done.read_text())
        else:
            row = run_one(kind, budget, Path(args.runs_dir), args.metrics, args.seed, args.dci_points)
        rows.append(row)
        print(json.dumps(row), flush=True)
        title = f", {budget:.0f} s each" if args.section != "baselines" else ""
        section = table(rows, budget, command.strip(), args.dci_points, title)
        if args.results:  # after every baseline, so an interrupted run still reports what it finished
            write_results(Path(args.results), section, args.section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
