"""What DDP does, done by hand for tasks that need two backward passes through shared modules in one
step (a GAN or a total-correlation discriminator): average gradients over processes, share the main
process's buffers. A no-op on one process."""

from __future__ import annotations

from typing import List

import torch
from torch import nn


def average_gradients(params: List[nn.Parameter], accelerator) -> None:
    """Mean of each gradient over processes (no-op on one process); parameters without a gradient count as 0."""
    if accelerator is None or accelerator.num_processes == 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= accelerator.num_processes
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
        offset += n


def broadcast_buffers(module: nn.Module, accelerator) -> None:
    """Copy the main process's buffers (BatchNorm running statistics) to every process, as DDP does."""
    for buf in module.buffers():
        broadcast_tensor(buf, accelerator)


def broadcast_tensor(tensor: torch.Tensor, accelerator) -> None:
    """Overwrite ``tensor`` on every process with the main process's copy (no-op on one process)."""
    if accelerator is None or accelerator.num_processes == 1:
        return
    torch.distributed.broadcast(tensor, src=0)
