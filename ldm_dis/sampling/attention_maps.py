"""Cross-attention maps of the latent units (DAAM, Tang et al. 2023; paper Sec. 4.4, Fig. 4, 9, 10).

While DDIM generates an image from units (N, D), every cross-attention layer at every timestep gives
probabilities (B, heads, h*w, N) of each latent pixel attending to each unit. Per layer call they are
averaged over heads, laid out as (B, N, h, w) and upsampled to the output size; the maps are then
averaged over layers and timesteps:

    latents, maps = unit_attention_maps(unet, scheduler, units, x_T, steps=100, out_size=(64, 64))
    maps   # (B, N, 64, 64); at every pixel the N values sum to 1

Upsampling is bilinear rather than DAAM's bicubic: a bilinear value is a convex combination of its
neighbours, so each map stays a distribution over units at every pixel (bicubic overshoots).
Maps are accumulated after each U-Net call instead of kept per step: 100 steps x 13 layers of
(B, heads, 256, N) would hold hundreds of MB for a 16x16 latent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ldm_dis.models.attention import AttentionRecorder, record_cross_attention
from ldm_dis.sampling.ddim import ddim_sample
from ldm_dis.sampling.panels import TickingUNet, check_eval

if TYPE_CHECKING:  # diffusers (and torch._dynamo) is imported where a model is built, not at import
    from diffusers import DDIMScheduler


def layer_unit_maps(probs: torch.Tensor, size: Tuple[int, int], out_size: Tuple[int, int]) -> torch.Tensor:
    """One layer call: probs (B, heads, h*w, N) of a (h, w) feature map -> (B, N, H, W) float32, averaged over
    heads and upsampled bilinearly to out_size = (H, W)."""
    b, _, hw, n = probs.shape
    h, w = size
    if hw != h * w:
        raise ValueError(f"{hw} attention queries for a {h}x{w} feature map")
    maps = probs.float().mean(dim=1).transpose(1, 2).reshape(b, n, h, w)  # (B, N, h, w)
    if (h, w) == tuple(out_size):
        return maps
    return F.interpolate(maps, size=tuple(out_size), mode="bilinear", align_corners=False)


class _Accumulator:
    """Running sum of upsampled maps over layer calls; drains the recorder after each U-Net call."""

    def __init__(self, recorder: AttentionRecorder, out_size: Tuple[int, int]):
        self.recorder, self.out_size = recorder, out_size
        self.total: torch.Tensor | None = None
        self.count = 0
        self.calls_per_layer: Dict[str, int] = {}

    def drain(self) -> None:
        for name, calls in self.recorder.maps.items():
            for probs in calls:
                maps = layer_unit_maps(probs, self.recorder.sizes[name], self.out_size)
                self.total = maps if self.total is None else self.total + maps
                self.count += 1
                self.calls_per_layer[name] = self.calls_per_layer.get(name, 0) + 1
            calls.clear()


class _Draining(nn.Module):
    def __init__(self, unet: nn.Module, accumulator: _Accumulator):
        super().__init__()
        self.unet, self.accumulator = unet, accumulator

    def forward(self, x, t, context):
        out = self.unet(x, t, context)
        self.accumulator.drain()
        return out


@torch.no_grad()
def unit_attention_maps(
    unet: nn.Module,
    scheduler: DDIMScheduler,
    units: torch.Tensor,
    x_T: torch.Tensor,
    out_size: Tuple[int, int],
    steps: int = 100,
    eta: float = 0.0,
    progress: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """units (B, N, D), x_T (B, C, h, w) -> (latents x_0 (B, C, h, w), maps (B, N, H, W)).

    maps[b, i] is unit i's cross-attention averaged over heads, every cross-attention layer and every
    DDIM step of generating image b; ``out_size`` (H, W) is usually the decoded image's size.
    """
    check_eval(unet)
    with record_cross_attention(unet) as recorder, \
            tqdm(total=steps, desc="attention", unit="step", disable=not progress, leave=False) as bar:
        accumulator = _Accumulator(recorder, tuple(out_size))
        latents = ddim_sample(TickingUNet(_Draining(unet, accumulator), bar), scheduler, units, x_T, steps=steps, eta=eta)
    if accumulator.count == 0:
        raise ValueError("no cross-attention was recorded")
    counts = set(accumulator.calls_per_layer.values())
    if counts != {steps}:  # every layer must have seen every timestep, or the average is lopsided
        raise RuntimeError(f"attention layers were called {sorted(counts)} times for {steps} DDIM steps")
    return latents, accumulator.total / accumulator.count
