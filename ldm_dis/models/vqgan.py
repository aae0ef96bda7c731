"""The VQ-GAN first stage (paper Table 7), built on ``diffusers.VQModel``.

64x64x3 image -> encoder -> (B, embed_dim, 16, 16) latent -> vector quantizer -> decoder -> image.
The latent diffusion model works on the *pre-quantization* latent (the LDM convention): ``encode``
returns it, ``decode`` quantizes before decoding, so DDIM outputs snap back onto the codebook.

The LDM latent scale (``scale_by_std``: 1/std of the first training batch's latents) is a buffer of this
module, so it travels in every checkpoint that holds the first stage and is never recomputed on resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import nn

from ldm_dis.errors import UserInputError
from ldm_dis.models import taming_import
from ldm_dis.models.weights import load_strict


class FirstStage(nn.Module):
    """VQ-GAN autoencoder. Images are (B, 3, H, W) in [-1, 1]; latents (B, embed_dim, H/f, W/f) with
    f = 2 ** (len(channel_mult) - 1)."""

    def __init__(
        self,
        embed_dim: int = 3,
        n_embed: int = 2048,
        base_channels: int = 32,
        channel_mult: Tuple[int, ...] = (1, 2, 4),
        num_res_blocks: int = 2,
        dropout: float = 0.0,
        in_channels: int = 3,
    ):
        super().__init__()
        if dropout != 0.0:
            # diffusers' Encoder/Decoder take no dropout argument; the paper (Table 7) uses 0.
            raise UserInputError(f"model.first_stage.dropout={dropout}: only 0.0 is supported (paper Table 7)")
        channels = [base_channels * m for m in channel_mult]
        bad = [c for c in channels if c % 32]
        if bad:
            raise UserInputError(
                f"model.first_stage: channels {channels} must be multiples of 32 (GroupNorm with 32 groups); "
                f"change base_channels={base_channels} or channel_mult={list(channel_mult)}"
            )
        self.downsample_factor = 2 ** (len(channel_mult) - 1)
        self.embed_dim = embed_dim
        # Same layout as taming's Encoder/Decoder: mid-block attention, no attention in the levels.
        from diffusers import VQModel  # here: importing diffusers costs seconds, config checks need none of it

        self.vq = VQModel(
            in_channels=in_channels,
            out_channels=in_channels,
            down_block_types=("DownEncoderBlock2D",) * len(channels),
            up_block_types=("UpDecoderBlock2D",) * len(channels),
            block_out_channels=tuple(channels),
            layers_per_block=num_res_blocks,
            latent_channels=embed_dim,
            num_vq_embeddings=n_embed,
            vq_embed_dim=embed_dim,
            norm_num_groups=32,
        )
        # LDM latent scale; `latent_scale_set` records whether it was measured (a bool buffer, checkpointed).
        self.register_buffer("latent_scale", torch.ones(()))
        self.register_buffer("latent_scale_set", torch.zeros((), dtype=torch.bool))

    @classmethod
    def from_config(cls, cfg) -> "FirstStage":
        """``cfg`` is ``model.first_stage``."""
        return cls(
            embed_dim=cfg.embed_dim,
            n_embed=cfg.n_embed,
            base_channels=cfg.base_channels,
            channel_mult=tuple(cfg.channel_mult),
            num_res_blocks=cfg.num_res_blocks,
            dropout=cfg.dropout,
        )

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the decoder's last conv: the adaptive GAN weight compares gradient norms here."""
        return self.vq.decoder.conv_out.weight

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> pre-quantization latent (B, embed_dim, H/f, W/f)."""
        return self.vq.encode(x).latents

    def quantize(self, h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest codebook entries: (z_q (same shape as h), codebook+commitment loss (scalar), indices)."""
        z_q, loss, (_, _, indices) = self.vq.quantize(h)
        return z_q, loss, indices

    @torch.no_grad()
    def init_codebook_from(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> None:
        """Set the codebook to encoder outputs of images ``x`` (B, 3, H, W), drawn at random without
        replacement (with replacement when there are fewer latent vectors than codes)."""
        h = self.encode(x)
        vectors = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
        weight = self.vq.quantize.embedding.weight
        n = weight.shape[0]
        if len(vectors) >= n:
            pick = torch.randperm(len(vectors), generator=generator)[:n]
        else:
            pick = torch.randint(len(vectors), (n,), generator=generator)
        weight.copy_(vectors[pick].to(weight.dtype))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Pre-quantization latent (B, embed_dim, h, w) -> image (B, 3, h*f, w*f); quantizes first."""
        z_q, _, _ = self.quantize(h)
        return self.decode_quantized(z_q)

    def decode_quantized(self, z_q: torch.Tensor) -> torch.Tensor:
        return self.vq.decoder(self.vq.post_quant_conv(z_q))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction (B, 3, H, W) and the codebook/commitment loss (scalar)."""
        z_q, codebook_loss, _ = self.quantize(self.encode(x))
        return self.decode_quantized(z_q), codebook_loss

    # --- the LDM latent scale ------------------------------------------------------------------------
    @torch.no_grad()
    def set_latent_scale_from(self, latents: torch.Tensor) -> float:
        """``scale_by_std``: scale = 1 / std of these (unscaled) latents; stored in the buffer."""
        std = latents.detach().float().flatten().std()
        if not torch.isfinite(std) or std <= 0:
            raise ValueError(f"cannot set the latent scale: std of the first batch's latents is {std.item()}")
        self.latent_scale.fill_(1.0 / std.item())
        self.latent_scale_set.fill_(True)
        return float(self.latent_scale)

    def encode_scaled(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> latent as the diffusion model sees it (multiplied by the latent scale)."""
        return self.encode(x) * self.latent_scale

    def decode_scaled(self, z: torch.Tensor) -> torch.Tensor:
        """Diffusion latent -> image (divides by the latent scale, then quantizes and decodes)."""
        return self.decode(z / self.latent_scale)


# --- loading a trained first stage ------------------------------------------------------------------
def load_first_stage(path, cfg) -> FirstStage:
    """A frozen-ready FirstStage from ``path``: our safetensors file (keys of ``FirstStage.state_dict()``,
    optionally under one prefix such as ``first_stage.``) or a taming/CompVis ``.ckpt``. ``cfg`` is
    ``model.first_stage``; a file that does not fit it is an error naming the keys or shapes. A folder
    means its ``model.safetensors`` (a checkpoint folder written by the trainer)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise UserInputError(f"first stage: folder {str(path)!r} holds no model.safetensors")
        path = path / "model.safetensors"
    if not path.is_file():
        raise UserInputError(f"first stage checkpoint {str(path)!r} does not exist")
    model = FirstStage.from_config(cfg)
    expected = model.state_dict()
    if path.suffix == ".safetensors":
        from ldm_dis.models.weights import read_tensors  # a damaged file is a clear error

        sd = _strip_prefix(read_tensors(path), expected)
        hint = ""
    else:
        raw = taming_import.read_checkpoint(path)
        if not taming_import.is_taming_state_dict(raw):
            raise UserInputError(f"{str(path)!r} is neither a safetensors file nor a taming/CompVis VQ-GAN checkpoint")
        sd = taming_import.convert_taming_state_dict(raw).first_stage
        for k in ("latent_scale", "latent_scale_set"):  # not in taming files: measured on the first LDM batch
            sd[k] = expected[k]
        hint = f"; the file fits model.first_stage={taming_import.describe_taming_architecture(raw)}"
    load_strict(model, sd, f"first stage checkpoint {str(path)!r} (model.first_stage)", hint)
    return model


def _strip_prefix(sd, expected):
    if set(sd) >= set(expected) - {"latent_scale", "latent_scale_set"}:
        return sd
    prefixes = {k.split(".", 1)[0] for k in sd if "." in k}
    for p in sorted(prefixes):
        sub = {k[len(p) + 1:]: v for k, v in sd.items() if k.startswith(p + ".")}
        if set(expected) <= set(sub):
            return sub
    return sd
