"""Adam and AdamW with torch's fused kernel: the whole update of a tensor in one pass.

On CPU torch's default Adam is a Python loop of about ten operations per tensor, and ``foreach=True``
only moves the same per-tensor operations into C++; the fused kernel is about 3x faster (7 against 21 ms
a step for the quickstart LDM's 3.9M parameters on one core) and computes the same update up to float
rounding. Every task builds its Adam here, so the choice is made once.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch


def adam(params: Iterable, lr: float, betas: Sequence[float] = (0.9, 0.999), weight_decay: float = 0.0,
         decoupled_weight_decay: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (L2 ``weight_decay``) or, with ``decoupled_weight_decay``, ``AdamW``; fused."""
    cls = torch.optim.AdamW if decoupled_weight_decay else torch.optim.Adam
    return cls(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, fused=True)
