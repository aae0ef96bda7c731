"""Learning curves: how disentanglement grows with the number of training images seen, for several models.

    python benchmarks/learning_curve.py --images 25000 50000 100000 200000 400000 --seeds 0 1
    python benchmarks/learning_curve.py --resume                  # grow the curves of an earlier sitting
    python benchmarks/learning_curve.py --curves ldm_dyga_sd \\
        --curve pdae_weight quickstart.yaml model.diffusion.loss_weighting=pdae --images 100000 --seeds 0 1

Curves. Built in (``--curves``): ``ldm_dyga_sd`` (``configs/quickstart.yaml`` with the paper's Skip Dropout,
p = 0.2 at the 2x2 level: LDM + DyGA + Skip Dropout), ``ldm_dyga`` (the quickstart as it is: DyGA, Skip
Dropout off), ``ldm`` (the same LDM without DyGA and Skip Dropout: Table 4's baseline), and the VAE baselines
``betavae`` and ``factorqvae`` (``configs/baselines/cpu_<kind>.yaml``, the same data). ``--curve NAME CONFIG
[KEY=VALUE ...]`` adds a curve of any config and overrides (repeatable): a lever to compare at a fixed
budget. The LDM curves share their VQ-GAN first stage, one per first-stage config (a curve that changes
``model.first_stage.*`` gets its own), trained (or found in ``<runs-dir>/.first_stage``) before any run;
its CPU seconds are charged to each curve that uses it.

Each (curve, seed) is one run folder, ``<runs-dir>/<curve>/seed<k>``, trained in segments: up to the first
number of ``--images`` (steps = ceil(images / batch size)), scored, then resumed to the next number, and so
on. Resume is bitwise exact, so a curve grown over several sittings is the curve of one uninterrupted run.
Scores at each point: ``ldm-dis evaluate --fast`` (``--metrics``, default DCI, FactorVAE score and MIG),
plus, for every factor, the largest mutual information of any unit with it (from MIG's matrix, 20-bin
discretised codes, nats) as a fraction of the factor's entropy log(size).

CPU seconds: user + system time of the training processes (``os.wait4`` of each one, so that runs in
parallel do not count each other), summed over the segments; evaluation is not counted. The x-axis
"images seen" is what the runs were given; "CPU seconds" is what they cost on this machine (robust to
another job on the other core, unlike wall time). A VAE's schedule depends on its length (cosine annealing of the lr over
``model.baseline.lr_anneal_steps``): it is set once, from the largest ``--images`` of the first sitting,
and kept when the curve grows.

Writes ``<runs-dir>/learning_curve.csv`` (one line per run and point), ``learning_curve.json``,
``learning_curve.png`` (each metric against images seen and against CPU seconds; one line per curve,
the mean over seeds with a band from the lowest to the highest seed) and the section ``--section`` of
``--results`` (docs/results.md) with the command, date, machine and wall time. The CSV, JSON and PNG are
rewritten after every scored point, so a sitting stopped by hand keeps its rows and its wall time up to
its last point.

``--report`` trains nothing: it writes the CSV, figure and section from the points scored so far. With
``--from DIR ...`` it also takes runs from other runs-dirs (each (curve, seed) from the first of
``--runs-dir``, then the ``--from`` folders in order, that has scored it), so that curves trained in
separate sittings, for example a lever paired with a curve trained earlier on the same first stage, share
one table and figure in ``--runs-dir``; the section lists each folder's sittings.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from _common import write_results
from reproduce import PAPER_SKIP_DROPOUT, ROOT, baseline_config, cli, machine, mean_std, prepare_first_stage
from tqdm import tqdm

from ldm_dis.config.loading import load_config
from ldm_dis.metrics.parallel import resolve_jobs
from ldm_dis.training.checkpoint import latest_checkpoint

# built-in curve -> (config, overrides); baselines are resolved by baseline_config
LDM_CURVES = {
    "ldm_dyga_sd": ("quickstart.yaml", [f"model.unet.skip_dropout={PAPER_SKIP_DROPOUT}"]),
    "ldm_dyga": ("quickstart.yaml", []),
    "ldm": ("quickstart.yaml", ["model.bottleneck.kind=none", "model.unet.skip_dropout=0"]),
}
VAE_CURVES = ("betavae", "factorqvae")
LABELS = {"ldm_dyga_sd": "LDM + DyGA + Skip Dropout", "ldm_dyga": "LDM + DyGA (the quickstart)", "ldm": "LDM",
          "betavae": "beta-VAE", "factorqvae": "FactorQVAE"}
# column -> (metric, key in metrics.json's scores)
SCORES = {"DCI D": ("dci", "disentanglement"), "FactorVAE": ("factorvae", "eval_accuracy"),
          "MIG": ("mig", "discrete_mig"), "InfoM": ("infomec", "infom")}
LOG_TAIL = 30


@dataclass
class Curve:
    name: str
    config: str
    overrides: list[str]
    is_ldm: bool
    label: str = ""
    first_stage: Path | None = None  # LDM: the VQ-GAN weights it trains on
    charge: float = 0.0  # LDM: CPU seconds of that first stage, added to the curve's


@dataclass
class RunState:
    """One (curve, seed): its folder and what ``state.json`` there records of the points done so far."""

    curve: Curve
    seed: int
    folder: Path
    points: list[dict] = field(default_factory=list)  # one per finished number of images
    cpu_s: float = 0.0  # training CPU seconds so far (first stage excluded)
    anneal_steps: int | None = None  # VAE: lr_anneal_steps fixed at the first sitting

    @property
    def state_file(self) -> Path:
        return self.folder / "curve_state.json"

    def load(self) -> None:
        if self.state_file.is_file():
            saved = json.loads(self.state_file.read_text())
            self.points, self.cpu_s, self.anneal_steps = saved["points"], saved["cpu_s"], saved.get("anneal_steps")

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"points": self.points, "cpu_s": self.cpu_s, "anneal_steps": self.anneal_steps}, indent=1))
        os.replace(tmp, self.state_file)

    def done(self, images: int) -> bool:
        return any(p["images"] == images for p in self.points)


# ------------------------------------------------------------------------------------- the plan
def build_curves(names: list[str], extra: list[list[str]], base_cfg) -> list[Curve]:
    curves = []
    for name in names:
        if name in LDM_CURVES:
            config, overrides = LDM_CURVES[name]
            curves.append(Curve(name, config, list(overrides), True, LABELS[name]))
        elif name in VAE_CURVES:
            curves.append(Curve(name, baseline_config(base_cfg, name), [], False, LABELS[name]))
        else:
            raise SystemExit(f"unknown curve {name!r}; built in: {', '.join([*LDM_CURVES, *VAE_CURVES])} "
                             "(add others with --curve NAME CONFIG [KEY=VALUE ...])")
    for spec in extra:
        if len(spec) < 2:
            raise SystemExit(f"--curve needs NAME CONFIG [KEY=VALUE ...], got {spec}")
        name, config, *overrides = spec
        kind = load_config(config, overrides).model.kind
        curves.append(Curve(name, config, overrides, kind == "ldm", name))
    seen = set()
    for c in curves:
        if c.name in seen:
            raise SystemExit(f"curve name {c.name!r} given twice")
        seen.add(c.name)
    return curves


def steps_for(images: int, batch_size: int) -> int:
    return max(1, math.ceil(images / batch_size))


def factor_fractions(metrics: dict, factor_sizes: list[int]) -> list[float]:
    """Largest MI of any code with each factor (MIG's (codes, factors) matrix, nats) / log(factor size)."""
    mi = np.asarray(metrics["matrices"]["mig"]["mutual_info"])  # (d, F)
    best = mi.max(axis=0)
    return [float(b / math.log(s)) if s > 1 else float("nan") for b, s in zip(best, factor_sizes)]


def recorded_first_stages(curves: list[Curve], dirs: dict[str, list[Path]]) -> dict[str, float]:
    """For ``--report``: give each LDM curve its first stage and CPU seconds as a sitting recorded them, from the
    first of its ``dirs[curve.name]`` whose ``first_stage_cpu.json`` knows that first stage; trains nothing
    (a first stage recorded nowhere is charged 0). Returns {weights file: CPU s} of the first stages used."""
    from ldm_dis.training.pipeline import first_stage_hash

    records = {d: json.loads((d / "first_stage_cpu.json").read_text()) if (d / "first_stage_cpu.json").is_file() else {}
               for d in dict.fromkeys(d for folders in dirs.values() for d in folders)}  # each read once
    used: dict[str, float] = {}
    for curve in curves:
        if not curve.is_ldm:
            continue
        cfg = load_config(curve.config, curve.overrides)
        given = cfg.model.first_stage.checkpoint
        cached = f"{os.sep}{first_stage_hash(cfg)}{os.sep}"  # <runs-dir>/.first_stage/<hash>/checkpoints/...
        for d in dirs[curve.name]:
            known = records[d]
            found = [k for k in known if (k == str(given) if given else cached in k)]
            if found:
                curve.first_stage, curve.charge = Path(found[0]), known[found[0]]
                used[found[0]] = curve.charge
                break
    return used


def prepare_first_stages(curves: list[Curve], runs_dir: Path, threads: int) -> dict[str, float]:
    """Train (or find in ``<runs-dir>/.first_stage``) the VQ-GAN of every LDM curve, once per first-stage
    config, and give each curve its weights and their CPU seconds. Returns {weights file: CPU s}."""
    from ldm_dis.training.pipeline import first_stage_hash

    record = runs_dir / "first_stage_cpu.json"
    known = json.loads(record.read_text()) if record.is_file() else {}
    by_hash: dict[str, tuple[Path, float]] = {}
    for curve in curves:
        if not curve.is_ldm:
            continue
        cfg = load_config(curve.config, [f"run.first_stage_cache={runs_dir / '.first_stage'}", *curve.overrides])
        given = cfg.model.first_stage.checkpoint
        if given:  # a first stage from elsewhere: its cost is not known here
            curve.first_stage, curve.charge = Path(given), known.get(str(given), 0.0)
            continue
        key = first_stage_hash(cfg)
        if key not in by_hash:
            cpu_before = time.process_time()
            found = prepare_first_stage(cfg, runs_dir, need_seconds=True)
            if str(found.path) not in known:  # trained now: its CPU time; from a cache: wall x threads, an estimate
                spent = time.process_time() - cpu_before
                known[str(found.path)] = spent if spent > 10 else (found.seconds or 0.0) * threads
            by_hash[key] = (found.path, known[str(found.path)])
            print(f"first stage {key}: {found.path}; {found.source}; {by_hash[key][1]:.0f} CPU s", flush=True)
        curve.first_stage, curve.charge = by_hash[key]
    runs_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(known, indent=1))
    return known


