"""What a run records as it goes: ``run.dir/log.jsonl`` (one JSON object per logged step) and, when the
``tensorboard`` package is installed, TensorBoard event files in ``run.dir/tensorboard``.

Only the main process writes; on the others every method does nothing.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Dict, Optional

LOG_FILE = "log.jsonl"


class RunLog:
    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.path = Path(run_dir) / LOG_FILE
        self.enabled = enabled
        self._tb = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:  # optional dependency: the JSONL log is the record, TensorBoard a convenience
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:
                self._tb = None

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
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


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
