"""Read a latent diffusion model trained by the released dis-dis code (youngjun-jun/dis-dis) into a
:class:`~ldm_dis.models.ldm.LatentDiffusion`.

    model = import_disdis("epoch=000123.ckpt", gaussians="gaussian/gaussian-epoch=000123.npz")
    model.save_pretrained("imported/shapes3d")          # then LatentDiffusion.from_pretrained("imported/shapes3d")

The ``.ckpt`` is a Lightning checkpoint; its ``state_dict`` holds

    model.diffusion_model.*   the U-Net (openaimodel UNetModel with Skip Dropout)  -> unet (disdis_unet.py)
    model_ema.*               its EMA (LitEma: the parameter names without dots, plus decay, num_updates)
    cond_stage_model.*        FeatureExtractor: image_encoder.encoder.{i} (conv, BatchNorm), image_encoder.fc.{0,2,4},
                              mlps.{u}.layers.{0,2,4} (one MLP per unit)     -> feature_extractor: cnn.{i}, head.{1,3,5},
                                                                                unit_mlps.{weights,biases}.{0,1,2}[u]
    first_stage_model.*       the VQ-GAN, taming layout                     -> first_stage (taming_import.py)
    scale_factor              1 / std of the first batch's latents         -> first_stage.latent_scale
    betas, alphas_cumprod     the noise schedule, checked against model.diffusion; the other schedule buffers
                              (sqrt_alphas_cumprod, posterior_*, ...) follow from betas and are not read

and the Gaussian file (``gaussian/gaussian-epoch=NNNNNN.npz``) becomes DyGA's anchors
(:mod:`ldm_dis.bottlenecks.dyga.released_gaussians`). The file is read with ``torch.load(weights_only=True)``;
every key is read or named in an error, and a part whose keys or shapes differ from the model's is an error
naming them in the file's own names. Without a config the architecture is the one the file was trained with
(read from its shapes, under ``protocol: released``); with one, any difference is an error listing the keys.
Not in the weights, so from the config: the number of attention heads (released: 8), dropout rates, the
extractor's final ReLU (released: on).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
from omegaconf import OmegaConf

from ldm_dis.errors import CheckpointError
from ldm_dis.models.disdis_unet import describe_released_unet, released_unet_names
from ldm_dis.models.feature_extractor import FeatureExtractor
from ldm_dis.models.taming_import import convert_taming_state_dict, describe_taming_architecture, read_checkpoint
from ldm_dis.models.weights import check_fit, load_strict

Tensor = torch.Tensor

PARTS = {"unet": "model.diffusion_model.", "ema": "model_ema.", "extractor": "cond_stage_model.",
         "first_stage": "first_stage_model."}
SCHEDULE_DERIVED = {"alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
                    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
                    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1",
                    "posterior_mean_coef2", "shift_coef", "ddim_coef"}
TOP_LEVEL = {"betas", "alphas_cumprod", "scale_factor"}
EMA_COUNTERS = {"decay", "num_updates"}


def split_checkpoint(sd: Dict[str, Tensor], source: str) -> Dict[str, Dict[str, Tensor]]:
    """The state dict's parts (prefix removed) and ``top`` (scale_factor, betas, alphas_cumprod); a key
    of no part is a CheckpointError naming it."""
    parts: Dict[str, Dict[str, Tensor]] = {name: {} for name in (*PARTS, "top")}
    unknown = []
    for key, value in sd.items():
        part = next((name for name, prefix in PARTS.items() if key.startswith(prefix)), None)
        if part is not None:
            parts[part][key[len(PARTS[part]):]] = value
        elif key in TOP_LEVEL:
            parts["top"][key] = value
        elif key not in SCHEDULE_DERIVED:
            unknown.append(key)
    if not parts["unet"] or not parts["extractor"]:
        raise CheckpointError(f"{source} is not a dis-dis latent diffusion checkpoint (no model.diffusion_model.* "
                              "or cond_stage_model.* keys)")
    missing = sorted(TOP_LEVEL - set(parts["top"]))
    if unknown or missing:
        raise CheckpointError(f"{source} does not fit a dis-dis latent diffusion model: unexpected keys "
                              f"{sorted(unknown)[:10]}, missing keys {missing}")
    return parts


# ------------------------------------------------------------------------------------ feature extractor
def describe_released_extractor(sd: Dict[str, Tensor]) -> Dict[str, Any]:
    """``model.encoder.*`` and ``data.resolution`` of a released FeatureExtractor state dict."""
    convs = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"image_encoder\.encoder\.(\d+)\.weight", k))
                   and sd[k].dim() == 4)
    fcs = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"image_encoder\.fc\.(\d+)\.weight", k)))
    layers = sorted({int(m.group(1)) for k in sd if (m := re.fullmatch(r"mlps\.0\.layers\.(\d+)\.weight", k))})
    if not convs or len(fcs) not in (2, 3) or not layers:
        raise CheckpointError("cond_stage_model.* is not the released FeatureExtractor (image_encoder.encoder, "
                              "image_encoder.fc, mlps)")
    conv = [sd[f"image_encoder.encoder.{i}.weight"] for i in convs]
    fc = [sd[f"image_encoder.fc.{i}.weight"] for i in fcs]
    mlp = [sd[f"mlps.0.layers.{i}.weight"] for i in layers]
    if conv[0].shape[1] != 3:
        raise CheckpointError(f"the feature extractor reads {conv[0].shape[1]} image channels; ours reads 3")
    channels = [int(w.shape[0]) for w in conv[1:]]
    side = int(round((fc[0].shape[1] / conv[-1].shape[0]) ** 0.5))
    units = {int(m.group(1)) for k in sd if (m := re.match(r"mlps\.(\d+)\.", k))}
    if len(units) != fc[-1].shape[0]:
        raise CheckpointError(f"the feature extractor has {fc[-1].shape[0]} units but {len(units)} unit MLPs")
    described = {
        "model.encoder.num_units": int(fc[-1].shape[0]),
        "model.encoder.unit_dim": int(mlp[-1].shape[0]),
        "model.encoder.stem_channels": int(conv[0].shape[0]),
        "model.encoder.channels": channels,
        "model.encoder.hidden": int(fc[-2].shape[0]),
        "model.encoder.extra_fc": len(fc) == 3,
        "model.encoder.unit_mlp": [int(w.shape[0]) for w in mlp[:-1]],
        "data.resolution": side * 2 ** len(channels),
    }
    if len(fc) == 3:
        described["model.encoder.extra_fc_width"] = int(fc[0].shape[0])
    return described


def released_extractor_names(fx: FeatureExtractor) -> Dict[str, object]:
    """Our extractor key -> its released key, or for the stacked unit MLPs the list of per-unit keys."""
    names: Dict[str, object] = {}
    for key in fx.state_dict():
        part, rest = key.split(".", 1)
        if part == "cnn":
            names[key] = f"image_encoder.encoder.{rest}"
        elif part == "head":
            index, param = rest.split(".", 1)
            names[key] = f"image_encoder.fc.{int(index) - 1}.{param}"  # head.0 is the Flatten
        else:  # unit_mlps.weights.j (N, in, out) / unit_mlps.biases.j (N, out)
            kind, j = rest.split(".")
            param = "weight" if kind == "weights" else "bias"
            names[key] = [f"mlps.{u}.layers.{2 * int(j)}.{param}" for u in range(fx.num_units)]
    return names


def _extractor_state(fx: FeatureExtractor, sd: Dict[str, Tensor], source: str, hint: str) -> Dict[str, Tensor]:
    names = released_extractor_names(fx)
    expected = {}
    for key, value in fx.state_dict().items():
        if isinstance(names[key], list):  # released nn.Linear: weight (out, in) per unit
            shape = tuple(value.shape[1:][::-1])
            expected.update({name: shape for name in names[key]})
        else:
            expected[names[key]] = tuple(value.shape)
    check_fit(expected, sd, f"{source} (cond_stage_model.*)", hint)
    state = {}
    for key, name in names.items():
        if isinstance(name, list):
            state[key] = torch.stack([sd[n].t() if sd[n].dim() == 2 else sd[n] for n in name])
        else:
            state[key] = sd[name]
    return state


# ---------------------------------------------------------------------------------------------- U-Net
def lit_ema_name(key: str) -> str:
    """The LitEma buffer of the released U-Net parameter ``key`` (``model_ema.<this>``)."""
    return f"diffusion_model.{key}".replace(".", "")


def _unet_state(unet, parts: Dict[str, Dict[str, Tensor]], ema: bool, source: str, hint: str) -> Dict[str, Tensor]:
    names = released_unet_names(unet)
    shapes = {names[k]: tuple(v.shape) for k, v in unet.state_dict().items()}
    check_fit(shapes, parts["unet"], f"{source} (model.diffusion_model.*)", hint)
    shadows = {lit_ema_name(k): k for k in shapes}
    if len(shadows) != len(shapes):
        raise CheckpointError(f"{source}: two U-Net parameters share one LitEma name (dots removed); the EMA "
                              "cannot be told apart: import the live U-Net (ema=False)")
    held = parts["ema"]
    if held:
        check_fit({**{s: shapes[k] for s, k in shadows.items()}, **{c: () for c in EMA_COUNTERS}}, held,
                  f"{source} (model_ema.*)", "; LitEma holds one buffer per U-Net parameter, decay and num_updates")
    elif ema:
        raise CheckpointError(f"{source} holds no EMA (model_ema.*: the run had use_ema: false); import the live "
                              "U-Net (ema=False, --live)")
    if ema:
        return {k: held[lit_ema_name(names[k])] for k in names}
    return {k: parts["unet"][names[k]] for k in names}


# ------------------------------------------------------------------------------------- noise schedule
def describe_released_schedule(betas: Tensor) -> Dict[str, Any]:
    """``model.diffusion.*`` of a released ``betas`` buffer: the LDM "linear" schedule (linear in sqrt,
    our ``scaled_linear``) or "sqrt_linear" (linear, our ``linear``)."""
    b = betas.double()
    t = torch.linspace(0, 1, len(b), dtype=torch.float64)
    for name, values in (("scaled_linear", b.sqrt()), ("linear", b)):
        line = values[0] + (values[-1] - values[0]) * t
        if torch.allclose(values, line, rtol=1e-4, atol=0):
            return {"model.diffusion.num_train_timesteps": len(b), "model.diffusion.beta_schedule": name,
                    "model.diffusion.beta_start": float(f"{b[0].item():.6g}"),
                    "model.diffusion.beta_end": float(f"{b[-1].item():.6g}")}
    raise CheckpointError(f"the checkpoint's betas ({len(b)} steps, {b[0].item():.4g} ... {b[-1].item():.4g}) are "
                          "neither linear nor linear in sqrt; ldm_dis cannot rebuild that schedule")


def check_schedule(scheduler, top: Dict[str, Tensor], source: str) -> None:
    """The model's DDPM schedule is the file's (betas and alphas_cumprod, relative 1e-4)."""
    ours = {"betas": scheduler.betas, "alphas_cumprod": scheduler.alphas_cumprod}
    for name, mine in ours.items():
        theirs = top[name].float()
        if theirs.shape != mine.shape or not torch.allclose(theirs, mine.float(), rtol=1e-4, atol=1e-8):
            c = scheduler.config
            raise CheckpointError(
                f"{source}: the noise schedule ({name}) differs from model.diffusion (num_train_timesteps="
                f"{c.num_train_timesteps}, beta_start={c.beta_start}, beta_end={c.beta_end}, beta_schedule="
                f"{c.beta_schedule}); the file's is {describe_released_schedule(top['betas'])}")


# ------------------------------------------------------------------------------------------- config
def _plain(value):
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def config_differences(cfg, described: Dict[str, Any]) -> list:
    """(key, config value, file value) for every described key the config sets otherwise."""
    out = []
    for key, value in described.items():
        current = _plain(OmegaConf.select(cfg, key))
        if key == "model.unet.resblock_updown":
            current = bool(current)  # null reads as the paper's choice, false
        if key == "model.unet.attention_downsample":
            current, value = sorted(current), sorted(value)
        if current != value:
            out.append((key, current, value))
    return out


def describe_checkpoint(parts: Dict[str, Dict[str, Tensor]]) -> Dict[str, Any]:
    """Every config value the file's shapes fix (architecture, resolution, schedule)."""
    described: Dict[str, Any] = {}
    readers = (("first_stage_model", lambda sd: {f"model.first_stage.{k}": v for k, v in describe_taming_architecture(sd).items()}),
               ("cond_stage_model", describe_released_extractor), ("model.diffusion_model", describe_released_unet))
    found = []
    for (prefix, read), part in zip(readers, ("first_stage", "extractor", "unet")):
        try:
            found.append(read(parts[part]))
        except KeyError as exc:  # a key its layout always has
            raise CheckpointError(f"{prefix}.* lacks {exc} (missing keys)") from None
    for values in (*found, describe_released_schedule(parts["top"]["betas"])):
        for key, value in values.items():
            if key in described and described[key] != value:
                raise CheckpointError(f"the checkpoint disagrees with itself on {key}: {described[key]} and {value}")
            described[key] = value
    return described