# ------------------------------------------------------------------------------------------ runs
def run_logged(command: list[str], log: Path, threads: int) -> float:
    """Run ``command`` with output appended to ``log``; returns its CPU seconds; a failure raises with the log's tail.

    The CPU seconds are those of this child (and the processes it waited for), from ``os.wait4`` of its pid:
    ``getrusage(RUSAGE_CHILDREN)`` before and after would also count any sibling run (``--jobs`` > 1 runs
    several from threads of this process) that ended in between.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(log, "a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # e.g. Ctrl-C: do not leave the run training on
            proc.kill()
            proc.wait()
            raise
        proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code:
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-LOG_TAIL:]
        raise RuntimeError(f"command failed (exit {code}); log: {log}\n" + "\n".join(tail))
    return usage.ru_utime + usage.ru_stime


def train_segment(run: RunState, cfg, steps: int, threads: int, final_steps: int) -> float:
    """Train ``run`` up to ``steps`` (fresh, or resumed from its newest checkpoint); returns CPU seconds."""
    every = max(1, min(steps, 1000))  # a kill loses at most 1,000 steps
    schedule = [f"train.max_steps={steps}", f"train.ckpt_every={every}", "train.keep_last=2", "train.sample_every=0",
                f"train.log_every={max(1, min(cfg.train.log_every, steps))}"]
    log = run.folder / "stdout.log"
    run.folder.mkdir(parents=True, exist_ok=True)
    if latest_checkpoint(run.folder) is None:
        fixed = [f"run.dir={run.folder}", f"train.seed={run.seed}", f"run.name={run.curve.name}-seed{run.seed}"]
        if run.curve.is_ldm:
            fixed.append(f"model.first_stage.checkpoint={run.curve.first_stage}")
        else:
            run.anneal_steps = run.anneal_steps or final_steps
            fixed.append(f"model.baseline.lr_anneal_steps={run.anneal_steps}")
        command = cli("train", "--config", run.curve.config, *run.curve.overrides, *fixed, *schedule)
    else:  # the run's own config.yaml; only the schedule changes
        command = cli("train", "--resume", f"run.dir={run.folder}", *schedule)
    return run_logged(command, log, threads)


def score_point(run: RunState, steps: int, metrics: list[str], threads: int) -> dict:
    out = run.folder / "curve_eval" / f"step_{steps:07d}"
    checkpoint = run.folder / "checkpoints" / f"step_{steps:07d}"
    command = cli("evaluate", "--checkpoint", checkpoint, "--metrics", *metrics, "--seed", run.seed, "--fast",
                  "--jobs", threads, "--out", out)
    run_logged(command, run.folder / "stdout.log", threads)
    return json.loads((out / "metrics.json").read_text())


# ----------------------------------------------------------------------------------------- output
def rows_of(runs: list[RunState], factor_names: list[str]) -> list[dict]:
    rows = []
    for run in runs:
        for p in sorted(run.points, key=lambda p: p["images"]):
            row = {"curve": run.curve.name, "seed": run.seed, "images": p["images"], "steps": p["steps"],
                   "cpu_s": round(p["cpu_s"], 1), **{k: p["scores"].get(k) for k in SCORES}}
            row.update({f"mi/{f}": v for f, v in zip(factor_names, p["mi_fraction"])})
            rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    fields = list(rows[0])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def panels_of(rows: list[dict], metrics: list[str], factor_names: list[str]) -> list[str]:
    shown = [c for c, (m, _) in SCORES.items() if m in metrics and any(r[c] is not None for r in rows)]
    return shown + [f"mi/{f}" for f in factor_names]


def draw(path: Path, rows: list[dict], curves: list[Curve], panels: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    from ldm_dis.viz.figures import save_figure

    axes_x = [("images", "training images seen"), ("cpu_s", "training CPU seconds")]
    fig, axes = plt.subplots(len(axes_x), len(panels), figsize=(2.6 * len(panels), 6.0), squeeze=False)
    colours = plt.get_cmap("tab10")
    budgets = sorted({r["images"] for r in rows})  # a tick at each: a short curve (25k-50k) has no decade tick
    for col, panel in enumerate(panels):
        for row_i, (x_key, x_label) in enumerate(axes_x):
            ax = axes[row_i][col]
            for i, curve in enumerate(curves):
                mine = [r for r in rows if r["curve"] == curve.name and r[panel] is not None]
                by_images = sorted({r["images"] for r in mine})
                if not by_images:
                    continue
                ys = [[r[panel] for r in mine if r["images"] == n] for n in by_images]
                xs = [float(np.mean([r[x_key] for r in mine if r["images"] == n])) for n in by_images]
                mean = [float(np.mean(y)) for y in ys]
                ax.plot(xs, mean, "o-", ms=3, color=colours(i), label=curve.label if row_i == 0 and col == 0 else None)
                if any(len(y) > 1 for y in ys):
                    ax.fill_between(xs, [min(y) for y in ys], [max(y) for y in ys], color=colours(i), alpha=0.2, lw=0)
            ax.set_xscale("log")
            if x_key == "images":
                ax.xaxis.set_major_locator(ticker.FixedLocator(budgets))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(_short))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.grid(alpha=0.3)
            ax.set_xlabel(x_label, fontsize=8)
            if row_i == 0:
                title = panel.replace("mi/", "max MI / H: ") if panel.startswith("mi/") else panel
                ax.set_title(title, fontsize=9)
            if panel.startswith("mi/"):
                ax.set_ylim(0, 1.05)
                ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            ax.tick_params(labelsize=7)
    fig.legend(loc="lower center", ncol=max(1, len(curves)), fontsize=8, frameon=False)
    fig.suptitle("Learning curves on the same data: mean over seeds, band = lowest to highest seed; "
                 "max MI / H = largest mutual information of any unit with the factor / its entropy (dotted: 1/2)",
                 fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    save_figure(fig, path, dpi=130)


def _short(x: float, _pos=None) -> str:
    """Tick labels 25k, 1.5M, 300."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


