"""Reproduce the paper's Table 4 ablation of the latent diffusion model and its comparison with the
VAE-family baselines, each model given the same training time, over several seeds; write mean ± std
tables into docs/results.md.

    python benchmarks/reproduce.py --budget-s 600 --jobs 2          # CPU, synth-shapes3d (quickstart.yaml)
    python benchmarks/reproduce.py --budget-s 600 --jobs 2 --reuse  # resume a cut reproduction
    python benchmarks/reproduce.py data.path=/data/3dshapes.h5 --config shapes3d.yaml --budget-s 0 --full-protocol

Put the KEY=VALUE overrides first: options taking lists (--seeds, --baselines, ...) would swallow them.

Models. Ablation (``model.kind=ldm``, a config with DyGA): ``baseline`` (neither DyGA nor Skip Dropout),
``dyga`` (DyGA, no Skip Dropout), ``sd`` (Skip Dropout, no bottleneck), ``dyga_sd`` (the config as it is).
``sd`` and ``dyga_sd`` take the config's Skip Dropout rate, or the paper's 0.2 where the config has it off
(``configs/quickstart.yaml`` does: at its size DyGA and Skip Dropout together were behind, docs/results.md).
Baselines (``--baselines``): ``configs/baselines/cpu_<kind>.yaml`` for a ``synth-*`` dataset, else
``configs/baselines/<data.name>_<kind>.yaml``. Positional ``KEY=VALUE`` overrides apply to every LDM run;
the ``data.*`` ones also to the baselines (``--vae-overrides`` are for the baselines alone).

Budget (``--budget-s B``, training seconds per model). The VQ-GAN first stage, shared by all LDM runs, is
trained (or taken from the cache) once in this process before any run starts, with the runs' thread
count; its training time is charged to every LDM run: LDM steps = (B - first-stage s) / (s per LDM step),
VAE steps = B / (s per VAE step). Seconds per step are the median of a few real steps of that model
(a batch rendered + ``training_step``) timed here, before the runs, with the runs' thread count. A cached
first stage is charged the time this script measured when it trained it (``<runs-dir>/first_stage.json``),
else the time its ``log.jsonl`` time stamps give (median s/step x steps), else a timing of its steps.
DyGA refits and checkpoints are outside the per-step timing: the ``train s`` column is the measured time
of the training loop (config.yaml written -> last log record; LDM rows add the first stage's charge).
With ``--budget-s 0`` every model runs its config's own ``train.max_steps`` (paper size on a GPU).

Schedule of a budgeted run (B > 0): ``train.ckpt_every`` and
``train.sample_every`` = steps (one checkpoint and one picture, at the end), ``train.log_every`` =
steps // 20; LDM: ``train.epoch_steps`` (the DyGA refit period) stays the config's unless the run is
shorter than 2 epochs, then steps // 3 so DyGA still refits at least twice (with its
``fit_every_epochs`` = 1); VAE:
``model.baseline.lr_anneal_steps`` = steps, as benchmarks/baselines.py.

Runs. Every (model, seed) is ``python -m ldm_dis.cli train`` then ``evaluate --fast`` (``--full-protocol``:
the published sample sizes) in its own process with ``OMP_NUM_THREADS=MKL_NUM_THREADS=--threads``, output
in ``<runs-dir>/<model>/seed<k>/stdout.log``; ``--jobs`` of them at once. One process on one device: for a
multi-GPU paper run, train with ``accelerate launch`` yourself. Writes ``<runs-dir>/reproduce.json`` and
``reproduce.csv`` (one row per run) and the section ``--section`` of ``--results``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from _common import StepAccelerator, seconds_per_step, write_results
from tqdm import tqdm

from ldm_dis.config.loading import CONFIG_DIR, config_to_dict, load_config
from ldm_dis.metrics.parallel import resolve_jobs  # the cores this process may use
from ldm_dis.runs import checkpoint_run_dir
from ldm_dis.training.tasks import BASELINE_KINDS

ROOT = Path(__file__).resolve().parents[1]
# Table 4: variant -> overrides on top of the config (which has DyGA and Skip Dropout on)
VARIANTS = {
    "baseline": ["model.bottleneck.kind=none", "model.unet.skip_dropout=0"],
    "dyga": ["model.bottleneck.kind=dyga", "model.unet.skip_dropout=0"],
    "sd": ["model.bottleneck.kind=none"],
    "dyga_sd": [],
}
PAPER_SKIP_DROPOUT = 0.2  # Skip Dropout's rate p (paper Sec. 3.3; SPEC 2.4)
VARIANT_LABELS = {"baseline": "LDM", "dyga": "LDM + DyGA", "sd": "LDM + Skip Dropout",
                  "dyga_sd": "LDM + DyGA + Skip Dropout"}
DEFAULT_BASELINES = ["betavae", "betatcvae", "factorvae", "factorqvae"]
# table column -> (metric, key in metrics.json's scores)
SCORE_COLUMNS = {"FactorVAE": ("factorvae", "eval_accuracy"), "DCI D": ("dci", "disentanglement"),
                 "DCI C": ("dci", "completeness"), "DCI I (test)": ("dci", "informativeness_test"),
                 "MIG": ("mig", "discrete_mig"), "InfoM": ("infomec", "infom")}
LOG_TAIL = 30  # lines of a failed run's log shown in the error


@dataclass
class Run:
    """One (model, seed): ``overrides`` say what the model is; run.dir, the seed and the schedule are added at launch."""

    model: str  # "ldm_<variant>" or a baseline kind; the table row and the folder name
    seed: int
    config: str
    overrides: list[str]
    run_dir: Path
    steps: int | None = None  # None: the config's own train.max_steps
    schedule: list[str] = field(default_factory=list)

    @property
    def is_ldm(self) -> bool:
        return self.model.startswith("ldm_")

    @property
    def done(self) -> bool:
        return (self.run_dir / "eval" / "metrics.json").is_file()


@dataclass
class FirstStage:
    path: Path  # weights file given to every LDM run (model.first_stage.checkpoint)
    seconds: float | None  # training time charged to each LDM run
    source: str  # how ``seconds`` was obtained, for the table


# ------------------------------------------------------------------------------------- the plan
def variant_overrides(variant: str, cfg) -> list[str]:
    """The overrides of ``variant`` on the LDM config ``cfg``. ``sd`` and ``dyga_sd`` keep the config's Skip
    Dropout rate, or take the paper's where the config has it off (the CPU quickstart does, measured)."""
    extra = []
    if variant in ("sd", "dyga_sd") and not cfg.model.unet.skip_dropout > 0:
        extra = [f"model.unet.skip_dropout={PAPER_SKIP_DROPOUT}"]
    return [*VARIANTS[variant], *extra]


