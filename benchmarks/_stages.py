"""Where one training step's time goes: per-stage wall/CPU milliseconds and FLOPs, for the bare step
(``training_step`` called in a plain loop) and for the same step inside ``ldm-dis train``.

Each context runs in its own worker process; the coordinator lets one worker at a time run a block of
steps while the others wait (blocked on a pipe), round after round, so that every context sees the same
drift of the machine's load. Stages are timed by wrapping the task's own methods on the instance (the
code under test is unchanged); a stage's time excludes the stages called inside it.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LDM_STAGES = ("render", "encode", "encode, in the background", "extractor", "alignment", "unet forward", "backward",
              "optimizer", "ema", "other")
BACKGROUND_ENCODE = "encode, in the background"  # overlapped with the step: not part of its time
VQGAN_STAGES = ("render", "encode", "quantize", "decode", "loss", "backward", "optimizer",
                "discriminator", "other")


class StageClock:
    """Exclusive wall and CPU seconds (and optionally FLOPs) per named stage, accumulated until ``take``."""

    def __init__(self):
        self.wall, self.cpu, self.flops = defaultdict(float), defaultdict(float), defaultdict(float)
        self.stack = []  # [stage, wall0, cpu0, flops0, child_wall, child_cpu, child_flops]
        self.flop_counter = None  # a torch FlopCounterMode while FLOPs are counted
        self.background = defaultdict(lambda: [0.0, 0.0])  # stage -> [wall, thread CPU] of other threads
        self.lock = threading.Lock()

    def _flops(self) -> float:
        return float(self.flop_counter.get_total_flops()) if self.flop_counter is not None else 0.0

    def wrap(self, obj, attr: str, stage: str) -> None:
        """Replace ``obj.attr`` (a bound method or callable attribute) by a timed call of itself."""
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            self.stack.append([stage, time.perf_counter(), time.process_time(), self._flops(), 0.0, 0.0, 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                name, w0, c0, f0, cw, cc, cf = self.stack.pop()
                w, c, f = time.perf_counter() - w0, time.process_time() - c0, self._flops() - f0
                self.wall[name] += w - cw
                self.cpu[name] += c - cc
                self.flops[name] += f - cf
                if self.stack:
                    parent = self.stack[-1]
                    parent[4] += w
                    parent[5] += c
                    parent[6] += f

        setattr(obj, attr, timed)

    def wrap_background(self, obj, attr: str, stage: str) -> None:
        """Like ``wrap`` for a callable that runs in another thread: its wall and thread CPU seconds are
        kept apart (``take()["background"]``), outside the stack of the caller's stages."""
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.background[stage][0] += time.perf_counter() - w0
                    self.background[stage][1] += time.thread_time() - c0

        setattr(obj, attr, timed)

    def take(self) -> dict:
        with self.lock:
            background, self.background = dict(self.background), defaultdict(lambda: [0.0, 0.0])
        out = {"wall": dict(self.wall), "cpu": dict(self.cpu), "flops": dict(self.flops), "background": background}
        self.wall, self.cpu, self.flops = defaultdict(float), defaultdict(float), defaultdict(float)
        return out


def instrument_ldm(task, clock: StageClock) -> None:
    if hasattr(task, "_latents"):
        clock.wrap(task, "_latents", "encode")
    else:  # a checkout whose step calls the model's loss directly
        clock.wrap(task.model, "latents", "encode")
    if getattr(task, "_encoder", None) is not None:  # the next batch's latents, computed during the U-Net
        clock.wrap_background(task._encoder, "encode", BACKGROUND_ENCODE)
    clock.wrap(task.feature_extractor, "scalars", "extractor")
    clock.wrap(task.feature_extractor, "tokens", "extractor")
    clock.wrap(task.bottleneck, "forward", "alignment")
    clock.wrap(task, "_unet_forward", "unet forward")
    clock.wrap(task.accelerator, "backward", "backward")
    clock.wrap(task.optimizer, "step", "optimizer")
    clock.wrap(task.optimizer, "zero_grad", "optimizer")
    clock.wrap(task.ema_unet, "update", "ema")
    if task.ema_feature_extractor is not None:
        clock.wrap(task.ema_feature_extractor, "update", "ema")


