"""Denoising U-Net conditioned on the latent units by cross-attention (paper Table 8).

The openai / LDM ``UNetModel`` layout, written out plainly: ResBlocks with scale-shift norm on the
timestep embedding, a SpatialTransformer after each ResBlock of the levels whose downsample factor is in
``attention_downsample`` (and always in the middle), Skip Dropout at each concatenation of the up path.
Between levels a strided conv (down) or nearest upsampling + conv (up) resamples; with
``resblock_updown`` (the released config) a ResBlock does, pooling / upsampling inside it as openai's.

    x_t (B, C, H, W), t (B,), units (B, N, D) -> predicted noise (B, C, H, W)
"""

from __future__ import annotations

import logging
import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ldm_dis.models.attention import SpatialTransformer
from ldm_dis.models.skip_dropout import SkipDropout, paper_levels

log = logging.getLogger(__name__)

def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim), [cos | sin] as in openai/LDM."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, timestep injection (scale-shift: norm(h) * (1 + s) + b), GroupNorm-SiLU-
    dropout-conv (zero-initialised), plus a 1x1 conv shortcut when the width changes.

    ``resample="down"`` / ``"up"``: openai's up/down ResBlock, which halves (2x2 average pooling) or
    doubles (nearest) the resolution of both paths between the first activation and the first conv."""

    def __init__(self, channels: int, emb_dim: int, out_channels: int, dropout: float, use_scale_shift_norm: bool,
                 resample: Optional[str] = None):
        super().__init__()
        if resample not in (None, "down", "up"):
            raise ValueError(f"resample={resample!r}: expected None, 'down' or 'up'")
        self.resample = resample
        self.use_scale_shift_norm = use_scale_shift_norm
        self.norm1 = nn.GroupNorm(32, channels)
        self.conv1 = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_channels if use_scale_shift_norm else out_channels)
        self.norm2 = nn.GroupNorm(32, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as its shortcut
        nn.init.zeros_(self.conv2.bias)
        self.shortcut = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)  # (B, C, H/2, W/2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(x))
        if self.resample is not None:
            h, x = self._resample(h), self._resample(x)
        h = self.conv1(h)
        e = self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, C' or 2C', 1, 1)
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.shortcut(x) + h


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x, emb=None):
        return self.conv(x)  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, emb=None):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)


class UNetBlock(nn.Module):
    """One entry of the down or up path: [ResBlock] [SpatialTransformer] [Down/Upsample or resampling
    ResBlock], each optional."""

    def __init__(self, res: Optional[ResBlock] = None, attn: Optional[SpatialTransformer] = None, resample: Optional[nn.Module] = None):
        super().__init__()
        self.res, self.attn, self.resample = res, attn, resample

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if self.res is not None:
            x = self.res(x, emb)
        if self.attn is not None:
            x = self.attn(x, context)
        if self.resample is not None:
            x = self.resample(x, emb)
        return x


class UNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: Optional[int] = None,
        base_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attention_downsample: Sequence[int] = (1, 2, 4),
        num_heads: int = 8,
        context_dim: int = 32,
        use_scale_shift_norm: bool = True,
        dropout: float = 0.1,
        skip_dropout: float = 0.2,
        skip_dropout_levels: Optional[Sequence[int]] = None,
        backbone_dropout: float = 0.0,
        resblock_updown: bool = False,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        self.base_channels = base_channels
        emb_dim = 4 * base_channels
        self.time_embed = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def res(c_in, c_out):
            return ResBlock(c_in, emb_dim, c_out, dropout, use_scale_shift_norm)

        def attn(c):
            return SpatialTransformer(c, num_heads, context_dim)

        def down(c):
            return ResBlock(c, emb_dim, c, dropout, use_scale_shift_norm, resample="down") if resblock_updown else Downsample(c)

        def up(c):
            return ResBlock(c, emb_dim, c, dropout, use_scale_shift_norm, resample="up") if resblock_updown else Upsample(c)

        # ---- down path: every output is kept as a skip, with its width and downsample factor
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.input_blocks = nn.ModuleList()
        skip_channels, self.skip_factors = [base_channels], [1]
        ch, factor = base_channels, 1
        level_factors = []
        for level, mult in enumerate(channel_mult):
            level_factors.append(factor)
            for _ in range(num_res_blocks):
                self.input_blocks.append(UNetBlock(res(ch, base_channels * mult), attn(base_channels * mult) if factor in attention_downsample else None))
                ch = base_channels * mult
                skip_channels.append(ch)
                self.skip_factors.append(factor)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(UNetBlock(resample=down(ch)))
                factor *= 2
                skip_channels.append(ch)
                self.skip_factors.append(factor)

        self.middle_block = UNetBlock(res(ch, ch), attn(ch))
        self.middle_res = res(ch, ch)

        # ---- up path: each block eats one skip (concatenated), the last of a level upsamples
        self.output_blocks = nn.ModuleList()
        self.up_factors: List[int] = []
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                c_out = base_channels * mult
                block = UNetBlock(res(ch + skip_channels.pop(), c_out), attn(c_out) if factor in attention_downsample else None)
                ch = c_out
                self.up_factors.append(factor)
                if level and i == num_res_blocks:
                    block.resample = up(ch)
                    factor //= 2
                self.output_blocks.append(block)

        self.out = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

        self.level_factors = level_factors
        levels = paper_levels(level_factors, attention_downsample) if skip_dropout_levels is None else list(skip_dropout_levels)
        if (skip_dropout > 0 or backbone_dropout > 0) and not set(levels) & set(level_factors):
            # e.g. cross-attention at every level: the paper's rule leaves no skip to drop
            log.warning("Skip Dropout is inactive: no level among %s is in skip_dropout_levels=%s", level_factors, levels)
        self.skip_dropout = SkipDropout(skip_dropout, levels, backbone_dropout)

    @classmethod
    def from_config(cls, cfg, in_channels: int, context_dim: int) -> "UNet":
        """``cfg`` is ``model.unet``; ``in_channels`` the latent channels; ``context_dim`` the unit size D."""
        return cls(
            in_channels=in_channels,
            base_channels=cfg.base_channels,
            channel_mult=tuple(cfg.channel_mult),
            num_res_blocks=cfg.num_res_blocks,
            attention_downsample=tuple(cfg.attention_downsample),
            num_heads=cfg.num_heads,
            context_dim=context_dim,
            use_scale_shift_norm=cfg.use_scale_shift_norm,
            dropout=cfg.dropout,
            skip_dropout=cfg.skip_dropout,
            skip_dropout_levels=cfg.skip_dropout_levels,
            backbone_dropout=cfg.backbone_dropout,
            resblock_updown=bool(cfg.resblock_updown),  # null = the paper's (see ldm_dis.config.protocol)
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) noisy latent, t (B,) integer timesteps, context (B, N, D) -> (B, C, H, W)."""
        emb = self.time_embed(timestep_embedding(t, self.base_channels).to(x.dtype))  # (B, 4*base)
        h = self.conv_in(x)
        skips = [h]
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_res(self.middle_block(h, emb, context), emb)
        for block, factor in zip(self.output_blocks, self.up_factors):
            h, skip = self.skip_dropout(h, skips.pop(), factor)
            h = block(torch.cat([h, skip], dim=1), emb, context)  # (B, C_h + C_skip, H, W) -> (B, C', H', W')
        return self.out(h)