def check_ablation_config(cfg, variants) -> None:
    """``dyga_sd`` takes the config's DyGA as it is: it must be on."""
    if "dyga_sd" in variants and cfg.model.bottleneck.kind != "dyga":
        raise SystemExit(f"variant dyga_sd keeps the config's bottleneck, which must be model.bottleneck.kind=dyga "
                         f"(it has {cfg.model.bottleneck.kind!r})")


def baseline_config(cfg, kind: str) -> str:
    """The baseline config matching the LDM config ``cfg``: CPU-sized for synth-* data, else the dataset's."""
    name = f"cpu_{kind}" if cfg.data.name.startswith("synth-") else f"{cfg.data.name}_{kind}"
    path = CONFIG_DIR / "baselines" / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"no baseline config for {kind} on data.name={cfg.data.name}: {path} does not exist "
                         "(leave that kind out of --baselines or write the file)")
    return f"baselines/{name}.yaml"


def data_overrides(overrides) -> list[str]:
    return [o for o in overrides if o.startswith("data.")]


def budget_steps(budget_s: float, seconds_per_step: float, charged_s: float = 0.0) -> int:
    """Steps that fit in ``budget_s`` seconds after ``charged_s`` (the LDM's first stage) are spent."""
    left = budget_s - charged_s
    if left <= 0:
        raise SystemExit(f"--budget-s {budget_s:g} leaves no time: the first stage alone took {charged_s:.0f} s")
    return max(1, int(left / seconds_per_step))