def instrument_vqgan(task, clock: StageClock) -> None:
    clock.wrap(task.first_stage, "encode", "encode")
    clock.wrap(task.first_stage, "quantize", "quantize")
    clock.wrap(task.first_stage, "decode_quantized", "decode")
    clock.wrap(task.loss, "generator_loss", "loss")
    clock.wrap(task.accelerator, "backward", "backward")
    for opt in (task.optimizer, task.disc_optimizer):
        clock.wrap(opt, "step", "optimizer")
        clock.wrap(opt, "zero_grad", "optimizer")
    clock.wrap(task.loss, "discriminator_loss", "discriminator")


# ----------------------------------------------------------------------------------------- worker
def worker(spec: dict) -> None:
    """One context (``spec["context"]``: bare | trainer) of one task (ldm | vqgan), run under the
    coordinator's control: it blocks before every ``block`` steps until told "go", and reports the
    block's per-step records on its pipe."""
    if spec.get("torch_first"):  # what a script that imports torch before ldm_dis gets: OpenMP's default waiting
        import torch
    import ldm_dis  # noqa: F401  (before torch: the OpenMP settings)
    import torch
    from torch.utils.data import dataloader

    from ldm_dis.training.data_order import StepBatchSampler
    from ldm_dis.training.ldm_task import LDMTask
    from ldm_dis.training.vqgan_task import VQGANTask

    for key, value in spec.get("torch", {}).items():
        getattr(torch, key)(value)  # e.g. {"set_num_threads": 1}
    ctl_in, ctl_out = os.fdopen(spec["fd_in"], "r"), os.fdopen(spec["fd_out"], "w")
    task_cls = LDMTask if spec["task"] == "ldm" else VQGANTask
    instrument = instrument_ldm if spec["task"] == "ldm" else instrument_vqgan
    clock = StageClock()
    state = {"n": 0, "records": [], "flops": None}

    original_next = dataloader._BaseDataLoaderIter.__next__

    def next_batch(self):  # the training loader's fetch (render + collate) is the "render" stage
        if not isinstance(getattr(self, "_index_sampler", None), StepBatchSampler):
            return original_next(self)
        holder = types.SimpleNamespace(next=lambda: original_next(self))
        clock.wrap(holder, "next", "render")
        return holder.next()

    dataloader._BaseDataLoaderIter.__next__ = next_batch

    original_prepare, original_step = task_cls.prepare, task_cls.training_step

    def prepare(self, accelerator):
        original_prepare(self, accelerator)
        instrument(self, clock)

    def send(message) -> None:
        ctl_out.write(json.dumps(message) + "\n")
        ctl_out.flush()

    def training_step(self, images, factors, step, acc):
        if state["flops"] is None and state["n"] >= spec["warmup"]:
            # one untimed step under the FLOP counter (same arithmetic as the timed ones)
            from torch.utils.flop_counter import FlopCounterMode

            clock.take()
            with FlopCounterMode(display=False) as counter:
                clock.flop_counter = counter
                out = original_step(self, images, factors, step, acc)
            clock.flop_counter = None
            state["flops"] = clock.take()["flops"]
            state["flops"]["other"] = counter.get_total_flops() - sum(state["flops"].values())
            if spec["task"] == "ldm" and state["flops"].get("encode", 0.0) < 1e6:  # encoded in another thread
                with FlopCounterMode(display=False) as counter, torch.no_grad():
                    self.first_stage.encode(images.contiguous(memory_format=torch.channels_last))
                state["flops"][BACKGROUND_ENCODE] = float(counter.get_total_flops())
            send({"ready": True, "flops": state["flops"], "threads": torch.get_num_threads(),
                  "batch": int(images.shape[0])})
            if ctl_in.readline().strip() != "go":
                os._exit(0)
            return out
        if state["flops"] is not None and state["n"] % spec["block"] == 0 and state["records"]:
            send(state["records"])
            state["records"] = []
            if ctl_in.readline().strip() != "go":
                os._exit(0)
        state["n"] += 1
        w0, c0 = time.perf_counter(), time.process_time()
        out = original_step(self, images, factors, step, acc)
        w, c = time.perf_counter() - w0, time.process_time() - c0
        stages = clock.take()  # includes the render of this step's batch, fetched just before
        if state["flops"] is not None:
            fitted = bool(getattr(getattr(self, "bottleneck", None), "is_fitted", False))
            state["records"].append({"wall": w, "cpu": c, "stages": stages, "fitted": fitted, "step": step})
        if spec["context"] == "bare" and spec.get("fit_at") and state["n"] == spec["fit_at"]:
            _fit_bottleneck(self, acc, spec)
        return out

    task_cls.prepare, task_cls.training_step = prepare, training_step
    if spec["context"] == "trainer":
        from ldm_dis.cli import main

        main(["train", "--config", spec["config"], *spec["overrides"]])
        send({"finished": True})
    else:
        _bare_loop(spec, task_cls)


