"""A wall-clock budget for one training call (``train.max_minutes``), and the record of what the call did.

    budget = TrainingBudget(cfg.train.max_minutes, accelerator, start_step)
    ... every step: if budget.spent(): checkpoint and stop
    run_log.write(step, {}, **budget.summary(step, batch_size))
    # {"end": "max_minutes" | "max_steps", "steps_run", "images_seen", "train_seconds", "wall_seconds",
    #  "images_per_s", "peak_gpu_memory_bytes" (None off CUDA)}
"""

from __future__ import annotations

import time
from typing import Optional

import torch


class TrainingBudget:
    def __init__(self, minutes: Optional[float], accelerator, start_step: int):
        self.acc, self.start_step = accelerator, start_step
        self.started = time.perf_counter()
        self.deadline = None if minutes is None else self.started + 60 * minutes
        self.step_seconds = 0.0  # time in training steps, hooks excluded (the trainer adds it up)
        self.stopped_by_time = False
        if accelerator.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(accelerator.device)

    def spent(self) -> bool:
        """True once the budget is used up; every process gets the main process's answer."""
        if self.deadline is None:
            return False
        late = time.perf_counter() >= self.deadline
        if self.acc.num_processes > 1:  # clocks differ slightly: the main process decides for all
            from accelerate.utils import broadcast

            late = bool(broadcast(torch.tensor([float(late)], device=self.acc.device), from_process=0).item())
        self.stopped_by_time = late
        return late

    def summary(self, step: int, batch_size: int) -> dict:
        """The end-of-training record (``step``: steps done; ``batch_size``: the global batch)."""
        images = (step - self.start_step) * batch_size
        cuda = self.acc.device.type == "cuda"
        return {
            "end": "max_minutes" if self.stopped_by_time else "max_steps",
            "steps_run": step - self.start_step,
            "images_seen": images,
            "train_seconds": round(self.step_seconds, 3),
            "wall_seconds": round(time.perf_counter() - self.started, 3),
            "images_per_s": round(images / self.step_seconds, 2) if self.step_seconds > 0 else None,
            "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated(self.acc.device) if cuda else None,
        }