def epoch_steps_for(steps: int, epoch_steps: int) -> int:
    """The DyGA refit period: the config's, unless the run is shorter than 2 epochs (then 3 per run)."""
    return epoch_steps if steps >= 2 * epoch_steps else max(1, steps // 3)


def schedule_overrides(steps: int, ldm_epoch_steps: int | None = None) -> list[str]:
    """Overrides of a budgeted run of ``steps`` steps; ``ldm_epoch_steps``: the LDM config's epoch length."""
    out = [f"train.max_steps={steps}", f"train.ckpt_every={steps}", f"train.sample_every={steps}",
           f"train.log_every={max(1, steps // 20)}"]
    if ldm_epoch_steps is None:
        return out + [f"model.baseline.lr_anneal_steps={steps}"]
    return out + [f"train.epoch_steps={epoch_steps_for(steps, ldm_epoch_steps)}"]


def plan(config: str, ldm_overrides, variants, vae_overrides, baselines, seeds, runs_dir: Path, base_cfg) -> list[Run]:
    """Every (model, seed), seed-major (the first seed of every model finishes first). Fails before any
    training on a missing baseline config or a baseline trained on other data than the LDM."""
    models = [(f"ldm_{v}", config, [*ldm_overrides, *variant_overrides(v, base_cfg)]) for v in variants]
    for kind in baselines:
        vae_config = baseline_config(base_cfg, kind)
        vae = load_config(vae_config, vae_overrides)
        if (vae.data.name, vae.data.resolution) != (base_cfg.data.name, base_cfg.data.resolution):
            raise SystemExit(f"{vae_config} trains on {vae.data.name} at {vae.data.resolution}px, the LDM on "
                             f"{base_cfg.data.name} at {base_cfg.data.resolution}px: set both with data.* overrides")
        models.append((kind, vae_config, list(vae_overrides)))
    return [Run(model, seed, cfg, list(overrides), runs_dir / model / f"seed{seed}")
            for seed in seeds for model, cfg, overrides in models]


# ----------------------------------------------------------------------------------- first stage
def seconds_from_log(records: list[dict], max_steps: int) -> float | None:
    """Training time of ``max_steps`` steps from a run log: median seconds per step between consecutive
    records (robust to the pause of a resumed run) times the steps; None with fewer than two records."""
    points = sorted({r["step"]: r["time"] for r in records if "time" in r and "epoch_end" not in r}.items())
    rates = [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in pairwise(points) if s1 > s0]
    return float(np.median(rates)) * max_steps if rates else None


def prepare_first_stage(cfg, runs_dir: Path, need_seconds: bool) -> FirstStage:
    """Train (or find) the first stage every LDM run shares, here and now, and what its training cost."""
    from ldm_dis.data import build_dataset
    from ldm_dis.training.checkpoint import list_checkpoints
    from ldm_dis.training.pipeline import ensure_first_stage, first_stage_config
    from ldm_dis.training.run_log import read_log
    from ldm_dis.training.trainer import make_accelerator

    fs_cfg = first_stage_config(cfg)
    steps = fs_cfg.train.max_steps
    fresh = not cfg.model.first_stage.checkpoint and not list_checkpoints(fs_cfg.run.dir)
    dataset = build_dataset(cfg.data)
    start = time.perf_counter()
    path = ensure_first_stage(cfg, dataset, make_accelerator(cfg))
    elapsed = time.perf_counter() - start
    record = runs_dir / "first_stage.json"
    if fresh:
        runs_dir.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"checkpoint": str(path), "seconds": elapsed, "threads": torch.get_num_threads()}))
        return FirstStage(path, elapsed, f"measured: {steps} steps trained by this script")
    saved = json.loads(record.read_text()) if record.is_file() else {}
    if saved.get("checkpoint") == str(path):
        return FirstStage(path, saved["seconds"], f"measured when this script trained it, kept in {record}")
    run_dir = checkpoint_run_dir(path)
    seconds = seconds_from_log(read_log(run_dir), steps)
    if seconds is not None:
        return FirstStage(path, seconds, f"reused from the cache; time from the log.jsonl of {run_dir}")
    if not need_seconds:
        return FirstStage(path, None, "reused; training time unknown (not charged with --budget-s 0)")
    per_step = seconds_per_step(fs_cfg, dataset, accelerator=step_accelerator(fs_cfg))
    return FirstStage(path, per_step * steps, f"reused, no log: {steps} steps x {per_step:.3f} s timed now")


def step_accelerator(cfg) -> StepAccelerator:
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where accelerate will put the run
    return StepAccelerator(device, bf16=cfg.train.mixed_precision == "bf16")


