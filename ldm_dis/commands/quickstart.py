"""``ldm-dis quickstart``: the main job, end to end, on the embedded default (a 2-core CPU, minutes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

DESCRIPTION = """The whole pipeline on the built-in synth-shapes3d dataset, sized for a CPU (minutes).

    ldm-dis quickstart                                          # run folder runs/quickstart
    ldm-dis quickstart train.max_steps=500 run.dir=runs/short   # any config key can be overridden

Stages: a labelled grid of the data -> train (or reuse) the VQ-GAN first stage -> train the latent
diffusion model (DyGA + Skip Dropout) -> the metrics of eval.metrics -> latent-interchange grid,
attention maps, unit scatter and loss curves -> a summary table. Each stage prints the ldm-dis command
it runs, so any picture can be redrawn with other options (add --out or --overwrite: the quickstart's
pictures are not replaced silently). A finished first stage is reused while its config is unchanged; a
finished run is reused and an interrupted one resumed, so running the command again only redoes what
is missing.
"""


def add_parser(subparsers, name: str, help_text: str) -> None:
    from ldm_dis.commands.arguments import add_command_parser
    from ldm_dis.commands.attention import DEFAULT_IMAGES

    parser = add_command_parser(subparsers, name, help_text, DESCRIPTION)
    parser.add_argument("--config", default="quickstart.yaml", help="YAML file: a path, or a config shipped with ldm_dis")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.max_steps=500")
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                        help="source/target pairs and attention rows in the pictures")
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
    from ldm_dis.commands.tables import format_score

    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    rows = [("metric", "score")]
    for name, scores in metrics["scores"].items():
        rows += [(f"{name}.{key}", format_score(key, value, 3)) for key, value in scores.items()]
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
    # the picture commands' defaults are the run's DDIM settings and RUN/pictures/<name>.png; the quickstart
    # owns those files and redraws them on every run
    mine = ["--overwrite"]

    _stage("data", ["data", "show", "--dataset", cfg.data.name,
                    *(["--resolution", str(cfg.data.resolution)] if cfg.data.resolution else []),
                    *(["--path", cfg.data.path] if cfg.data.path else []), "--out", str(pictures / "dataset.png"),
                    *mine], timings)
    _train(cfg, timings)
    _stage("evaluate", ["evaluate", checkpoint, "--metrics", *cfg.eval.metrics,
                        "--seed", str(cfg.eval.seed), *(["--fast"] if cfg.eval.fast else []),
                        "--out", str(run_dir / "eval")], timings)
    if cfg.model.kind == "ldm":
        _stage("interchange", ["sample", "interchange", checkpoint, "--pairs", str(args.images), *mine], timings)
        _stage("attention", ["attention", checkpoint, "--images", str(args.images), *mine], timings)
        _stage("scatter", ["plot", "scatter", checkpoint, *mine], timings)
    _stage("curves", ["plot", "curves", checkpoint, *mine], timings)

    table = _summary(run_dir, timings, time.perf_counter() - start)
    (run_dir / "summary.txt").write_text(table + "\n\nconfig:\n" + to_yaml(cfg))
    print("\n" + table)
    print(f"\nrun folder: {run_dir.resolve()}\n  metrics: {run_dir / 'eval' / 'metrics.json'}\n  pictures: {pictures}")
    return 0