SITTING_KEYS = ("command", "date", "machine", "jobs", "threads", "invocations", "total_s")  # of a sitting, in its JSON


def sittings_of(dirs: list[Path]) -> list[dict]:
    """What each runs-dir's ``learning_curve.json`` records of the sittings that trained its runs (a merged
    report's own record gives the sittings it lists)."""
    out = []
    for d in dirs:
        meta = json.loads((d / "learning_curve.json").read_text())
        for s in meta.get("sittings") or [{"runs_dir": str(d), **{k: meta.get(k) for k in SITTING_KEYS}}]:
            if s not in out:
                out.append(s)
    return out


def _wall(meta: dict, resumed: bool = True) -> str:
    return (f"wall time {meta['total_s'] / 60:.1f} min"
            + (f" over {meta['invocations']} sittings" + (" (--resume)" if resumed else "") if meta["invocations"] > 1 else ""))


def section_text(meta: dict, rows: list[dict], curves: list[Curve], panels: list[str]) -> str:
    spread = "one line per seed" if meta.get("per_seed") else "mean ± std over seeds"
    if meta.get("sittings"):  # a report of runs from several runs-dirs
        head = ["Commands, one per runs-dir the runs come from:", "",
                *[f"- `{s['command']}` ({s['runs_dir']}; {s['date']}; {s['machine']}; {s['jobs']} run(s) at once, "
                  f"{s['threads']} thread(s) each; {_wall(s)})" for s in meta["sittings"]], "",
                f"Table and figure: `{meta['report_command']}`; seeds {' '.join(map(str, meta['seeds']))}; "
                f"{_wall(meta, resumed=False)} in all."]
    else:
        head = [f"Command: `{meta['command']}`", "",
                (f"{meta['date']}; {meta['machine']}; {meta['jobs']} run(s) at once, {meta['threads']} thread(s) each; "
                 f"seeds {' '.join(map(str, meta['seeds']))}; {_wall(meta)}.")]
    lines = [f"## {meta.get('title') or 'Learning curves on synth-shapes3d (CPU)'}", "", *head, "",
             (f"Scores: fast metric protocol, seeded with the training seed; {spread}. `max MI / H`: "
              "the largest mutual information of any unit with the factor (20-bin codes), over log(factor size). "
              "CPU s: training processes only; LDM rows include their first stage's CPU seconds "
              f"({', '.join(sorted({f'{c.charge:.0f}' for c in curves if c.is_ldm}))})."
              if any(c.is_ldm for c in curves) else
              f"Scores: fast metric protocol, seeded with the training seed; {spread}."), "",
             *table_lines(rows, curves, panels, meta.get("per_seed", False))]
    if isinstance(meta.get("asset"), str) and meta["asset"]:  # the copy of the figure, relative to docs/
        lines += ["", f"![{meta.get('title') or 'learning curves'}]({meta['asset']})"]
    return "\n".join(lines).rstrip("\n")