def set_steps(runs: list[Run], budget_s: float, first_stage: FirstStage | None) -> dict[str, float]:
    """Time one step of each model of ``runs`` (here, before any run starts); give the runs their steps
    and schedule. Returns the seconds per step by model."""
    from ldm_dis.data import build_dataset
    from ldm_dis.training.data_order import steps_per_pass

    per_step, datasets = {}, {}
    for run in runs:
        cfg = load_config(run.config, run.overrides)
        key = json.dumps(config_to_dict(cfg.data), sort_keys=True)
        if key not in datasets:
            datasets[key] = build_dataset(cfg.data)
        dataset = datasets[key]
        if run.model not in per_step:
            per_step[run.model] = seconds_per_step(cfg, dataset, accelerator=step_accelerator(cfg))
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the runs need the memory
            print(f"{run.model}: {per_step[run.model]:.3f} s per step", flush=True)
        charge = first_stage.seconds if run.is_ldm else 0.0
        run.steps = budget_steps(budget_s, per_step[run.model], charge)
        epoch = (cfg.train.epoch_steps or steps_per_pass(len(dataset), cfg.train.batch_size)) if run.is_ldm else None
        run.schedule = schedule_overrides(run.steps, epoch)
    return per_step


# ------------------------------------------------------------------------------------------ runs
def cli(*args) -> list[str]:
    return [sys.executable, "-m", "ldm_dis.cli", *map(str, args)]


def run_commands(run: Run, metrics, threads: int, fast: bool = True, metric_sets=()) -> dict[str, list[str]]:
    """``ldm-dis train`` then ``ldm-dis evaluate`` of one run, by name."""
    train = cli("train", "--config", run.config, *run.overrides, f"run.dir={run.run_dir}", f"train.seed={run.seed}",
                *run.schedule)
    evaluate = cli("evaluate", run.run_dir, "--metrics", *metrics, "--seed", run.seed,
                   *(["--fast"] if fast else []), "--jobs", threads, *[a for s in metric_sets for a in ("--set", s)],
                   "--out", run.run_dir / "eval")
    return {"train": train, "evaluate": evaluate}


def execute(run: Run, commands: dict[str, list[str]], threads: int) -> None:
    """The commands one after another in a fresh run folder, output to its stdout.log; a failure raises
    with the run's name, the log's path and its last lines."""
    shutil.rmtree(run.run_dir, ignore_errors=True)
    run.run_dir.mkdir(parents=True)
    log = run.run_dir / "stdout.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(log, "w") as out:
        for name, command in commands.items():
            out.write(f"$ {shlex.join(command)}\n")
            out.flush()
            code = subprocess.run(command, check=False, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
            if code:
                tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-LOG_TAIL:]
                raise RuntimeError(f"run {run.model} seed {run.seed} failed in {name} (exit {code}); log: {log}\n"
                                   + "\n".join(tail))


def loop_seconds(run_dir: Path) -> float | None:
    """The training loop's time: from config.yaml (written when the loop starts) to the last log record."""
    from ldm_dis.training.run_log import read_log

    times = [r["time"] for r in read_log(run_dir) if "time" in r]
    config = run_dir / "config.yaml"
    return max(times) - config.stat().st_mtime if times and config.is_file() else None


def read_row(run: Run, first_stage: FirstStage | None, per_step: dict) -> dict:
    """One table row from a finished run folder (its config, log and eval/metrics.json)."""
    from omegaconf import OmegaConf

    metrics = json.loads((run.run_dir / "eval" / "metrics.json").read_text())
    loop = loop_seconds(run.run_dir)
    charge = (first_stage.seconds or 0.0) if run.is_ldm and first_stage else 0.0
    return {"model": run.model, "seed": run.seed,
            "steps": int(OmegaConf.load(run.run_dir / "config.yaml").train.max_steps),
            "s_per_step": per_step.get(run.model), "first_stage_s": charge if run.is_ldm else None,
            "loop_s": loop, "train_s": None if loop is None else loop + charge,
            "run_dir": str(run.run_dir), "scores": metrics["scores"]}


def write_rows(runs_dir: Path, rows: list[dict], meta: dict) -> None:
    """``reproduce.json`` (everything) and ``reproduce.csv`` (one line per run, scores as metric.key columns)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    (runs_dir / "reproduce.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    keys = sorted({f"{m}.{k}" for r in rows for m, scores in r["scores"].items() for k in scores})
    fields = ["model", "seed", "steps", "s_per_step", "first_stage_s", "loop_s", "train_s", "run_dir"]
    with open(runs_dir / "reproduce.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields + keys)
        for r in rows:
            scores = [r["scores"].get(k.split(".", 1)[0], {}).get(k.split(".", 1)[1], "") for k in keys]
            writer.writerow([("" if r[name] is None else r[name]) for name in fields] + scores)


# ----------------------------------------------------------------------------------------- tables
def mean_std(values, digits: int = 3) -> str:
    """"mean ± std" over seeds (std with ddof=1), the value alone for one seed, "-" for none."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def mean(values, digits: int = 0) -> str:
    values = [v for v in values if v is not None]
    return f"{np.mean(values):.{digits}f}" if values else "-"


