"""Capture and restore every random stream a training step draws from (python, numpy, torch, CUDA).

The states are uint8 tensors (for safetensors) plus a few plain numbers (for JSON); no pickle.
"""

from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _as_bytes(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array).view(np.uint8).copy())


def capture_rng(device: torch.device | None = None) -> Dict[str, Any]:
    """This process's random streams."""
    version, mt, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python_mt": _as_bytes(np.asarray(mt, dtype=np.uint32)),  # 624 words + position
        "python_version": version,
        "python_gauss_next": gauss_next,
        "numpy_keys": _as_bytes(np.asarray(keys, dtype=np.uint32)),
        "numpy_kind": kind,
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached_gaussian": float(cached),
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Dict[str, Any], device: torch.device | None = None) -> None:
    mt = state["python_mt"].numpy().view(np.uint32)
    random.setstate((state["python_version"], tuple(int(x) for x in mt), state["python_gauss_next"]))
    np.random.set_state((
        state["numpy_kind"], state["numpy_keys"].numpy().view(np.uint32).copy(), state["numpy_pos"],
        state["numpy_has_gauss"], state["numpy_cached_gaussian"],
    ))
    torch.set_rng_state(state["torch"].cpu())
    if device is not None and device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
