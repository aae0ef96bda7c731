"""What a run records as it goes: ``run.dir/log.jsonl`` (one JSON object per logged step), and the same
scalars plus the sample and interchange grids in the experiment trackers of ``train.log_with`` (Accelerate's trackers:
TensorBoard, Weights & Biases, ...; local ones write under ``run.dir/logs/<run.name>``).

    log = RunLog(run_dir, enabled=accelerator.is_main_process, accelerator=accelerator)
    log.start(cfg)                                  # trackers begin a run, with the config as hyperparameters
    log.write(step, {"loss": 0.1}, epoch=0)         # jsonl + trackers
    log.image("samples", grid_uint8, step)          # trackers that take images
    log.close()

Only the main process writes the JSONL file; trackers are Accelerate's (which also write on the main
process only).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ldm_dis.errors import UserInputError

LOG_FILE = "log.jsonl"
TRACKER_DIR = "logs"


def tracker_names(log_with: Optional[str]) -> Optional[List[str]]:
    """``train.log_with`` ("tensorboard,wandb", "all" or None) -> the list Accelerate takes. A named tracker
    that is unknown or not installed is an error now, not a silent omission after hours of training."""
    if not log_with:
        return None
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    names = [n.strip() for n in str(log_with).split(",") if n.strip()]
    if "all" in names:
        return ["all"]
    available = {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise UserInputError(f"train.log_with: {name!r} is not a tracker; expected a comma-separated list of "
                                 f"{sorted(LOGGER_TYPE_TO_CLASS)} or 'all'")
        if name not in available:
            raise UserInputError(f"train.log_with: {name!r} is not installed (pip install {name}); installed: "
                                 f"{sorted(available) or 'none'}")
    return names


def flat_config(cfg) -> Dict[str, object]:
    """The config as {"train.lr": 1e-4, ...} with plain values (trackers store hyperparameters flat)."""
    from ldm_dis.config.loading import config_to_dict

    out: Dict[str, object] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        else:
            out[prefix] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)

    walk("", config_to_dict(cfg))
    return out


def _image_call(tracker, image: np.ndarray):
    """The arguments a tracker's ``log_images`` takes for one picture (H, W, 3) uint8: formats differ."""
    name = getattr(tracker, "name", "")
    if name == "tensorboard":
        return image[None], {"dataformats": "NHWC"}
    if name in ("aim", "clearml"):
        return image, {}
    return [image], {}  # wandb, swanlab and custom trackers: a list of arrays


class RunLog:
    def __init__(self, run_dir: str | Path, enabled: bool = True, accelerator=None):
        self.path = Path(run_dir) / LOG_FILE
        self.enabled = enabled
        self.accelerator = accelerator
        self._tracking = False
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def start(self, cfg) -> None:
        """Begin a tracker run named ``cfg.run.name`` (all processes call this; trackers act on the main one)."""
        acc = self.accelerator
        if acc is None or not acc.log_with:
            return
        acc.project_configuration.logging_dir = str(self.path.parent / TRACKER_DIR)
        acc.init_trackers(cfg.run.name, config=flat_config(cfg))
        self._tracking = True

    def truncate_after(self, step: int) -> None:
        """On resume: drop records of steps after the checkpoint (they are about to be redone)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, step: int, values: Dict[str, float], **extra) -> None:
        if not self.enabled:
            return
        record = {"step": step, **extra, **values, "time": round(time.time(), 3)}
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tracking:
            finite = {k: v for k, v in values.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
            if finite:
                self.accelerator.log(finite, step=step)

    def image(self, name: str, image: np.ndarray, step: int) -> None:
        """One picture (H, W, 3) uint8 to every tracker that takes images."""
        if not (self.enabled and self._tracking):
            return
        for tracker in self.accelerator.trackers:
            if hasattr(tracker, "log_images"):
                values, kwargs = _image_call(tracker, image)
                tracker.log_images({name: values}, step=step, **kwargs)

    def close(self) -> None:
        """End the tracker run; the accelerator may start another (the LDM after its first stage)."""
        if self._tracking:
            for tracker in self.accelerator.trackers:
                tracker.finish()
            self.accelerator.trackers = []
            self._tracking = False


def read_log(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


def training_summary(run_dir: str | Path) -> Optional[dict]:
    """What a run's training did, from its log: the last end-of-training record (why it stopped,
    steps and images of that call, images/s over its steps, peak GPU memory), the total steps
    reached, and its DyGA anchor fits (step, seconds, mean K). None when the log has no such record."""
    records = read_log(run_dir)
    ends = [r for r in records if "end" in r]
    if not ends:
        return None
    out = {k: v for k, v in ends[-1].items() if k != "time"}
    out["steps"] = out.pop("step")
    out["dyga_fits"] = [{"step": r["step"], "seconds": round(r["dyga/fit_seconds"], 3), "K_mean": r.get("dyga/K_mean")}
                        for r in records if "dyga/fit_seconds" in r]
    return out
