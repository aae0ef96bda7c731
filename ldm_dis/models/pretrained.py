"""Saved models: a folder with the model's own config and its weights, and one loader for every kind.

    folder/
        model_config.json   {"format": ..., "kind": "ldm" | a baseline kind, "resolution", "num_channels",
                             "model": the model section of the config, plus what the kind records}
        model.safetensors   the model's state dict (written atomically)

    model = load_pretrained("runs/quickstart")     # a saved folder, a run folder, a checkpoint folder or a file in one

A saved folder is rebuilt from ``model_config.json`` alone; a run or checkpoint from its ``config.yaml``
and ``model.safetensors``. Neither needs the dataset, an optimizer or an Accelerator.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ldm_dis.errors import CheckpointError

CONFIG_NAME = "model_config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "ldm_dis.pretrained/1"


def is_saved_model(path: str | Path) -> bool:
    return (Path(path) / CONFIG_NAME).is_file()


def write_model_config(folder: str | Path, record: Dict[str, Any]) -> Path:
    """``record`` as ``folder/model_config.json`` (temporary file, fsync, rename)."""
    from ldm_dis.models.weights import fsync_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path, tmp = folder / CONFIG_NAME, folder / f".tmp-{CONFIG_NAME}-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"format": FORMAT, **record}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(folder)
    return path


def read_model_config(folder: str | Path) -> Dict[str, Any]:
    path = Path(folder) / CONFIG_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is unreadable: {exc}") from None
    if record.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {record.get('format')!r}, expected {FORMAT!r}")
    return record


def model_section(record: Dict[str, Any], source: str):
    """The typed ``model`` section of a saved config (a wrong key is an error naming the file)."""
    from ldm_dis.config.schema import ModelConfig

    try:
        return OmegaConf.merge(OmegaConf.structured(ModelConfig), record["model"])
    except (KeyError, OmegaConfBaseException) as exc:
        raise CheckpointError(f"{source}: the model section does not fit this version's config: {exc}") from None


def load_pretrained(path: str | Path, **kwargs):
    """The model saved in ``path``, by its kind: a :class:`~ldm_dis.models.ldm.LatentDiffusion` for
    ``ldm``, a :class:`~ldm_dis.baselines.model.BaselineModel` for the VAE baselines. ``path`` is a
    ``save_pretrained`` folder, a run folder, a checkpoint folder or a file in one; ``kwargs`` go to the
    kind's ``from_pretrained`` (e.g. ``ema=False`` for the live U-Net of an LDM checkpoint)."""
    from ldm_dis.baselines.model import KINDS, BaselineModel
    from ldm_dis.models.ldm import LatentDiffusion

    if is_saved_model(path):
        kind = read_model_config(path)["kind"]
    else:
        from ldm_dis.runs import load_run_config

        kind = load_run_config(path).model.kind
    if kind == "ldm":
        return LatentDiffusion.from_pretrained(path, **kwargs)
    if kind in KINDS:
        return BaselineModel.from_pretrained(path, **kwargs)
    raise CheckpointError(f"{path}: model.kind={kind!r} has no model object to load (expected 'ldm' or one of "
                          f"{sorted(KINDS)}; a first stage loads with ldm_dis.models.vqgan.load_first_stage)")
