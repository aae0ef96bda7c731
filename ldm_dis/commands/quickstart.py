"""``ldm-dis quickstart``: the main job, end to end, on the embedded default (a 2-core CPU, minutes).

    ldm-dis quickstart                                   # configs/quickstart.yaml, run folder runs/quickstart
    ldm-dis quickstart --config quickstart.yaml train.max_steps=500 run.dir=runs/short

Stages: render ``synth-shapes3d`` (a labelled grid of the data) -> train or reuse the VQ-GAN first stage
-> train the latent diffusion model (DyGA + Skip Dropout, as configured) -> evaluate the metrics of
``eval.metrics`` -> latent-interchange grid, attention maps, unit scatter and loss curves -> a summary
table and the run folder. A finished first stage is reused while its config is unchanged; a finished
LDM run is reused and an interrupted one resumed, so running the command again only redoes what is
missing. Each stage is the same code as its own ``ldm-dis`` command.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_parser(subparsers, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="quickstart.yaml", help="YAML file (default: configs/quickstart.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.max_steps=500")
    parser.add_argument("--images", type=int, default=4, help="source/target pairs and attention rows in the pictures")
    parser.set_defaults(func=run)


def _stage(name: str, argv: list[str], timings: dict) -> None:
    from ldm_dis.cli import main

    start = time.perf_counter()
    print(f"\n== {name}: ldm-dis {' '.join(argv)}", flush=True)
    code = main(argv)
    if code:
        raise SystemExit(f"quickstart: stage {name!r} failed (exit {code})")
    timings[name] = time.perf_counter() - start


def _train(cfg, timings: dict) -> None:
    from ldm_dis.training.checkpoint import list_checkpoints
    from ldm_dis.training.pipeline import run_training

    start = time.perf_counter()
    found = list_checkpoints(cfg.run.dir)
    if found and found[-1][0] >= cfg.train.max_steps:
        print(f"\n== train: reusing the finished run {found[-1][1]}")
    else:
        print(f"\n== train: {cfg.model.kind} with bottleneck {cfg.model.bottleneck.kind!r}, "
              f"{cfg.train.max_steps} steps in {cfg.run.dir}" + (" (resuming)" if found else ""), flush=True)
        run_training(cfg, resume=bool(found))
    timings["train"] = time.perf_counter() - start


def _summary(run_dir: Path, timings: dict, total: float) -> str:
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    rows = [("metric", "score")]
    for name, scores in metrics["scores"].items():
        rows += [(f"{name}.{key}", f"{value:.3f}") for key, value in scores.items()]
    rows += [("", "")] + [(f"time: {name}", f"{seconds / 60:.1f} min") for name, seconds in timings.items()]
    rows.append(("time: total", f"{total / 60:.1f} min"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{a:<{width}}  {b}" for a, b in rows]
    lines.insert(1, "-" * (width + 8))
    return "\n".join(lines)


def run(args) -> int:
    from ldm_dis.config import load_config, to_yaml

    cfg = load_config(args.config, args.overrides)
    run_dir = Path(cfg.run.dir)
    pictures = run_dir / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    start, timings = time.perf_counter(), {}
    checkpoint = str(run_dir)
    steps = ["--steps", str(cfg.model.diffusion.sample_steps)]

    _stage("data", ["data", "show", "--dataset", cfg.data.name, "--resolution", str(cfg.data.resolution),
                    *(["--path", cfg.data.path] if cfg.data.path else []), "--out", str(pictures / "dataset.png")],
           timings)
    _train(cfg, timings)
    _stage("evaluate", ["evaluate", "--checkpoint", checkpoint, "--metrics", *cfg.eval.metrics,
                        "--seed", str(cfg.eval.seed), *(["--fast"] if cfg.eval.fast else []),
                        "--out", str(run_dir / "eval")], timings)
    if cfg.model.kind == "ldm":
        _stage("interchange", ["sample", "interchange", "--checkpoint", checkpoint, "--pairs", str(args.images),
                               *steps, "--out", str(pictures / "interchange.png")], timings)
        _stage("attention", ["attention", "--checkpoint", checkpoint, "--images", str(args.images),
                             *steps, "--out", str(pictures / "attention.png")], timings)
        _stage("scatter", ["plot", "scatter", "--checkpoint", checkpoint, "--out", str(pictures / "scatter.png")],
               timings)
    _stage("curves", ["plot", "curves", "--checkpoint", checkpoint, "--out", str(pictures / "loss_curves.png")],
           timings)

    table = _summary(run_dir, timings, time.perf_counter() - start)
    (run_dir / "summary.txt").write_text(table + "\n\nconfig:\n" + to_yaml(cfg))
    print("\n" + table)
    print(f"\nrun folder: {run_dir.resolve()}\n  metrics: {run_dir / 'eval' / 'metrics.json'}\n  pictures: {pictures}")
    return 0
