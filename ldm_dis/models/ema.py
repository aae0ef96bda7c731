"""Exponential moving average of a network's weights (LDM's LitEma), as a module so it is checkpointed.

decay_n = min(decay, (1 + n) / (10 + n)) after n updates: early averages are not dominated by the random
initialisation. Buffers (BatchNorm running statistics) are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    def __init__(self, model: nn.Module, decay: float = 0.9999):
        super().__init__()
        self.decay = decay
        self.shadow = copy.deepcopy(_unwrap(model)).eval().requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True):
        return super().train(False)  # the average is only ever evaluated

    def current_decay(self) -> float:
        n = int(self.num_updates)
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """shadow <- d * shadow + (1 - d) * model, for every parameter; buffers copied."""
        self.num_updates += 1
        d = self.current_decay()
        model = _unwrap(model)
        ema_params = list(self.shadow.parameters())
        params = [p.detach().to(e.dtype) for p, e in zip(model.parameters(), ema_params)]
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for e, b in zip(self.shadow.buffers(), model.buffers()):
            e.copy_(b)

    def forward(self, *args, **kwargs):
        return self.shadow(*args, **kwargs)


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside DDP / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner
