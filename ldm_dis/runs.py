"""The layout of a run folder, and how any path a user gives is read as one.

    run.dir/
        config.yaml                     the resolved config of the run
        checkpoints/step_0001000/       model.safetensors, training_state.safetensors, state.json, config.yaml

A user may name a run folder (its newest checkpoint), a checkpoint folder or a file in one:
:func:`resolve_checkpoint` turns each into the checkpoint folder, :func:`run_dir_of` into the run folder
(the one place that knows where a checkpoint's run folder is: :func:`checkpoint_run_dir`).
Nothing here trains or needs the dataset, so the model, the pictures and the metrics read runs through it;
which checkpoints are intact is decided by :mod:`ldm_dis.training.checkpoint` (their file checks).
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
STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:07d}"


def list_checkpoints(run_dir: str | Path) -> list[Tuple[int, Path]]:
    """Intact checkpoints of a run, oldest first, as (step, folder) (verified by the checkpoint module)."""
    from ldm_dis.training.checkpoint import list_checkpoints as listed

    return listed(run_dir)


def latest_checkpoint(run_dir: str | Path) -> Optional[Path]:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def resolve_checkpoint(path: str | Path, quiet: bool = False) -> Path:
    """A checkpoint folder from a run folder (its newest intact checkpoint), a checkpoint folder, or a
    file in one; a damaged checkpoint is an error (see :func:`ldm_dis.training.checkpoint.resolve_checkpoint`,
    which checks the files)."""
    from ldm_dis.training.checkpoint import resolve_checkpoint as resolve

    return resolve(path, quiet=quiet)


def run_dir_of(path: str | Path) -> Path:
    """The run folder of a run folder, a checkpoint folder or a file in a checkpoint folder (which must
    hold an intact checkpoint); a saved model folder (``save_pretrained``) is its own."""
    from ldm_dis.models.pretrained import is_saved_model

    if is_saved_model(path):
        return Path(path)
    return checkpoint_run_dir(resolve_checkpoint(path))


def checkpoint_run_dir(path: str | Path) -> Path:
    """The layout alone, nothing verified: ``run/checkpoints/step_N`` (or a file in it) -> ``run``; any
    other folder is its own run folder, and a file belongs to its folder's."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
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