def _bare_loop(spec: dict, task_cls) -> None:
    """``training_step`` in a plain loop, with the trainer's accelerator and data loader."""
    from ldm_dis.config.loading import load_config
    from ldm_dis.data import build_dataset
    from ldm_dis.training.data_order import training_loader
    from ldm_dis.training.rng import seed_everything
    from ldm_dis.training.trainer import make_accelerator

    cfg = load_config(spec["config"], spec["overrides"])
    if spec["task"] == "vqgan":
        from ldm_dis.training.pipeline import first_stage_config

        cfg = first_stage_config(cfg)
    acc = make_accelerator(cfg)
    dataset = build_dataset(cfg.data)
    seed_everything(cfg.train.seed)
    task = task_cls(cfg, dataset)
    task._bench_dataset = dataset
    task.prepare(acc)
    batches = iter(training_loader(dataset, cfg.train.batch_size, cfg.train.seed, 0, acc, cfg.data.num_workers))
    if hasattr(task, "batches"):  # as the trainer does
        batches = task.batches(batches)
    step = 0
    while True:
        images, factors = next(batches)
        task.training_step(images, factors, step, acc)
        step += 1


def _fit_bottleneck(task, acc, spec) -> None:
    """DyGA anchors for the bare loop, fitted as the trainer's epoch hook does (so alignment runs)."""
    from ldm_dis.training.data_order import ordered_loader

    trainer = types.SimpleNamespace(
        accelerator=acc, dataset=task._bench_dataset, run_dir=spec["run_dir"],
        eval_loader=lambda batch_size=None, indices=None: ordered_loader(task._bench_dataset, acc, 256, indices, 0),
    )
    task.on_epoch_end(0, trainer)


# ------------------------------------------------------------------------------------ coordinator
def _jiffies(pids=None) -> int:
    """CPU ticks used so far by the whole machine (``pids=None``) or by these processes and their descendants."""
    if pids is None:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(v) - v[3] - v[4]  # minus idle and iowait
    stats = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d.name)] = (int(f[1]), int(f[11]) + int(f[12]))  # parent, utime + stime
    mine, grew = set(pids), True
    while grew:
        more = {pid for pid, (parent, _) in stats.items() if parent in mine} - mine
        grew, mine = bool(more), mine | more
    return sum(stats[pid][1] for pid in mine if pid in stats)


def others_cores(pids, seconds: float = 3.0) -> float:
    """Cores used by processes other than ``pids`` (and their descendants) over the next ``seconds``."""
    b0, o0, t0 = _jiffies(), _jiffies(pids), time.perf_counter()
    time.sleep(seconds)
    return ((_jiffies() - b0) - (_jiffies(pids) - o0)) / os.sysconf("SC_CLK_TCK") / (time.perf_counter() - t0)


