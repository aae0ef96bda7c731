"""Weights files: atomic safetensors writes, reads that name the file when it is broken, and the one strict
loader of the package (every load names its missing, unexpected and misshapen keys; never ``strict=False``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ldm_dis.errors import CheckpointError


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory where the file system allows it (the rename is atomic regardless)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor]) -> Path:
    """Write ``tensors`` to ``path`` through a temporary file, fsync'ed and renamed: never half a file."""
    path = Path(path)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    # clone: safetensors refuses tensors sharing memory (tied weights); contiguous CPU copies are safe
    save_file({k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}, str(tmp))
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)
    return path


def safetensors_problem(path: str | Path) -> Tuple[Optional[str], set]:
    """(what is wrong with the safetensors file ``path`` or None, the tensor names its header lists).
    Reads the header only: a truncated or overwritten file is found without reading the tensors."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if length < 0 or 8 + length > size:
                return f"{path.name} is truncated ({size} bytes, not even its header)", set()
            header = json.loads(f.read(length))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except FileNotFoundError:
        return f"{path.name} is missing", set()
    except OSError as exc:
        return f"{path.name} is unreadable ({exc.strerror or exc})", set()
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError, AttributeError):
        return f"{path.name} has no valid safetensors header", set()
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        return f"{path.name} is truncated or damaged ({size} bytes; its header describes {expected})", set()
    return None, set(header) - {"__metadata__"}


def read_tensors(path: str | Path) -> Dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (CPU); a missing, truncated or damaged file is a CheckpointError."""
    problem, _ = safetensors_problem(path)
    if problem is None:
        try:
            return load_file(str(path))
        except Exception as exc:  # SafetensorError derives from Exception alone
            problem = f"{Path(path).name} is unreadable ({exc})"
    raise CheckpointError(f"{path}: {problem}")


def with_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """The tensors under ``prefix`` (e.g. ``"ema_unet.shadow."``), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _listed(keys, limit: int = 6) -> str:
    keys = sorted(keys)
    return f"{keys[:limit]}{' ...' if len(keys) > limit else ''}"


def check_fit(expected: Mapping[str, Tuple[int, ...]], state: Mapping[str, torch.Tensor], source: str, hint: str = "") -> None:
    """``state`` has exactly the keys of ``expected`` (key -> shape), each of that shape; otherwise a
    CheckpointError that names the missing, unexpected and misshapen keys (and ends with ``hint``)."""
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(shape)}"
             for k, shape in expected.items() if k in state and tuple(state[k].shape) != tuple(shape)]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source} does not fit the model: missing keys {_listed(missing)}; unexpected keys "
            f"{_listed(unexpected)}; shape mismatches {wrong[:6]}{' ...' if len(wrong) > 6 else ''}{hint}"
        )


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, hint: str = "") -> None:
    """Load ``state`` into ``module``; any missing, unexpected or misshapen key is a CheckpointError that
    names them (and ends with ``hint``, e.g. which config the file would fit)."""
    check_fit({k: tuple(v.shape) for k, v in module.state_dict().items()}, state, source, hint)
    module.load_state_dict(dict(state), strict=True)