def released_config(described: Dict[str, Any], bottleneck: str, k_max: int, overrides: Sequence[str] = ()):
    """The config of a file with no config given: the file's architecture under ``protocol: released``."""
    from ldm_dis.config.loading import load_config

    dotlist = [f"{k}={json.dumps(v)}" for k, v in described.items()]
    return load_config(None, ["protocol=released", *dotlist, f"model.bottleneck.kind={bottleneck}",
                              f"model.bottleneck.dyga.k_max={k_max}", *overrides])


# ------------------------------------------------------------------------------------------- import
@dataclass
class DisdisFiles:
    """A released checkpoint read and checked for layout: its parts, the config values its shapes fix, and
    the per-unit mixtures of its Gaussian file (None without one)."""

    source: str
    parts: Dict[str, Dict[str, Tensor]]
    described: Dict[str, Any]
    mixtures: Optional[list] = None
    gaussians: Optional[str] = None


def read_disdis(ckpt: str | Path, gaussians: Optional[str | Path] = None) -> DisdisFiles:
    """Read a released ``.ckpt`` (``torch.load(weights_only=True)``) and its Gaussian file."""
    from ldm_dis.bottlenecks.dyga.released_gaussians import read_released_gaussians

    source = str(ckpt)
    parts = split_checkpoint(read_checkpoint(ckpt), source)
    if not parts["first_stage"]:
        raise CheckpointError(f"{source} holds no first_stage_model.* (the VQ-GAN)")
    mixtures = read_released_gaussians(gaussians) if gaussians is not None else None
    return DisdisFiles(source, parts, describe_checkpoint(parts), mixtures, None if gaussians is None else str(gaussians))


