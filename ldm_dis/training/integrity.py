"""Is a checkpoint good? Cheap checks of safetensors files (header and size, no tensor read) and of
tensors (all finite): a run never writes, resumes from or recommends weights that are NaN or inf."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, List, Optional, Tuple

import torch

from ldm_dis.models.weights import safetensors_problem  # noqa: F401  (the header check lives with the weights readers)


def tensor_refs(obj: Any, out: Optional[set] = None) -> set:
    """Every ``{"__tensor__": name}`` reference in a checkpoint's state.json skeleton."""
    out = set() if out is None else out
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            out.add(obj["__tensor__"])
        for value in obj.values():
            tensor_refs(value, out)
    elif isinstance(obj, list):
        for value in obj:
            tensor_refs(value, out)
    return out


def named_tensors(obj: Any, prefix: str = "") -> Iterable[Tuple[str, torch.Tensor]]:
    """(path, tensor) of every tensor in nested dicts / lists / tuples (state dicts, optimizer states)."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from named_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from named_tensors(value, f"{prefix}.{i}" if prefix else str(i))


@torch.no_grad()
def non_finite_tensors(tensors: Iterable[Tuple[str, torch.Tensor]]) -> Tuple[List[str], int]:
    """(names of the floating-point tensors holding a NaN or an inf, number of tensors checked).
    One device synchronisation per device, not one per tensor."""
    by_device = defaultdict(list)
    count = 0
    for name, tensor in tensors:
        count += 1
        if tensor.is_floating_point() or tensor.is_complex():
            by_device[tensor.device].append((name, tensor))
    bad = []
    for items in by_device.values():
        flags = torch.stack([torch.isfinite(t).all() for _, t in items]).cpu()
        bad += [name for (name, _), ok in zip(items, flags.tolist()) if not ok]
    return bad, count
