"""Cross-attention of the U-Net on the latent units (LDM's SpatialTransformer), and its recorder.

Fast path: ``F.scaled_dot_product_attention``. While :func:`record_cross_attention` is active on a
model, every cross-attention layer of it computes the probabilities explicitly, softmax over the N
units, and stores them (B, heads, HW, N) per call, with the layer's spatial size. This is what the
attention maps (DAAM) are made of.

    with record_cross_attention(unet) as rec:
        unet(x, t, context)
    rec.maps["input_blocks.1.1"][0]   # (B, heads, H*W, N), sums to 1 over N
    rec.sizes["input_blocks.1.1"]     # (H, W)
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention of queries (B, L, dim) on a context (B, M, context_dim); self-attention
    when no context is given. Projections without bias, as in LDM."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: Optional[int] = None):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, -1).transpose(1, 2)  # (B, heads, n, dim_head)

    def forward(
        self, x: torch.Tensor, context: Optional[torch.Tensor] = None, return_probs: bool = False
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """x (B, L, dim), context (B, M, context_dim) -> ((B, L, dim), probs (B, heads, L, M) or None)."""
        ctx = x if context is None else context
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(ctx)), self._split(self.to_v(ctx))
        if return_probs:
            scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, heads, L, M)
            probs = scores.float().softmax(dim=-1)
            out = probs.to(v.dtype) @ v
        else:
            probs = None
            out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, dim_head)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)  # (B, L, inner)
        return self.to_out(out), probs


class GEGLUFeedForward(nn.Module):
    """LDM's feed-forward: Linear(dim, 2*4dim) -> GELU gate -> Linear(4dim, dim)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.proj = nn.Linear(dim, dim * mult * 2)
        self.out = nn.Linear(dim * mult, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(h * F.gelu(gate))


class TransformerBlock(nn.Module):
    """self-attention, cross-attention on the units, feed-forward; pre-LayerNorm, residual each."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, dim_head)
        self.cross_attn = Attention(dim, heads, dim_head, context_dim)
        self.ff = GEGLUFeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, record: bool = False):
        x = x + self.self_attn(self.norm1(x))[0]
        h, probs = self.cross_attn(self.norm2(x), context, return_probs=record)
        x = x + h
        x = x + self.ff(self.norm3(x))
        return x, probs


class SpatialTransformer(nn.Module):
    """(B, C, H, W) feature map attends to the units (B, N, context_dim); same shape out."""

    def __init__(self, channels: int, heads: int, context_dim: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels cannot be split into {heads} attention heads")
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.block = TransformerBlock(channels, heads, channels // heads, context_dim)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)  # starts as the identity (LDM's zero_module)
        nn.init.zeros_(self.proj_out.bias)
        self.recorder: Optional[Tuple["AttentionRecorder", str]] = None  # set by record_cross_attention

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # the 1x1 convolutions computed as matmuls on the tokens (same weights): on CPU a convolution call
        # costs more than the arithmetic at these sizes, and the tokens need no layout copy in between
        y = self.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
        y = F.linear(y, self.proj_in.weight.flatten(1), self.proj_in.bias)
        y, probs = self.block(y, context, record=self.recorder is not None)
        if probs is not None:
            recorder, name = self.recorder
            recorder.add(name, probs, (h, w))
        y = F.linear(y, self.proj_out.weight.flatten(1), self.proj_out.bias)
        return x + y.transpose(1, 2).reshape(b, c, h, w)


class AttentionRecorder:
    """Cross-attention probabilities by layer name: one (B, heads, H*W, N) tensor per forward call."""

    def __init__(self, to_cpu: bool = False):
        self.to_cpu = to_cpu
        self.maps: Dict[str, List[torch.Tensor]] = defaultdict(list)
        self.sizes: Dict[str, Tuple[int, int]] = {}

    def add(self, name: str, probs: torch.Tensor, size: Tuple[int, int]) -> None:
        probs = probs.detach()
        self.maps[name].append(probs.cpu() if self.to_cpu else probs)
        self.sizes[name] = size


@contextmanager
def record_cross_attention(model: nn.Module, to_cpu: bool = False) -> Iterator[AttentionRecorder]:
    """Within the block, every SpatialTransformer of ``model`` records its cross-attention
    probabilities (slow path, explicit softmax); on exit the fast path is restored."""
    recorder = AttentionRecorder(to_cpu)
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, SpatialTransformer)]
    if not layers:
        raise ValueError("record_cross_attention: the model has no cross-attention layers")
    for name, m in layers:
        m.recorder = (recorder, name)
    try:
        yield recorder
    finally:
        for _, m in layers:
            m.recorder = None