def disdis_config(files: DisdisFiles, cfg=None, overrides: Sequence[str] = ()):
    """The whole config of the imported model: ``cfg`` (a loaded config, left unchanged) checked against the
    files, or, when None, the file's own architecture under ``protocol: released`` with ``overrides`` (what
    the weights do not fix, such as ``model.unet.num_heads``, or the ``data`` section for the pictures)."""
    described, mixtures = files.described, files.mixtures
    if cfg is None:
        k_max = max([32, *(len(m) for m, _, _ in mixtures or [])])
        cfg = released_config(described, "dyga" if mixtures else "none", k_max, overrides)
    elif overrides:
        raise ValueError("overrides apply to the file's own config; merge them into cfg instead")
    else:
        cfg = copy.deepcopy(cfg)
    if cfg.data.resolution is None:
        cfg.data.resolution = described["data.resolution"]
    differences = config_differences(cfg, described)
    if differences:
        listed = "; ".join(f"{k}: config {a}, file {b}" for k, a, b in differences)
        fix = " ".join(f"{k}={json.dumps(b).replace(' ', '')}" for k, _, b in differences)
        raise CheckpointError(f"{files.source} was trained with another architecture than the config builds: {listed}. "
                              f"Set {fix}, or import without a config")
    kind = cfg.model.bottleneck.kind
    if kind == "dyga" and mixtures is None:
        raise CheckpointError("model.bottleneck.kind=dyga needs the run's Gaussian file (gaussian/gaussian-epoch="
                              "NNNNNN.npz); without it, set model.bottleneck.kind=none")
    if mixtures is not None and kind != "dyga":
        raise CheckpointError(f"a Gaussian file was given, but model.bottleneck.kind={kind!r}; it needs dyga")
    if mixtures is not None and cfg.model.bottleneck.dyga.alignment != "released":
        raise CheckpointError("the released Gaussian file's means are in the released code's batch-normalized units: "
                              f"model.bottleneck.dyga.alignment must be 'released', not "
                              f"{cfg.model.bottleneck.dyga.alignment!r}")
    return cfg


