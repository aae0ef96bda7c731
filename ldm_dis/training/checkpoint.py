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

A folder damaged afterwards (a truncated file, a disk that lost blocks, a hand-edited state.json) is
found when checkpoints are listed: :func:`checkpoint_problem` checks that state.json parses, that both
safetensors files have a valid header, the size that header describes and every tensor state.json
refers to. Listing, resuming and loading a run folder skip damaged checkpoints (saying which and why);
naming a damaged checkpoint itself is a :class:`CheckpointError` with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ldm_dis.errors import CheckpointError, UserInputError  # noqa: F401
from ldm_dis.models.weights import fsync_path, load_strict, read_tensors  # noqa: F401
from ldm_dis.training.integrity import non_finite_tensors, safetensors_problem, tensor_refs
# the run folder's layout lives in ldm_dis.runs (read by the model and the pictures too); re-exported here
from ldm_dis.runs import (  # noqa: F401
    CHECKPOINT_DIR, CONFIG_FILE, MODEL_FILE, STATE_FILE, STEP_DIR as _STEP_DIR, TRAINING_FILE, checkpoint_path,
    checkpoint_run_dir, load_run_config, run_dir_of,
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
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    try:
        _write_folder(tmp, state, config_yaml)
    except (OSError, SafetensorError) as exc:  # a full disk, a quota, a read-only mount...
        shutil.rmtree(tmp, ignore_errors=True)
        reason = getattr(exc, "strerror", None) or str(exc)
        previous = latest_checkpoint(checkpoint_run_dir(path))
        raise CheckpointError(
            f"cannot write checkpoint {path}: {reason}; nothing of it is left behind, and the newest checkpoint "
            f"{previous or '(none yet)'} is intact. Free some space (or set run.dir elsewhere) and --resume"
        ) from None
    old = path.parent / f".old-{path.name}-{os.getpid()}"
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)
    return path


def _write_folder(tmp: Path, state: Dict[str, Any], config_yaml: Optional[str]) -> None:
    tmp.parent.mkdir(parents=True, exist_ok=True)
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


# ---------------------------------------------------------------------------------------- checking
def checkpoint_problem(folder: str | Path) -> Optional[str]:
    """Why the checkpoint folder is not intact, or None. Cheap: headers and sizes, not the tensors."""
    folder = Path(folder)
    try:
        skeleton = json.loads((folder / STATE_FILE).read_text())
    except FileNotFoundError:
        return f"{STATE_FILE} is missing"
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"{STATE_FILE} is unreadable ({exc})"
    names: set = set()
    for file in (MODEL_FILE, TRAINING_FILE):
        problem, found = safetensors_problem(folder / file)
        if problem:
            return problem
        names |= found
    missing = sorted(tensor_refs(skeleton) - names)
    if missing:
        return f"{STATE_FILE} refers to {len(missing)} tensors the safetensors files lack (e.g. {missing[0]!r})"
    return None


# ----------------------------------------------------------------------------------------- listing
def find_checkpoints(run_dir: str | Path) -> Tuple[list[Tuple[int, Path]], list[Tuple[int, Path, str]]]:
    """(intact, damaged) checkpoints of a run, oldest first: [(step, folder)], [(step, folder, reason)].
    A ``step_*`` folder without state.json is one a crash left before the rename; it is neither."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    intact, damaged = [], []
    if folder.is_dir():
        for child in folder.iterdir():
            match = _STEP_DIR.match(child.name)
            if match and (child / STATE_FILE).is_file():
                problem = checkpoint_problem(child)
                if problem:
                    damaged.append((int(match.group(1)), child, problem))
                else:
                    intact.append((int(match.group(1)), child))
    return sorted(intact), sorted(damaged)


def list_checkpoints(run_dir: str | Path) -> list[Tuple[int, Path]]:
    """Intact checkpoints of a run, oldest first, as (step, folder)."""
    return find_checkpoints(run_dir)[0]


def latest_checkpoint(run_dir: str | Path) -> Optional[Path]:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def last_good_checkpoint(run_dir: str | Path) -> Optional[Path]:
    """The newest intact checkpoint whose weights are all finite (reads the weights: for error messages)."""
    for _, folder in reversed(list_checkpoints(run_dir)):
        try:
            bad, _ = non_finite_tensors(read_tensors(folder / MODEL_FILE).items())
        except CheckpointError:
            continue
        if not bad:
            return folder
    return None


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` intact checkpoints, and damaged ones older than the newest intact one."""
    intact, damaged = find_checkpoints(run_dir)
    for _, folder in intact[:-keep] if keep > 0 else []:
        shutil.rmtree(folder, ignore_errors=True)
    for step, folder, _ in damaged:
        if intact and step < intact[-1][0]:
            shutil.rmtree(folder, ignore_errors=True)


def remove_leftovers(run_dir: str | Path) -> list[str]:
    """Clear what a process killed inside :func:`save_checkpoint` left: a ``.old-step_*`` folder whose
    ``step_*`` is gone is put back (it was complete), every other ``.tmp-*`` / ``.old-*`` folder removed.
    Call it only while holding the run folder (no live writer). Returns what was done, one line each."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    done = []
    if not folder.is_dir():
        return done
    for child in sorted(folder.iterdir()):
        match = re.match(r"^\.(tmp|old)-(step_\d+)-\d+$", child.name)
        if not match or not child.is_dir():
            continue
        target = folder / match.group(2)
        if match.group(1) == "old" and not target.exists() and checkpoint_problem(child) is None:
            os.replace(child, target)
            done.append(f"restored {target.name} from {child.name}")
        else:
            shutil.rmtree(child, ignore_errors=True)
            done.append(f"removed {child.name}")
    return done


# ----------------------------------------------------------------------------------------- reading
_warned: set = set()


def resolve_checkpoint(path: str | Path, quiet: bool = False) -> Path:
    """A checkpoint folder from a run folder (its newest intact checkpoint), a checkpoint folder, or a
    file in one. Damaged checkpoints newer than the one chosen are named on stderr (once; not if ``quiet``)."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if (path / STATE_FILE).is_file():
        problem = checkpoint_problem(path)
        if problem:
            raise CheckpointError(f"checkpoint {path} is damaged: {problem}")
        return path
    intact, damaged = find_checkpoints(path)
    if not intact:
        if damaged:
            listed = "; ".join(f"{folder.name}: {reason}" for _, folder, reason in damaged)
            raise CheckpointError(f"run folder {str(path)!r} holds no intact checkpoint ({listed})")
        raise CheckpointError(
            f"{str(path)!r} is neither a checkpoint folder (with {STATE_FILE}) nor a run folder with "
            f"checkpoints in {CHECKPOINT_DIR}/step_*"
        )
    chosen = intact[-1][1]
    for step, folder, reason in damaged:
        if step > intact[-1][0] and not quiet and (folder, reason) not in _warned:
            _warned.add((folder, reason))
            print(f"warning: skipping damaged checkpoint {folder} ({reason}); using {chosen.name}", file=sys.stderr)
    return chosen


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
