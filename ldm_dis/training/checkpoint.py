"""Checkpoints: one folder per saved step, written atomically, read strictly.

    run.dir/checkpoints/step_0001000/
        model.safetensors           every module of ``task.modules()``: key "<module name>.<state key>"
                                    (networks, EMA copies, bottleneck state such as DyGA anchors)
        training_state.safetensors  optimizer state tensors, RNG states of every process (uint8)
        state.json                  everything else: step, epoch, optimizer param groups, LR schedulers,
                                    process count, and where each tensor of the two files belongs
        config.yaml                 the resolved config the run was trained with

A folder is written as ``.tmp-step_...``, each file flushed and fsync'ed, then renamed into place, so a
folder named ``step_*`` is always complete. ``state.json`` is the last file written.
Loading never uses ``strict=False``: a missing, unexpected or misshapen tensor is a :class:`CheckpointError`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from safetensors.torch import save_file

from ldm_dis.errors import CheckpointError
from ldm_dis.models.weights import fsync_path, load_strict, read_tensors
# the run folder's layout lives in ldm_dis.runs (read by the model and the pictures too); re-exported here
from ldm_dis.runs import (  # noqa: F401
    CHECKPOINT_DIR, CONFIG_FILE, MODEL_FILE, STATE_FILE, TRAINING_FILE, checkpoint_path, latest_checkpoint,
    list_checkpoints, load_run_config, resolve_checkpoint, run_dir_of,
)


# ----------------------------------------------------------------------------- nested state <-> files
def _encode(obj: Any, path: str, tensors: Dict[str, torch.Tensor]) -> Any:
    """JSON skeleton of ``obj``; each tensor is moved into ``tensors`` under ``path`` and replaced by a reference."""
    if isinstance(obj, torch.Tensor):
        # clone: safetensors refuses tensors sharing memory (tied weights); contiguous CPU copies are safe
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, f"{path}/{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, _encode(v, f"{path}/{k}", tensors)] for k, v in obj.items()]}  # int keys
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalar
        return obj.item()
    raise CheckpointError(f"cannot checkpoint {path}: a {type(obj).__name__} is neither a tensor nor plain data")


def _decode(obj: Any, tensors: Dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def _fsync_file(path: Path) -> None:
    fsync_path(path)


def _fsync_dir(path: Path) -> None:
    fsync_path(path)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _write_tensors(path: Path, tensors: Dict[str, torch.Tensor]) -> None:
    save_file(tensors, str(path))
    _fsync_file(path)


# ----------------------------------------------------------------------------------------- writing
def save_checkpoint(path: str | Path, state: Dict[str, Any], config_yaml: Optional[str] = None) -> Path:
    """Write ``state`` (a dict with ``modules``: {name: state_dict} and any other plain data / tensors)
    to the folder ``path`` atomically; an existing folder of that name is replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    model_tensors: Dict[str, torch.Tensor] = {}
    skeleton = {"modules": {}}
    for name, module_state in state["modules"].items():
        skeleton["modules"][name] = {k: _encode(v, f"{name}.{k}", model_tensors) for k, v in module_state.items()}
    training_tensors: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key != "modules":
            skeleton[key] = _encode(value, key, training_tensors)

    _write_tensors(tmp / MODEL_FILE, model_tensors)
    _write_tensors(tmp / TRAINING_FILE, training_tensors)
    if config_yaml is not None:
        _write_text(tmp / CONFIG_FILE, config_yaml)
    _write_text(tmp / STATE_FILE, json.dumps(skeleton, indent=1))
    _fsync_dir(tmp)

    old = path.parent / f".old-{path.name}-{os.getpid()}"
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)
    return path


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for _, folder in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------------------- reading
def load_checkpoint(path: str | Path, with_training_state: bool = True) -> Dict[str, Any]:
    """The state dict given to :func:`save_checkpoint` (tensors on CPU). ``path`` as in :func:`resolve_checkpoint`."""
    folder = resolve_checkpoint(path)
    try:
        skeleton = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {folder} is unreadable: {exc}") from None
    tensors = read_tensors(folder / MODEL_FILE)
    if with_training_state:
        tensors.update(read_tensors(folder / TRAINING_FILE))
    if not with_training_state:
        skeleton = {"modules": skeleton["modules"], "step": skeleton.get("step")}
    state = _decode(skeleton, tensors)
    state["path"] = str(folder)
    return state


def load_module_state(weights_file: str | Path, name: str) -> Dict[str, torch.Tensor]:
    """One module's state dict from a ``model.safetensors`` (e.g. the first stage for the LDM task)."""
    weights_file = Path(weights_file)
    if weights_file.is_dir():
        weights_file = resolve_checkpoint(weights_file) / MODEL_FILE
    tensors = read_tensors(weights_file)
    prefix = f"{name}."
    found = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not found:
        names = sorted({k.split(".", 1)[0] for k in tensors})
        raise CheckpointError(f"{weights_file} holds no module {name!r}; it holds {names}")
    return found


# modules that earlier versions saved by default and this one builds only on request: what to set
RETIRED_MODULES = {
    "ema_feature_extractor": (
        "it was written by a version that kept an EMA copy of the feature extractor and built tokens without "
        "the final ReLU; to load it as it was trained, set train.ema_feature_extractor=true and "
        "model.encoder.final_relu=false (in the checkpoint's config.yaml, or as overrides when resuming)"
    ),
}


def load_modules(modules: Dict[str, torch.nn.Module], states: Dict[str, Dict[str, torch.Tensor]], source: str) -> None:
    """Load every module strictly; any difference is an error naming the module and the keys."""
    missing = sorted(set(modules) - set(states))
    unexpected = sorted(set(states) - set(modules))
    if missing or unexpected:
        hints = "".join(f"; {RETIRED_MODULES[name]}" for name in unexpected if name in RETIRED_MODULES)
        raise CheckpointError(
            f"{source}: the task's modules {sorted(modules)} do not match the checkpoint's {sorted(states)}{hints}"
        )
    for name, module in modules.items():
        load_strict(module, states[name], f"{source}: module {name!r}")


def load_task_from_checkpoint(path: str | Path, dataset=None, accelerator=None, with_weights: bool = True):
    """Rebuild the task of a run folder or checkpoint from its saved config.yaml and load its weights.

    Returns ``(cfg, task)``; the task is prepared on ``accelerator`` (default: a single-process one on
    the GPU if there is one). ``dataset`` defaults to ``build_dataset(cfg.data)``.
    """
    from ldm_dis.training.tasks import build_task

    folder = resolve_checkpoint(path)
    cfg = load_run_config(folder)
    if dataset is None:
        from ldm_dis.data import build_dataset

        dataset = build_dataset(cfg.data)
    kwargs = task_kwargs(cfg)
    if with_weights and "first_stage_path" in kwargs:
        # the checkpoint holds the first stage too: the file the run was trained from is not needed (a moved run loads)
        kwargs["first_stage_path"] = str(folder / MODEL_FILE)
    task = build_task(cfg, dataset, **kwargs)
    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator()
    task.prepare(accelerator)
    if with_weights:
        state = load_checkpoint(folder, with_training_state=False)
        load_modules({k: accelerator.unwrap_model(m) for k, m in task.modules().items()}, state["modules"], str(folder))
    return cfg, task


def task_kwargs(cfg) -> Dict[str, Any]:
    """Extra arguments of ``build_task`` that a config implies (the LDM's first-stage weights)."""
    if cfg.model.kind == "ldm":
        return {"first_stage_path": cfg.model.first_stage.checkpoint}
    return {}
