"""The U-Net of a released dis-dis checkpoint (CompVis ``openaimodel.UNetModel`` with Skip Dropout, under
``model.diffusion_model.*``) and the names of our :class:`~ldm_dis.models.unet.UNet` in it.

    released                                              ours
    time_embed.{0,2}                                      time_embed.{0,2}
    input_blocks.0.0 (conv)                               conv_in
    input_blocks.i.{0: ResBlock, 1: SpatialTransformer}   input_blocks.{i-1}.{res, attn}
    input_blocks.i.0 (ResBlock(down) or Downsample.op)    input_blocks.{i-1}.resample (.conv for op)
    middle_block.{0, 1, 2}                                middle_block.res, middle_block.attn, middle_res
    output_blocks.i.{0, [1: SpatialTransformer], last}    output_blocks.i.{res, attn, resample}
    out.{0,2}                                             out.{0,2}
    ResBlock: in_layers.{0,2}, emb_layers.1, out_layers.{0,3}, skip_connection
           -> norm1, conv1, emb_proj, norm2, conv2, shortcut
    SpatialTransformer: norm, proj_in, proj_out, transformer_blocks.0.{norm1-3, attn1, attn2, ff.net.0.proj, ff.net.2}
           -> norm, proj_in, proj_out, block.{norm1-3, self_attn, cross_attn, ff.proj, ff.out}; to_out.0 -> to_out

The names are derived from our module (:func:`released_unet_names`), so a file whose layout differs shows up
as missing or unexpected keys; :func:`describe_released_unet` reads the ``model.unet`` values a file was
trained with from its keys and shapes (the number of heads is not in the weights: it comes from the config).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List

import torch
from torch import nn

from ldm_dis.errors import CheckpointError
from ldm_dis.models.attention import SpatialTransformer
from ldm_dis.models.unet import Downsample, ResBlock, Upsample, UNet

_RES = {"norm1": "in_layers.0", "conv1": "in_layers.2", "emb_proj": "emb_layers.1", "norm2": "out_layers.0",
        "conv2": "out_layers.3", "shortcut": "skip_connection"}
_ATTN = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0"}
_ST = {"norm": "norm", "proj_in": "proj_in", "proj_out": "proj_out",
       **{f"block.norm{i}": f"transformer_blocks.0.norm{i}" for i in (1, 2, 3)},
       **{f"block.self_attn.{a}": f"transformer_blocks.0.attn1.{b}" for a, b in _ATTN.items()},
       **{f"block.cross_attn.{a}": f"transformer_blocks.0.attn2.{b}" for a, b in _ATTN.items()},
       "block.ff.proj": "transformer_blocks.0.ff.net.0.proj", "block.ff.out": "transformer_blocks.0.ff.net.2"}


def _table(module: nn.Module) -> Dict[str, str]:
    """Our sub-module path -> the released one, inside one ResBlock / SpatialTransformer / resampler."""
    if isinstance(module, ResBlock):
        return _RES
    if isinstance(module, SpatialTransformer):
        return _ST
    if isinstance(module, Downsample):
        return {"conv": "op"}
    if isinstance(module, Upsample):
        return {"conv": "conv"}
    raise TypeError(f"no released counterpart for {type(module).__name__}")


def released_unet_names(unet: UNet) -> Dict[str, str]:
    """Each key of ``unet.state_dict()`` -> its key in the released ``UNetModel`` (without ``model.diffusion_model.``)."""
    parts: Dict[str, tuple] = {"conv_in": ("input_blocks.0.0", None), "time_embed": ("time_embed", None),
                               "out": ("out", None)}

    def block(ours: str, released: str, b) -> None:
        subs = [("res", b.res), ("attn", b.attn), ("resample", b.resample)]
        for j, (name, module) in enumerate((n, m) for n, m in subs if m is not None):
            parts[f"{ours}.{name}"] = (f"{released}.{j}", module)

    for i, b in enumerate(unet.input_blocks):
        block(f"input_blocks.{i}", f"input_blocks.{i + 1}", b)
    block("middle_block", "middle_block", unet.middle_block)
    parts["middle_res"] = ("middle_block.2", unet.middle_res)
    for i, b in enumerate(unet.output_blocks):
        block(f"output_blocks.{i}", f"output_blocks.{i}", b)

    names, longest_first = {}, sorted(parts, key=len, reverse=True)
    for key in unet.state_dict():
        prefix = next(p for p in longest_first if key.startswith(p + "."))
        released, module = parts[prefix]
        path, _, param = key[len(prefix) + 1:].rpartition(".")
        inner = path if module is None else _table(module)[path]
        names[key] = f"{released}.{inner}.{param}" if inner else f"{released}.{param}"
    return names


def _sub_kind(keys: List[str]) -> str:
    """What a released sub-module is, from its keys (relative to it)."""
    if any(k.startswith("transformer_blocks.") for k in keys):
        return "attn"
    if any(k.startswith("in_layers.") for k in keys):
        return "res"
    if keys and all(k.startswith("op.") for k in keys):
        return "down"
    if keys and all(k.startswith("conv.") for k in keys):
        return "up"
    if any(k.startswith("qkv.") for k in keys):
        return "self-attention AttentionBlock"
    return "unknown"


def _kinds(sd: Dict[str, torch.Tensor], pattern: str) -> Dict[int, Dict[int, str]]:
    """{block: {sub-module: kind}} of the keys matching ``pattern`` (groups: block, sub-module, rest)."""
    found: Dict[int, Dict[int, List[str]]] = {}
    for key in sd:
        m = re.match(pattern, key)
        if m:
            block, sub = (int(m.group(1)), int(m.group(2))) if m.lastindex == 3 else (0, int(m.group(1)))
            found.setdefault(block, {}).setdefault(sub, []).append(m.group(m.lastindex))
    return {b: {j: _sub_kind(keys) for j, keys in subs.items()} for b, subs in found.items()}


def _sequence(kinds: Dict[int, Dict[int, str]], section: str) -> List[List[str]]:
    if sorted(kinds) != list(range(len(kinds))) or any(sorted(k) != list(range(len(k))) for k in kinds.values()):
        raise CheckpointError(f"the U-Net's {section} are not numbered 0..n-1: not a UNetModel layout")
    return [[kinds[b][j] for j in range(len(kinds[b]))] for b in range(len(kinds))]


def describe_released_unet(sd: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    """The config values (``model.unet.*``, plus the latent channels and the unit size) a released U-Net
    state dict (keys without ``model.diffusion_model.``) was built with. A U-Net that ours cannot express
    (class labels, several transformer blocks, self-attention blocks, other input than output channels, a
    transformer narrower than its channels) is a CheckpointError naming what differs."""
    def refuse(what: str):
        raise CheckpointError(f"the checkpoint's U-Net has {what}; ldm_dis' U-Net has no counterpart")

    if "input_blocks.0.0.weight" not in sd or "out.2.weight" not in sd:
        raise CheckpointError("no input_blocks.0.0 / out.2 convolutions: not a UNetModel")
    if any(k.startswith("label_emb.") for k in sd):
        refuse("class labels (label_emb)")
    if any(k.startswith("id_predictor.") for k in sd):
        refuse("a codebook-id predictor (id_predictor)")
    if any(re.search(r"transformer_blocks\.[1-9]", k) for k in sd):
        refuse("several blocks per SpatialTransformer (transformer_depth > 1)")
    for k, v in sd.items():
        if k.endswith("proj_in.weight") and (v.dim() != 4 or v.shape[0] != v.shape[1]):
            refuse(f"a SpatialTransformer projection of shape {tuple(v.shape)} at {k} (heads x dim_head other "
                   "than its channels, or linear projections)")
    inputs = _sequence(_kinds(sd, r"input_blocks\.(\d+)\.(\d+)\.(.+)$"), "input_blocks")[1:]  # [0] is the conv
    outputs = _sequence(_kinds(sd, r"output_blocks\.(\d+)\.(\d+)\.(.+)$"), "output_blocks")
    middle = _sequence(_kinds(sd, r"middle_block\.(\d+)\.(.+)$"), "middle_block")
    odd = {kind for b in inputs + outputs + middle for kind in b} - {"res", "attn", "down", "up"}
    if odd:
        refuse(f"sub-modules of kind {sorted(odd)}")
    if middle != [["res", "attn", "res"]]:
        refuse(f"a middle block of {middle[0] if middle else []} (ResBlock, SpatialTransformer, ResBlock expected)")

    def split(kinds: List[str]):  # (core: ResBlock [+ SpatialTransformer], resampler after it or [])
        core = kinds[:2] if kinds[1:2] == ["attn"] else kinds[:1]
        return core, kinds[len(core):]

    # the up path shows the levels: the last block of every level but the top one resamples
    ups = [i for i, kinds in enumerate(outputs) if split(kinds)[1]]
    levels = len(ups) + 1
    per_level = len(outputs) // levels
    if not outputs or len(outputs) % levels or per_level < 2 or ups != [per_level * (k + 1) - 1 for k in range(levels - 1)]:
        raise CheckpointError(f"the U-Net's output blocks resample at {ups} of {len(outputs)}: not a UNetModel layout")
    r = per_level - 1
    if len(inputs) != levels * (r + 1) - 1:
        raise CheckpointError(f"the U-Net has {len(inputs) + 1} input blocks; {levels} levels of {r} ResBlocks "
                              f"make {levels * (r + 1)}: not a UNetModel layout")
    base = int(sd["input_blocks.0.0.weight"].shape[0])
    mult, attention, downs = [], [], []
    for level in range(levels):
        first = level * (r + 1)  # index in `inputs` (released index first + 1)
        width = int(sd[f"input_blocks.{first + 1}.0.out_layers.3.weight"].shape[0])
        if width % base:
            refuse(f"a level of width {width}, not a multiple of {base} (channel_mult)")
        mult.append(width // base)
        cores = [tuple(k) for k in inputs[first:first + r]]
        cores += [tuple(split(outputs[(levels - 1 - level) * per_level + j])[0]) for j in range(per_level)]
        if set(cores) not in ({("res",)}, {("res", "attn")}):
            raise CheckpointError(f"level {level} of the U-Net mixes {sorted(set(cores))}: not a UNetModel layout")
        if ("res", "attn") in cores:
            attention.append(2**level)
        if level < levels - 1:
            downs += inputs[first + r]
    up_kinds = {k for i in ups for k in split(outputs[i])[1]}
    described = {
        "model.unet.base_channels": base,
        "model.unet.channel_mult": mult,
        "model.unet.num_res_blocks": r,
        "model.unet.attention_downsample": attention,
        "model.unet.use_scale_shift_norm": bool(sd["input_blocks.1.0.emb_layers.1.weight"].shape[0] == 2 * base * mult[0]),
    }
    if levels > 1:
        if (set(downs), up_kinds) not in (({"res"}, {"res"}), ({"down"}, {"up"})):
            refuse(f"resampling by {sorted(set(downs))} down and {sorted(up_kinds)} up")
        described["model.unet.resblock_updown"] = set(downs) == {"res"}
    in_ch, out_ch = int(sd["input_blocks.0.0.weight"].shape[1]), int(sd["out.2.weight"].shape[0])
    if in_ch != out_ch:
        refuse(f"{in_ch} input and {out_ch} output channels")
    described["model.first_stage.embed_dim"] = in_ch
    context = next((v.shape[1] for k, v in sd.items() if k.endswith("attn2.to_k.weight")), None)
    if context is None:
        raise CheckpointError("the U-Net has no cross-attention (attn2.to_k): it cannot be conditioned on units")
    described["model.encoder.unit_dim"] = int(context)
    return described
