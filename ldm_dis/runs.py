"""The layout of a run folder, and how any path a user gives is read as one.

    run.dir/
        config.yaml                     the resolved config of the run
        checkpoints/step_0001000/       model.safetensors, training_state.safetensors, state.json, config.yaml

A user may name a run folder (its newest checkpoint), a checkpoint folder or a file in one:
:func:`resolve_checkpoint` turns each into the checkpoint folder, :func:`run_dir_of` into the run folder.
Nothing here trains or needs the dataset, so the model, the pictures and the metrics read runs through it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Tuple

from ldm_dis.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
TRAINING_FILE = "training_state.safetensors"
STATE_FILE = "state.json"
CONFIG_FILE = "config.yaml"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:07d}"


def list_checkpoints(run_dir: str | Path) -> list[Tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first, as (step, folder)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = []
    if folder.is_dir():
        for child in folder.iterdir():
            match = _STEP_DIR.match(child.name)
            if match and (child / STATE_FILE).is_file():
                found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Optional[Path]:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a run folder (its newest checkpoint), a checkpoint folder, or a file in one."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if (path / STATE_FILE).is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(
            f"{str(path)!r} is neither a checkpoint folder (with {STATE_FILE}) nor a run folder with "
            f"checkpoints in {CHECKPOINT_DIR}/step_*"
        )
    return latest


def run_dir_of(path: str | Path) -> Path:
    """The run folder of a run folder, a checkpoint folder or a file in a checkpoint folder."""
    folder = resolve_checkpoint(path)
    return folder.parent.parent if folder.parent.name == CHECKPOINT_DIR else folder


def load_run_config(path: str | Path):
    """The config a checkpoint (or the newest checkpoint of a run folder) was trained with."""
    from ldm_dis.config.loading import load_config

    folder = resolve_checkpoint(path)
    config_file = folder / CONFIG_FILE
    if not config_file.is_file():
        config_file = run_dir_of(folder) / CONFIG_FILE  # the run folder's copy
    if not config_file.is_file():
        raise CheckpointError(f"no {CONFIG_FILE} in {folder} nor in its run folder; cannot rebuild the model")
    return load_config(config_file)
