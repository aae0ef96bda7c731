"""Read a VQ-GAN saved by the original taming-transformers / CompVis latent-diffusion code.

Their ``.ckpt`` (a Lightning checkpoint; ``state_dict`` inside) names the autoencoder
``encoder.down.{i}.block.{j}.norm1 ...``, ``encoder.mid.attn_1.q`` (1x1 convs), ``quantize.embedding``,
``quant_conv``, ``post_quant_conv``, ``decoder.up.{i}...`` (``up`` indexed by resolution level, i.e. in
reverse order of application) and the training loss ``loss.discriminator.main.*`` /
``loss.perceptual_loss.*``. This module renames those keys into the diffusers ``VQModel`` layout of
:class:`ldm_dis.models.vqgan.FirstStage`. The file is read with ``torch.load(weights_only=True)`` (no
pickled code runs). Nothing is guessed: every key is either mapped or reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import torch

from ldm_dis.errors import CheckpointError, UserInputError

Tensor = torch.Tensor

_RESNET_PARTS = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut"}
_ATTN_PARTS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


@dataclass
class TamingWeights:
    first_stage: Dict[str, Tensor]  # keys of FirstStage.state_dict() (``vq.`` prefix), buffers excluded
    discriminator: Dict[str, Tensor] = field(default_factory=dict)  # keys of PatchDiscriminator
    perceptual: Dict[str, Tensor] = field(default_factory=dict)  # LPIPS layout (see perceptual.py)


def read_checkpoint(path: str | Path) -> Dict[str, Tensor]:
    """The tensor state dict of a ``.ckpt``/``.pt`` file (its ``state_dict`` entry when there is one)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"checkpoint file {str(path)!r} does not exist")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the message matters, not the type
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next((line for line in lines if "GLOBAL" in line), lines[0] if lines else type(exc).__name__)
        raise CheckpointError(f"cannot read {str(path)!r} with torch.load(weights_only=True), which runs no code "
                              f"from the file: {reason}") from None
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise UserInputError(f"{str(path)!r} holds no state dict of tensors")
    return sd


def is_taming_state_dict(sd: Dict[str, Tensor]) -> bool:
    return any(k.startswith("encoder.down.") for k in sd) and "quantize.embedding.weight" in sd


def _num_levels(sd: Dict[str, Tensor]) -> int:
    levels = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.(\d+)\.", k))}
    return max(levels) + 1


def _rename(key: str, num_levels: int) -> str | None:
    """taming key -> FirstStage key, or None when the key is not part of the autoencoder."""
    m = re.match(r"(encoder|decoder)\.(.*)", key)
    if m is None:
        if key.split(".")[0] in ("quant_conv", "post_quant_conv", "quantize"):
            return f"vq.{key}"
        return None
    part, rest = m.groups()
    simple = {"conv_in": "conv_in", "norm_out": "conv_norm_out", "conv_out": "conv_out"}
    head, _, tail = rest.partition(".")
    if head in simple:
        return f"vq.{part}.{simple[head]}.{tail}"
    if (mm := re.match(r"mid\.block_(\d)\.(\w+)\.(weight|bias)$", rest)) and mm.group(2) in _RESNET_PARTS:
        return f"vq.{part}.mid_block.resnets.{int(mm.group(1)) - 1}.{_RESNET_PARTS[mm.group(2)]}.{mm.group(3)}"
    if (mm := re.match(r"mid\.attn_1\.(\w+)\.(weight|bias)$", rest)) and mm.group(1) in _ATTN_PARTS:
        return f"vq.{part}.mid_block.attentions.0.{_ATTN_PARTS[mm.group(1)]}.{mm.group(2)}"
    if (mm := re.match(r"(down|up)\.(\d+)\.block\.(\d+)\.(\w+)\.(weight|bias)$", rest)) and mm.group(4) in _RESNET_PARTS:
        level = int(mm.group(2))
        if mm.group(1) == "down" and part == "encoder":
            return f"vq.encoder.down_blocks.{level}.resnets.{mm.group(3)}.{_RESNET_PARTS[mm.group(4)]}.{mm.group(5)}"
        if mm.group(1) == "up" and part == "decoder":  # taming's up[i] is diffusers' up_blocks[n-1-i]
            return f"vq.decoder.up_blocks.{num_levels - 1 - level}.resnets.{mm.group(3)}.{_RESNET_PARTS[mm.group(4)]}.{mm.group(5)}"
    if part == "encoder" and (mm := re.match(r"down\.(\d+)\.downsample\.conv\.(weight|bias)$", rest)):
        return f"vq.encoder.down_blocks.{mm.group(1)}.downsamplers.0.conv.{mm.group(2)}"
    if part == "decoder" and (mm := re.match(r"up\.(\d+)\.upsample\.conv\.(weight|bias)$", rest)):
        return f"vq.decoder.up_blocks.{num_levels - 1 - int(mm.group(1))}.upsamplers.0.conv.{mm.group(2)}"
    return None


def convert_taming_state_dict(sd: Dict[str, Tensor]) -> TamingWeights:
    """Rename a taming/CompVis VQ-GAN state dict; keys that fit nowhere are an error naming them."""
    if not is_taming_state_dict(sd):
        raise UserInputError("not a taming/CompVis VQ-GAN state dict (no encoder.down.* / quantize.embedding.weight keys)")
    n = _num_levels(sd)
    out = TamingWeights(first_stage={})
    unknown: List[str] = []
    for key, value in sd.items():
        if key.startswith("loss.discriminator."):
            out.discriminator[key[len("loss.discriminator."):]] = value
        elif key.startswith("loss.perceptual_loss."):
            out.perceptual[key[len("loss.perceptual_loss."):]] = value
        elif (new := _rename(key, n)) is not None:
            if ".mid_block.attentions.0.to_" in new and new.endswith("weight") and value.dim() == 4:
                value = value[:, :, 0, 0]  # taming's 1x1 conv q/k/v/proj_out -> diffusers' Linear
            out.first_stage[new] = value
        else:
            unknown.append(key)
    if unknown:
        raise UserInputError(
            f"taming checkpoint has {len(unknown)} keys with no place in the VQ-GAN first stage: "
            f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''} (attention inside the levels is not supported: "
            "paper Table 7 has none)"
        )
    return out


def describe_taming_architecture(sd: Dict[str, Tensor]) -> Dict[str, object]:
    """The ``model.first_stage`` values that fit this taming state dict (for error messages)."""
    n = _num_levels(sd)
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))}
    base = sd["encoder.conv_in.weight"].shape[0]
    mult = [sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // base for i in range(n)]
    n_embed, embed_dim = sd["quantize.embedding.weight"].shape
    return {"embed_dim": int(embed_dim), "n_embed": int(n_embed), "base_channels": int(base),
            "channel_mult": mult, "num_res_blocks": len(blocks)}
