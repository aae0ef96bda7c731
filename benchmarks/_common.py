"""Helpers shared by the benchmark scripts: a stand-in accelerator and step timing for any task, and the
replacement of a marked section of docs/results.md."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import numpy as np
import torch


class StepAccelerator:
    """The parts of an accelerate.Accelerator a task uses in a step, on one device without wrappers
    (timing steps outside the trainer)."""

    def __init__(self, device="cpu", bf16: bool = False):
        self.device, self.bf16 = torch.device(device), bf16
        self.num_processes, self.process_index, self.is_main_process = 1, 0, True

    def autocast(self):
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def backward(self, loss):
        loss.backward()

    def prepare(self, *objects):
        return objects[0] if len(objects) == 1 else objects

    def prepare_optimizer(self, opt):
        return opt

    def unwrap_model(self, model):
        return model

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x

    def clip_grad_norm_(self, params, norm):
        return torch.nn.utils.clip_grad_norm_(params, norm)

    def synchronize(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def seconds_per_step(cfg, dataset, repeats: int = 4, accelerator=None) -> float:
    """Wall time of one training step of the task ``cfg`` describes (rendering a batch + training_step),
    median of ``repeats`` after a warm-up. Any ``model.kind``: an LDM needs ``model.first_stage.checkpoint``."""
    from ldm_dis.training.checkpoint import task_kwargs
    from ldm_dis.training.tasks import build_task

    acc = accelerator if accelerator is not None else StepAccelerator()
    torch.manual_seed(0)
    task = build_task(cfg, dataset, **task_kwargs(cfg))
    task.prepare(acc)
    rng = np.random.default_rng(0)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        idx = rng.choice(len(dataset), cfg.train.batch_size, replace=False)
        images = torch.stack([dataset[int(j)][0] for j in idx]).to(acc.device)
        task.training_step(images, None, i, acc)
        acc.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def write_results(path: Path, section: str, name: str = "baselines") -> None:
    """Replace this benchmark's section ``name`` of ``path`` (between its markers), keeping everything else."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{section}\n{end}"
    text = path.read_text() if path.exists() else "# Results\n"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