def run_contexts(contexts: list, rounds: int, block: int, warmup: int = 3, quiet=None) -> dict:
    """Run the contexts (dicts: name, task, context, config, overrides, env, torch, fit_at) interleaved:
    ``rounds`` rounds of ``block`` steps each (the first round is discarded). With ``quiet`` (cores),
    each round waits until other processes use at most that many cores for 3 s, and blocks during which
    they used more are dropped. Returns {name: {"records": [...], "dropped": n, "flops": {...},
    "threads": n, "batch": b}}; each record carries ``others`` (cores used by other processes)."""
    procs = []
    tmp = tempfile.mkdtemp(prefix="train_stages_")
    for c in contexts:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        run_dir = str(Path(tmp) / re.sub(r"[^A-Za-z0-9]+", "_", c["name"]))
        # anchors are fitted during the warm-up, so that every timed step aligns features
        spec = dict(c, block=block, warmup=max(warmup, c.get("fit_at", 0) + 2), fd_in=r1, fd_out=w2, run_dir=run_dir)
        if c["context"] == "trainer":
            spec["overrides"] = [*c["overrides"], f"run.dir={run_dir}/run", f"run.first_stage_cache={run_dir}/fs"]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **c.get("env", {})}
        if c.get("torch_first"):
            env.pop("OMP_WAIT_POLICY", None)  # as in a shell where nothing set it (importing ldm_dis here did)
        log = open(f"{run_dir}.log", "w")
        p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), json.dumps(spec)], env=env,
                             pass_fds=(r1, w2), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        os.close(r1)
        os.close(w2)
        reader = os.fdopen(r2, "r")
        first = reader.readline()  # one context sets up at a time: set-ups never overlap timed blocks
        if not first or "ready" not in json.loads(first):
            raise SystemExit(f"context {c['name']!r} failed; see {log.name}")
        procs.append({"name": c["name"], "proc": p, "w": os.fdopen(w1, "w"), "r": reader, **json.loads(first)})
    results = {p["name"]: {"records": [], "dropped": 0, "flops": p["flops"], "threads": p["threads"], "batch": p["batch"]}
               for p in procs}
    mine = [os.getpid()]
    for r in range(rounds):
        while quiet is not None and others_cores(mine) > quiet:
            pass
        for p in procs:
            b0, o0, t0 = _jiffies(), _jiffies(mine), time.perf_counter()
            p["w"].write("go\n")
            p["w"].flush()
            line = p["r"].readline()
            if not line:
                raise SystemExit(f"context {p['name']!r} died; see its log in {tmp}")
            others = max(0.0, ((_jiffies() - b0) - (_jiffies(mine) - o0)) / os.sysconf("SC_CLK_TCK") / (time.perf_counter() - t0))
            records = json.loads(line)
            if isinstance(records, dict):  # the trainer ran out of steps
                raise SystemExit(f"context {p['name']!r} finished its run early: raise train.max_steps")
            if r == 0:
                continue
            if quiet is not None and others > quiet:
                results[p["name"]]["dropped"] += len(records)
                continue
            results[p["name"]]["records"] += [dict(rec, others=others) for rec in records]
    for p in procs:
        p["w"].write("stop\n")
        p["w"].flush()
        p["proc"].wait(timeout=60)
    return results


def summarize(result: dict, stages) -> dict:
    """Medians over steps: per stage wall/cpu ms and FLOPs; step wall/cpu ms (median, p10, p90)."""
    recs = result["records"]

    def q(values, f):
        values = sorted(values)
        return values[round(f * (len(values) - 1))]

    walls = [1e3 * r["wall"] for r in recs]
    cpus = [1e3 * r["cpu"] for r in recs]
    if not recs:
        raise SystemExit("no block was quiet enough: run more rounds or raise --quiet")
    out = {"steps": len(recs), "wall": statistics.median(walls), "wall_p10": q(walls, 0.1), "wall_p90": q(walls, 0.9),
           "cpu": statistics.median(cpus), "fitted": all(r["fitted"] for r in recs), "stage": {},
           "others": statistics.median(r["others"] for r in recs), "dropped": result.get("dropped", 0)}
    for s in stages:
        if s == BACKGROUND_ENCODE:
            w = [1e3 * r["stages"]["background"].get(s, [0.0, 0.0])[0] for r in recs]
            c = [1e3 * r["stages"]["background"].get(s, [0.0, 0.0])[1] for r in recs]
            out["stage"][s] = {"wall": statistics.median(w), "cpu": statistics.median(c),
                               "flops": result["flops"].get(s, 0.0)}
            continue
        if s == "other":
            w = [1e3 * (r["wall"] - sum(v for k, v in r["stages"]["wall"].items() if k != "render")) for r in recs]
            c = [1e3 * (r["cpu"] - sum(v for k, v in r["stages"]["cpu"].items() if k != "render")) for r in recs]
            flops = result["flops"].get("other", 0.0)
        else:
            w = [1e3 * r["stages"]["wall"].get(s, 0.0) for r in recs]
            c = [1e3 * r["stages"]["cpu"].get(s, 0.0) for r in recs]
            flops = result["flops"].get(s, 0.0)
        out["stage"][s] = {"wall": statistics.median(w), "cpu": statistics.median(c), "flops": flops}
    return out


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]))
