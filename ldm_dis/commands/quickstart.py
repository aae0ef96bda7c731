"""``ldm-dis quickstart``: the main job, end to end, on the embedded default (a 2-core CPU, minutes)."""

from __future__ import annotations

import contextlib
import json
import platform
import time
from pathlib import Path

DESCRIPTION = """The whole pipeline on the built-in synth-shapes3d dataset, sized for a CPU (minutes).

    ldm-dis quickstart                                          # run folder runs/quickstart
    ldm-dis quickstart train.max_steps=500 run.dir=runs/short   # any config key can be overridden
    ldm-dis quickstart --config proof_gpu.yaml run.dir=runs/proof  # the paper-sized run on one GPU

Stages: a labelled grid of the data -> train (or reuse) the VQ-GAN first stage -> train the latent
diffusion model (DyGA + Skip Dropout; the CPU quickstart.yaml turns Skip Dropout off, as measured) ->
the metrics of eval.metrics -> latent-interchange grid, attention maps, unit scatter and loss curves ->
a summary table. Each stage prints the ldm-dis command it runs, so any picture can be redrawn with
other options (add --out or --overwrite: the quickstart's pictures are not replaced silently). A
finished first stage is reused while its config is unchanged; a finished run is reused and an
interrupted one resumed, so running the command again only redoes what is missing (a run stopped by its time budget, train.max_minutes, counts as finished).

Besides summary.txt, the run folder gets summary.json: seconds and peak GPU memory of every stage,
steps, images seen and images/s of both trainings, and the metrics.
"""


def add_parser(subparsers, name: str, help_text: str) -> None:
    from ldm_dis.commands.arguments import add_command_parser
    from ldm_dis.commands.attention import DEFAULT_IMAGES

    parser = add_command_parser(subparsers, name, help_text, DESCRIPTION)
    parser.add_argument("--config", default="quickstart.yaml", help="YAML file: a path, or a config shipped with ldm_dis")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.max_steps=500")
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                        help="source/target pairs and attention rows in the pictures")
    parser.add_argument("--nmi-images", type=int, default=2000,
                        help="images encoded to label the units by factor in the attention maps")
    parser.set_defaults(func=run)


