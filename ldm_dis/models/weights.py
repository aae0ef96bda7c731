"""Weights files: atomic safetensors writes, reads that name the file when it is broken, and the one strict
loader of the package (every load names its missing, unexpected and misshapen keys; never ``strict=False``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping

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


def read_tensors(path: str | Path) -> Dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU; a missing or corrupt file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    try:
        return load_file(str(path))
    except (OSError, ValueError) as exc:  # safetensors raises on truncated/corrupt files
        raise CheckpointError(f"weights file {path} is unreadable: {exc}") from None


def with_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """The tensors under ``prefix`` (e.g. ``"ema_unet.shadow."``), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _listed(keys, limit: int = 6) -> str:
    keys = sorted(keys)
    return f"{keys[:limit]}{' ...' if len(keys) > limit else ''}"


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, hint: str = "") -> None:
    """Load ``state`` into ``module``; any missing, unexpected or misshapen key is a CheckpointError that
    names them (and ends with ``hint``, e.g. which config the file would fit)."""
    expected = module.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
             for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source} does not fit the model: missing keys {_listed(missing)}; unexpected keys "
            f"{_listed(unexpected)}; shape mismatches {wrong[:6]}{' ...' if len(wrong) > 6 else ''}{hint}"
        )
    module.load_state_dict(dict(state), strict=True)