def build_disdis(files: DisdisFiles, cfg, ema: bool = True):
    """The :class:`~ldm_dis.models.ldm.LatentDiffusion` of ``cfg`` (from :func:`disdis_config`) holding the
    files' weights, in eval mode on the CPU: the EMA U-Net (``ema``, what the released code samples with)
    or the live one."""
    from ldm_dis.bottlenecks.dyga.released_gaussians import anchor_buffers
    from ldm_dis.models.ldm import LatentDiffusion

    source, parts = files.source, files.parts
    model = LatentDiffusion(cfg.model, cfg.data.resolution)
    hint = f"; the file fits {json.dumps(files.described)}"
    check_schedule(model.noise_scheduler, parts["top"], source)
    converted = convert_taming_state_dict(parts["first_stage"])
    if converted.discriminator or converted.perceptual:
        raise CheckpointError(f"{source}: first_stage_model.* holds training-loss weights (loss.*), which a "
                              "latent diffusion checkpoint of the released code does not")
    first_stage = {**converted.first_stage, "latent_scale": parts["top"]["scale_factor"].float().reshape(()),
                   "latent_scale_set": torch.ones((), dtype=torch.bool)}
    load_strict(model.first_stage, first_stage, f"{source} (first_stage_model.*)", hint)
    load_strict(model.feature_extractor, _extractor_state(model.feature_extractor, parts["extractor"], source, hint),
                f"{source} (cond_stage_model.*)")
    load_strict(model.unet, _unet_state(model.unet, parts, ema, source, hint), f"{source} (U-Net)")
    if files.mixtures is not None:
        n, d = cfg.model.encoder.num_units, cfg.model.encoder.unit_dim
        load_strict(model.bottleneck, anchor_buffers(files.mixtures, n, d, cfg.model.bottleneck.dyga.k_max, files.gaussians),
                    files.gaussians)
    model.weights = {"unet": "ema" if ema else "live", "source": source}
    return model.eval()


def import_disdis(ckpt: str | Path, gaussians: Optional[str | Path] = None, cfg=None, overrides: Sequence[str] = (),
                  ema: bool = True):
    """:func:`read_disdis`, :func:`disdis_config` and :func:`build_disdis` in a row: a
    :class:`~ldm_dis.models.ldm.LatentDiffusion` (eval mode, CPU) from a released dis-dis ``.ckpt`` and, for
    DyGA, its Gaussian file. ``cfg``: a loaded config the file must fit (None: the file's own architecture,
    with ``overrides`` such as ``model.unet.num_heads=8``). ``ema``: the EMA U-Net (the default) or the live one."""
    files = read_disdis(ckpt, gaussians)
    return build_disdis(files, disdis_config(files, cfg, overrides), ema)