@contextlib.contextmanager
def _measured(name: str, stages: dict):
    """Seconds and peak GPU memory (None off CUDA) of one stage, into ``stages[name]``."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    yield
    stages[name] = {"seconds": round(time.perf_counter() - start, 3),
                    "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None}


def _stage(name: str, argv: list[str], stages: dict) -> None:
    from ldm_dis.cli import main

    print(f"\n== {name}: ldm-dis {' '.join(argv)}", flush=True)
    with _measured(name, stages):
        code = main(argv)
    if code:
        raise SystemExit(f"quickstart: stage {name!r} failed (exit {code})")


def _train(cfg, stages: dict) -> None:
    from ldm_dis.training.checkpoint import list_checkpoints
    from ldm_dis.training.pipeline import run_training, training_finished

    with _measured("train", stages):
        found = list_checkpoints(cfg.run.dir)
        if training_finished(cfg.run.dir, cfg.train):
            print(f"\n== train: reusing the finished run {found[-1][1]}")
        else:
            budget = f", at most {cfg.train.max_minutes} min" if cfg.train.max_minutes else ""
            print(f"\n== train: {cfg.model.kind} with bottleneck {cfg.model.bottleneck.kind!r}, "
                  f"{cfg.train.max_steps} steps{budget} in {cfg.run.dir}" + (" (resuming)" if found else ""), flush=True)
            run_training(cfg, resume=bool(found))


def _training_record(run_dir, batch_size: int) -> dict | None:
    from ldm_dis.training.run_log import training_summary

    record = training_summary(run_dir)
    if record is not None:
        record["batch_size"] = batch_size
        record["images_total"] = record["steps"] * batch_size
    return record


def _report(cfg, args, run_dir: Path, stages: dict, total: float, given_first_stage) -> dict:
    """The machine-readable summary: stages, trainings, metrics."""
    import torch

    from ldm_dis.training.pipeline import first_stage_config

    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    training = {"ldm" if cfg.model.kind == "ldm" else cfg.model.kind: _training_record(run_dir, cfg.train.batch_size)}
    if cfg.model.kind == "ldm" and given_first_stage:
        training["first_stage"] = {"given": given_first_stage}
    elif cfg.model.kind == "ldm":
        fs_cfg = first_stage_config(cfg)
        training["first_stage"] = _training_record(fs_cfg.run.dir, fs_cfg.train.batch_size)
    cuda = torch.cuda.is_available()
    return {
        "config": str(args.config), "overrides": list(args.overrides), "run_dir": str(run_dir.resolve()),
        "device": {"type": "cuda" if cuda else "cpu", "name": torch.cuda.get_device_name() if cuda else platform.processor(),
                   "torch": torch.__version__, "mixed_precision": cfg.train.mixed_precision},
        "total_seconds": round(total, 3),
        "stages": stages,
        "training": training,
        "metrics": metrics["scores"],
        "metric_seconds": metrics.get("seconds", {}),
        "metric_preset": "fast" if cfg.eval.fast else "standard",
        "metric_protocol_overrides": metrics.get("protocol_overrides", {}),
    }


def _summary(report: dict) -> str:
    from ldm_dis.commands.tables import format_score

    rows = [("metric", "score")]
    for name, scores in report["metrics"].items():
        rows += [(f"{name}.{key}", format_score(key, value, 3)) for key, value in scores.items()]
    rows.append(("", ""))
    for name, record in report["training"].items():
        if record and "steps" in record:
            speed = f", {record['images_per_s']:.0f} images/s" if record.get("images_per_s") else ""
            rows.append((f"training: {name}", f"{record['steps']} steps, {record['images_total']:,} images{speed} "
                                              f"(stopped by {record['end']})"))
    for name, stage in report["stages"].items():
        memory = stage["peak_gpu_memory_bytes"]
        rows.append((f"time: {name}", f"{stage['seconds'] / 60:.1f} min" + (f", peak GPU {memory / 2**30:.1f} GiB" if memory else "")))
    rows.append(("time: total", f"{report['total_seconds'] / 60:.1f} min"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{a:<{width}}  {b}" for a, b in rows]
    lines.insert(1, "-" * (width + 8))
    return "\n".join(lines)


def run(args) -> int:
    from ldm_dis.config import load_config, to_yaml

    start = time.perf_counter()
    cfg = load_config(args.config, args.overrides)
    given_first_stage = cfg.model.first_stage.checkpoint  # training fills it in with the cached one
    run_dir = Path(cfg.run.dir)
    pictures = run_dir / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    stages: dict = {}
    checkpoint = str(run_dir)
    # the picture commands' defaults are the run's DDIM settings and RUN/pictures/<name>.png; the quickstart
    # owns those files and redraws them on every run
    mine = ["--overwrite"]
    protocol = [item for metric, values in cfg.eval.metric_protocol.items() for key, value in values.items()
                for item in ("--set", f"{metric}.{key}={json.dumps(value)}")]

    _stage("data", ["data", "show", "--dataset", cfg.data.name,
                    *(["--resolution", str(cfg.data.resolution)] if cfg.data.resolution else []),
                    *(["--path", cfg.data.path] if cfg.data.path else []), "--out", str(pictures / "dataset.png"),
                    *mine], stages)
    _train(cfg, stages)
    _stage("evaluate", ["evaluate", checkpoint, "--metrics", *cfg.eval.metrics,
                        "--seed", str(cfg.eval.seed), "--jobs", str(cfg.eval.jobs), *(["--fast"] if cfg.eval.fast else []),
                        *protocol, "--out", str(run_dir / "eval")], stages)
    if cfg.model.kind == "ldm":
        _stage("interchange", ["sample", "interchange", checkpoint, "--pairs", str(args.images), *mine], stages)
        _stage("attention", ["attention", checkpoint, "--images", str(args.images),
                             "--nmi-images", str(args.nmi_images), *mine], stages)
        _stage("scatter", ["plot", "scatter", checkpoint, *mine], stages)
    _stage("curves", ["plot", "curves", checkpoint, *mine], stages)

    report = _report(cfg, args, run_dir, stages, time.perf_counter() - start, given_first_stage)
    (run_dir / "summary.json").write_text(json.dumps(report, indent=2))
    table = _summary(report)
    (run_dir / "summary.txt").write_text(table + "\n\nconfig:\n" + to_yaml(cfg))
    print("\n" + table)
    print(f"\nrun folder: {run_dir.resolve()}\n  metrics: {run_dir / 'eval' / 'metrics.json'}\n"
          f"  summary: {run_dir / 'summary.json'}\n  pictures: {pictures}")
    return 0