def table_lines(rows: list[dict], curves: list[Curve], panels: list[str], per_seed: bool) -> list[str]:
    """The section's table: a line per curve and budget (mean ± std over seeds), or with ``per_seed`` a line
    per curve, seed and budget (each run's own scores: two seeds that disagree show it)."""
    digits = {p: 2 if p.startswith("mi/") else 3 for p in panels}
    lines = ["| curve | " + ("seed | " if per_seed else "") + "images | CPU s | "
             + " | ".join(p.replace("mi/", "MI/H ") for p in panels) + " |",
             "| --- |" + (" ---: |" if per_seed else "") + " ---: | ---: |" + " ---: |" * len(panels)]
    for curve in curves:
        mine = [r for r in rows if r["curve"] == curve.name]
        groups = sorted({(r["seed"], r["images"]) if per_seed else (None, r["images"]) for r in mine})
        for seed, n in groups:
            at = [r for r in mine if r["images"] == n and (seed is None or r["seed"] == seed)]
            cells = [curve.label, *([str(seed)] if per_seed else []), f"{n:,}",
                     f"{np.mean([r['cpu_s'] for r in at]):.0f}",
                     *[mean_std([r[p] for r in at], digits[p]) for p in panels]]  # per seed: one value
            lines.append("| " + " | ".join(cells) + " |")
    return lines