def results_table(rows: list[dict], models: list[tuple[str, str]]) -> str:
    """One line per (model, label) of ``models`` that has rows: steps and train s as means over seeds,
    scores as mean ± std."""
    lines = ["| model | steps | train s | " + " | ".join(SCORE_COLUMNS) + " |",
             "| --- | ---: | ---: |" + " ---: |" * len(SCORE_COLUMNS)]
    for model, label in models:
        mine = [r for r in rows if r["model"] == model]
        if not mine:
            continue
        scores = [mean_std([r["scores"].get(metric, {}).get(key) for r in mine]) for metric, key in SCORE_COLUMNS.values()]
        cells = [label, mean([r["steps"] for r in mine]), mean([r["train_s"] for r in mine]), *scores]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section_text(rows: list[dict], meta: dict, variants, baselines) -> str:
    """The docs/results.md section: how it was run, then the ablation and the baseline tables."""
    budget, fs = meta["budget_s"], meta["first_stage"]
    if budget:
        budget_line = (f"Budget: {budget:.0f} s of training per model; steps = budget / seconds per step, timed "
                       "before the runs with the runs' thread count.")
    else:
        budget_line = "Budget: none; every model runs its config's own `train.max_steps`."
    lines = [f"## Reproduction: Table 4 ablation and VAE-family baselines on {meta['dataset']}", "",
             f"Command: `{meta['command']}`", "",
             f"{meta['date']}; {meta['machine']}; {meta['jobs']} run(s) at once, {meta['threads']} thread(s) each; "
             f"seeds {' '.join(map(str, meta['seeds']))}; total wall time {meta['total_s'] / 60:.1f} min"
             + (f" over {meta['invocations']} invocations (--reuse)." if meta["invocations"] > 1 else "."), "",
             budget_line]
    if fs is not None:
        seconds = "unknown" if fs["seconds"] is None else f"{fs['seconds']:.0f} s"
        charged = ("charged to every LDM run: LDM steps = (budget - first stage) / seconds per LDM step"
                   if budget else "no budget to charge it to")
        lines += ["", (f"First stage (VQ-GAN, shared by the LDM runs): {seconds} ({fs['source']}); {charged}. "
                       "LDM rows' train s include it.")]
    lines += ["", (f"Scores: {meta['protocol']} metric protocol, seeded with the training seed; mean ± std over "
                   "seeds (std with ddof=1); steps and train s (the training loop's measured time) are means."), ""]
    if variants:
        lines += ["### Table 4 ablation (latent diffusion model)", "",
                  results_table(rows, [(f"ldm_{v}", VARIANT_LABELS[v]) for v in variants]), ""]
    if baselines:
        ours = [("ldm_dyga_sd", VARIANT_LABELS["dyga_sd"])] if "dyga_sd" in variants else []
        lines += ["### VAE-family baselines, same training time", "",
                  results_table(rows, [(k, k) for k in baselines] + ours), ""]
    return "\n".join(lines).rstrip("\n")


def run_line(row: dict) -> str:
    shown = " ".join(f"{c} {mean_std([row['scores'].get(m, {}).get(k)])}" for c, (m, k) in SCORE_COLUMNS.items())
    train = "-" if row["train_s"] is None else f"{row['train_s']:.0f}"
    return f"{row['model']} seed {row['seed']}: {row['steps']} steps, train {train} s | {shown}"


# ------------------------------------------------------------------------------------------- main
def machine() -> str:
    device = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return f"{resolve_jobs(-1)} CPU cores ({platform.machine()}), {device}"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="quickstart.yaml", help="LDM config with DyGA on")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="for every LDM run; data.* ones also for the baselines")
    p.add_argument("--budget-s", type=float, default=600.0, help="training seconds per model (0: the configs' max_steps)")
    p.add_argument("--steps-from-config", action="store_true", help="same as --budget-s 0")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--baselines", nargs="*", default=DEFAULT_BASELINES, choices=list(BASELINE_KINDS))
    p.add_argument("--vae-overrides", nargs="*", default=[], metavar="KEY=VALUE", help="for every baseline run")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--metrics", nargs="+", default=["factorvae", "dci", "mig", "infomec"])
    p.add_argument("--full-protocol", action="store_true", help="published metric sample sizes instead of --fast")
    p.add_argument("--set", dest="metric_sets", action="append", default=[], metavar="METRIC.KEY=VALUE",
                   help="metric protocol override passed to `ldm-dis evaluate --set` (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once")
    p.add_argument("--threads", type=int, default=0, help="threads per run (default: 1 with --jobs > 1, else all cores)")
    p.add_argument("--runs-dir", default="runs/reproduce")
    p.add_argument("--reuse", action="store_true", help="keep runs whose eval/metrics.json exists (resume)")
    p.add_argument("--results", default=str(ROOT / "docs" / "results.md"), help="'' to print only")
    p.add_argument("--section", default="reproduce", help="name of the marked section of --results")
    return p.parse_args(argv)