# ------------------------------------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--curves", nargs="*", default=["ldm_dyga_sd", "ldm", "betavae", "factorqvae"],
                   help="built-in curves (default: %(default)s)")
    p.add_argument("--curve", dest="extra", action="append", nargs="+", default=[], metavar="NAME CONFIG [KEY=VALUE]",
                   help="another curve: a name, a config and its overrides (repeatable)")
    p.add_argument("--overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides for every curve (e.g. data.* or train.batch_size)")
    p.add_argument("--images", nargs="+", type=int, default=[25_000, 50_000, 100_000, 200_000, 400_000],
                   help="numbers of training images at which every run is scored (default: %(default)s)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--metrics", nargs="+", default=["dci", "factorvae", "mig"], help="ldm-dis evaluate metrics (mig is always added)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="threads per run (default: 1 with --jobs > 1, else all cores)")
    p.add_argument("--runs-dir", default="runs/learning_curve")
    p.add_argument("--resume", action="store_true", help="keep the points already scored and grow the curves")
    p.add_argument("--report", action="store_true",
                   help="train nothing: write the CSV, figure and section from the points scored so far "
                        "(e.g. of a sitting that was stopped)")
    p.add_argument("--from", dest="from_dirs", nargs="+", default=[], metavar="DIR",
                   help="with --report: also take each (curve, seed) not scored in --runs-dir from these runs-dirs "
                        "(the first that has it)")
    p.add_argument("--results", default=str(ROOT / "docs" / "results.md"), help="'' to print only")
    p.add_argument("--section", default="learning-curve")
    p.add_argument("--title", default="", help="the section's heading (default: Learning curves on synth-shapes3d (CPU))")
    p.add_argument("--asset", default="", help="also copy the PNG here (e.g. assets/learning_curve.png)")
    p.add_argument("--per-seed", action="store_true",
                   help="the section's table has a line per seed (each run's scores) instead of the mean ± std over seeds")
    return p.parse_args(argv)


def advance(run: RunState, images: list[int], metrics: list[str], threads: int, sizes,
            on_point: Callable[[], object] = lambda: None) -> None:
    """Train and score ``run`` at each number of ``images`` it has not reached yet; ``on_point()`` after each."""
    cfg = load_config(run.curve.config, run.curve.overrides)
    final_steps = steps_for(max(images), cfg.train.batch_size)
    for n in sorted(images):
        if run.done(n):
            continue
        steps = steps_for(n, cfg.train.batch_size)
        run.cpu_s += train_segment(run, cfg, steps, threads, final_steps)
        run.save()  # the CPU seconds of a finished segment are kept even if its scoring is interrupted
        result = score_point(run, steps, metrics, threads)
        run.points.append({"images": n, "steps": steps, "cpu_s": run.cpu_s + run.curve.charge,
                           "scores": {c: result["scores"].get(m, {}).get(k) for c, (m, k) in SCORES.items()},
                           "mi_fraction": factor_fractions(result, sizes)})
        run.save()
        on_point()
        p = run.points[-1]
        tqdm.write(f"{run.curve.name} seed {run.seed}: {n:,} images, {p['cpu_s']:.0f} CPU s | "
                   + " ".join(f"{c} {v:.3f}" for c, v in p["scores"].items() if v is not None))


def main(argv=None) -> int:
    started = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.jobs < 1:
        raise SystemExit("--jobs must be at least 1")
    if any(n < 1 for n in args.images):
        raise SystemExit("--images must be positive")
    metrics = list(dict.fromkeys([*args.metrics, "mig"]))
    threads = args.threads or (1 if args.jobs > 1 else resolve_jobs(-1))
    torch.set_num_threads(threads)
    runs_dir = Path(args.runs_dir)
    args.resume = args.resume or args.report
    if not args.resume and (runs_dir / "learning_curve.json").is_file():
        raise SystemExit(f"{runs_dir} holds curves already: pass --resume to grow them, or choose another --runs-dir")
    if args.from_dirs and not args.report:
        raise SystemExit("--from takes the runs of other runs-dirs into a report: only with --report")
    sources = list(dict.fromkeys([runs_dir, *map(Path, args.from_dirs)]))  # where a report looks for each run
    for d in sources[1:]:
        if not (d / "learning_curve.json").is_file():
            raise SystemExit(f"--from {d}: {d / 'learning_curve.json'} not found: no sitting has scored a point there")
    if args.report and not any((d / "learning_curve.json").is_file() for d in sources):  # else it would train
        raise SystemExit(f"--report: {runs_dir / 'learning_curve.json'} not found: no sitting has scored a point in "
                         f"{runs_dir}; give the --runs-dir of one (or others with --from)")

    base = load_config("quickstart.yaml", [f"run.first_stage_cache={runs_dir / '.first_stage'}", *args.overrides])
    curves = build_curves(args.curves, args.extra, base)
    for c in curves:
        c.overrides[:0] = args.overrides
    from ldm_dis.data import build_dataset

    dataset = build_dataset(base.data)
    factor_names, sizes = list(dataset.factor_names), list(dataset.factor_sizes)

    def source_of(curve: Curve, seed: int) -> Path:
        """The runs-dir a report takes this run from: the first that has scored it (training: --runs-dir)."""
        if args.report:
            for d in sources:
                if (d / curve.name / f"seed{seed}" / "curve_state.json").is_file():
                    return d
        return runs_dir

    runs = [RunState(c, s, source_of(c, s) / c.name / f"seed{s}") for s in args.seeds for c in curves]
    for run in runs:
        run.load()
    if args.report:  # the first stages as recorded where each curve's runs were found (a report never trains one)
        found = {c.name: [r.folder.parents[1] for r in runs if r.curve is c and r.points] for c in curves}
        charges = recorded_first_stages(curves, {k: list(dict.fromkeys([*v, *sources])) for k, v in found.items()})
    else:
        charges = prepare_first_stages(curves, runs_dir, threads)  # before any run: parallel runs would race on the cache
    record = runs_dir / "learning_curve.json"
    earlier = json.loads(record.read_text()) if args.resume and record.is_file() else {}
    meta = {"command": "python benchmarks/learning_curve.py " + shlex.join(argv),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(),
            "jobs": args.jobs, "threads": threads, "seeds": args.seeds,
            "asset": os.path.relpath(Path(args.asset).resolve(), ROOT / "docs") if args.asset else "",
            **({k: earlier[k] for k in ("command", "date", "jobs", "threads") if k in earlier} if args.report else {}),
            "first_stage_cpu_s": charges, "title": args.title, "per_seed": args.per_seed,
            "invocations": earlier.get("invocations", 0) + (0 if args.report else 1), "total_s": earlier.get("total_s", 0.0)}
    if args.report and len(sources) > 1:  # a merged report: the sittings of every folder it took runs from
        used = list(dict.fromkeys(r.folder.parents[1] for r in runs if r.points))
        if not used:
            raise SystemExit(f"--report: no run of curves {', '.join(c.name for c in curves)} and seeds "
                             f"{' '.join(map(str, args.seeds))} has scored a point in {', '.join(map(str, sources))}")
        meta["sittings"] = sittings_of(used)
        meta["report_command"] = meta.pop("command")
        for k in ("date", "jobs", "threads"):
            meta.pop(k, None)
        meta["invocations"] = sum(s["invocations"] for s in meta["sittings"])
        meta["total_s"] = sum(s["total_s"] for s in meta["sittings"])

    def write_all() -> str:
        rows = rows_of(runs, factor_names)
        meta_now = {**meta, "total_s": meta["total_s"] + time.perf_counter() - started}
        runs_dir.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({**meta_now, "rows": rows}, indent=1))
        write_csv(runs_dir / "learning_curve.csv", rows)
        panels = panels_of(rows, metrics, factor_names)
        if rows:
            draw(runs_dir / "learning_curve.png", rows, curves, panels)
            if args.asset:
                Path(args.asset).write_bytes((runs_dir / "learning_curve.png").read_bytes())
        return section_text(meta_now, rows, curves, panels)

    lock = threading.Lock()

    def write_point() -> None:
        """After every scored point: a sitting stopped later keeps its rows, figure and wall time so far."""
        with lock:
            write_all()

    todo = [] if args.report else [r for r in runs if not all(r.done(n) for n in args.images)]
    print(f"{len(runs)} runs ({len(curves)} curves x {len(args.seeds)} seeds), {len(runs) - len(todo)} complete; "
          f"{args.jobs} at once, {threads} thread(s) each", flush=True)
    from concurrent.futures import ThreadPoolExecutor, as_completed

    with ThreadPoolExecutor(max_workers=args.jobs) as pool, tqdm(total=len(todo), unit="run", desc="curves") as bar:
        futures = {pool.submit(advance, r, args.images, metrics, threads, sizes, write_point): r for r in todo}
        for future in as_completed(futures):
            future.result()
            bar.update(1)
    section = write_all()
    if args.results:
        write_results(Path(args.results), section, args.section)
    print("\n" + section)
    print(f"\nrows: {runs_dir / 'learning_curve.csv'}; figure: {runs_dir / 'learning_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