def run_all(todo: list[Run], args, threads: int, finished) -> None:
    """``todo`` in ``args.jobs`` processes at once, with a progress bar; ``finished(run)`` after each."""
    commands = {id(r): run_commands(r, args.metrics, threads, not args.full_protocol, args.metric_sets) for r in todo}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool, \
            tqdm(total=len(todo), unit="run", desc="reproduce", dynamic_ncols=True) as bar:
        futures = {pool.submit(execute, run, commands[id(run)], threads): run for run in todo}
        for future in as_completed(futures):
            try:
                future.result()
            except BaseException:
                for other in futures:
                    other.cancel()
                tqdm.write("a run failed; waiting for the runs in progress to end (--reuse keeps the finished ones)")
                raise
            bar.update(1)
            finished(futures[future])


def main(argv=None) -> int:
    started = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.jobs < 1:
        raise SystemExit("--jobs must be at least 1")
    budget = 0.0 if args.steps_from_config else args.budget_s
    threads = args.threads or (1 if args.jobs > 1 else resolve_jobs(-1))
    torch.set_num_threads(threads)  # the first stage and the step timings run as the runs will
    runs_dir = Path(args.runs_dir)

    # the plan first: a missing baseline config fails before anything trains
    ldm_overrides = [f"run.first_stage_cache={runs_dir / '.first_stage'}", *args.overrides]
    base = load_config(args.config, ldm_overrides)
    check_ablation_config(base, args.variants)
    runs = plan(args.config, ldm_overrides, args.variants, [*data_overrides(args.overrides), *args.vae_overrides],
                args.baselines, args.seeds, runs_dir, base)
    todo = [r for r in runs if not (args.reuse and r.done)]

    first_stage = None
    if args.variants:  # before any run starts: parallel runs would race on the cache
        first_stage = prepare_first_stage(base, runs_dir, need_seconds=budget > 0)
        print(f"first stage: {first_stage.path}; {first_stage.source}", flush=True)
        for run in runs:
            if run.is_ldm:
                run.overrides.append(f"model.first_stage.checkpoint={first_stage.path}")
    per_step = set_steps(todo, budget, first_stage) if budget > 0 else {}

    # with --reuse a reproduction spans several invocations: its wall time is their sum
    record = runs_dir / "reproduce.json"
    earlier = json.loads(record.read_text()) if args.reuse and record.is_file() else {}
    meta = {"command": "python benchmarks/reproduce.py " + shlex.join(argv),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(),
            "dataset": base.data.name, "budget_s": budget, "jobs": args.jobs, "threads": threads, "seeds": args.seeds,
            "protocol": "published" if args.full_protocol else "fast",
            "first_stage": None if first_stage is None else {"path": str(first_stage.path),
                                                              "seconds": first_stage.seconds, "source": first_stage.source},
            "invocations": earlier.get("invocations", 0) + 1, "total_s": earlier.get("total_s") or 0.0}
    rows = {id(r): read_row(r, first_stage, per_step) for r in runs if r.done and args.reuse}

    def finished(run: Run) -> None:
        rows[id(run)] = read_row(run, first_stage, per_step)
        tqdm.write(run_line(rows[id(run)]))
        elapsed = meta["total_s"] + time.perf_counter() - started
        write_rows(runs_dir, [rows[id(r)] for r in runs if id(r) in rows], {**meta, "total_s": elapsed})

    print(f"{len(runs)} runs, {len(runs) - len(todo)} reused, {args.jobs} at once, {threads} thread(s) each", flush=True)
    run_all(todo, args, threads, finished)

    ordered = [rows[id(r)] for r in runs]
    meta["total_s"] += time.perf_counter() - started
    write_rows(runs_dir, ordered, meta)
    section = section_text(ordered, meta, args.variants, args.baselines)
    if args.results:
        write_results(Path(args.results), section, args.section)
    print("\n" + section)
    print(f"\nper-run rows: {record}, {runs_dir / 'reproduce.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
