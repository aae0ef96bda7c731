"""Every value checked when a config loads, before anything trains or is built.

    problems = config_problems(cfg)     # ["`train.batch_size`=-8: must be at least 1", ...]
    validate_config(cfg, source)        # ConfigError listing them all (called by load_config)

Three kinds of rule, each message naming the key, the value and what was expected:
- ranges (sizes at least 1, learning rates above 0, probabilities in [0, 1), every number finite);
- choices, with the nearest valid name; the names come from the registries (tasks, bottlenecks,
  datasets, metrics) and the modules that implement each choice;
- rules across fields (the image resolution must suit the first stage, the feature extractor and
  the U-Net; attention heads must divide the widths; levels named must exist; k_init <= k_max...).
The first stage's training run is derived from ``model.first_stage`` (``ldm_dis.training.pipeline``),
so its sizes and rates are checked, and named, there.

:func:`section_given_a_value` catches ``model.bottleneck=factorq`` (a whole section set to a value)
before merging, and says which key inside was probably meant.
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

from omegaconf import OmegaConf

Rule = Tuple[Callable[[Any], bool], str]
CODEBOOK_INITS = ("uniform", "data")  # model.first_stage.codebook_init, read by the VQ-GAN task


# ------------------------------------------------------------------------------------------ ranges
def at_least(low) -> Rule:
    return (lambda v: v >= low, f"must be at least {low}")


def above(low) -> Rule:
    return (lambda v: v > low, f"must be greater than {low}")


def between(low, high, high_open: bool = False) -> Rule:
    return ((lambda v: low <= v < high) if high_open else (lambda v: low <= v <= high),
            f"must be in [{low}, {high}{')' if high_open else ']'}")


POSITIVE, NON_NEGATIVE, PROBABILITY, DROP_RATE = at_least(1), at_least(0), between(0, 1), between(0, 1, high_open=True)

# key -> rule, for a scalar, or for each entry of a list (keys ending in []); None (unset) passes
RANGES = {
    "data.resolution": POSITIVE, "data.num_workers": NON_NEGATIVE, "data.subset": POSITIVE,
    "data.factor_sizes[]": POSITIVE,
    **{f"model.first_stage.{k}": POSITIVE for k in (
        "embed_dim", "n_embed", "base_channels", "num_res_blocks", "disc_channels", "disc_layers", "batch_size",
        "max_steps", "log_every", "ckpt_every")},
    "model.first_stage.channel_mult[]": POSITIVE, "model.first_stage.dropout": DROP_RATE,
    **{f"model.first_stage.{k}": NON_NEGATIVE for k in ("codebook_weight", "disc_weight", "disc_start", "perceptual_weight")},
    "model.first_stage.lr": above(0),
    **{f"model.encoder.{k}": POSITIVE for k in ("num_units", "unit_dim", "stem_channels", "hidden")},
    "model.encoder.channels[]": POSITIVE, "model.encoder.unit_mlp[]": POSITIVE,
    **{f"model.unet.{k}": POSITIVE for k in ("base_channels", "num_res_blocks", "num_heads")},
    "model.unet.channel_mult[]": POSITIVE,
    **{f"model.unet.{k}": DROP_RATE for k in ("dropout", "skip_dropout", "backbone_dropout")},
    "model.diffusion.num_train_timesteps": at_least(2), "model.diffusion.sample_steps": POSITIVE,
    "model.diffusion.beta_start": above(0), "model.diffusion.beta_end": between(0, 1, high_open=True),
    "model.diffusion.eta": PROBABILITY, "model.diffusion.logit_normal_std": above(0),
    "model.diffusion.min_snr_gamma": above(0), "model.diffusion.pdae_gamma": between(0, 1),
    **{f"model.bottleneck.dyga.{k}": POSITIVE for k in (
        "k_init", "k_max", "em_iters", "search_samples", "fit_every_epochs", "max_samples", "num_workers")},
    **{f"model.bottleneck.dyga.{k}": PROBABILITY for k in ("phi", "random_split_prob", "lam", "dim_threshold")},
    **{f"model.bottleneck.dyga.{k}": NON_NEGATIVE for k in ("psi", "max_split_rounds", "min_count", "tol", "reg_covar")},
    "model.bottleneck.dyga.tau": above(0), "model.bottleneck.dyga.refit_iters": POSITIVE,
    "train.max_minutes": above(0), "model.first_stage.max_minutes": above(0),
    "model.bottleneck.factorq.codebook_size": at_least(2), "model.bottleneck.factorq.disc_hidden": POSITIVE,
    "model.bottleneck.factorq.disc_layers": at_least(2), "model.bottleneck.factorq.disc_lr": above(0),
    **{f"model.bottleneck.factorq.{k}": NON_NEGATIVE for k in ("beta", "gamma", "tau_decay", "tau_min")},
    "model.bottleneck.fsq.levels[]": at_least(2),
    **{f"model.baseline.{k}": POSITIVE for k in (
        "latent_dim", "base_channels", "hidden", "disc_hidden", "codebook_size", "qlae_values", "lr_anneal_steps")},
    "model.baseline.disc_layers": at_least(2), "model.baseline.disc_lr": above(0),
    **{f"model.baseline.{k}": NON_NEGATIVE for k in (
        "beta", "alpha", "tc_weight", "commit_weight", "quant_weight", "weight_decay", "tau_decay", "bioae_activity",
        "bioae_nonneg", "lr_min")},
    **{f"train.{k}": POSITIVE for k in (
        "max_steps", "batch_size", "log_every", "ckpt_every", "keep_last", "num_sample_images", "epoch_steps")},
    **{f"train.{k}": NON_NEGATIVE for k in ("weight_decay", "warmup_steps", "sample_every")},
    "train.lr": above(0), "train.extractor_lr": above(0), "train.grad_clip": above(0), "train.ema_decay": PROBABILITY,
    "train.adam_betas[]": between(0, 1, high_open=True),
}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range_problems(cfg) -> List[str]:
    problems = []
    for key, (ok, expected) in RANGES.items():
        each = key.endswith("[]")
        name = key[:-2] if each else key
        value = OmegaConf.select(cfg, name, default=None)
        if value is None:
            continue
        values = list(value) if each else [value]
        bad = [v for v in values if _number(v) and not ok(v)]
        if bad:
            shown = list(values) if each else value
            problems.append(f"`{name}`={shown}: {'each entry ' if each else ''}{expected}")
    return problems


def _non_finite(node, prefix: str = "") -> List[str]:
    """Every float of the config that is NaN or infinite (``train.lr=inf`` would pass ``> 0``)."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node)
    if isinstance(node, dict):
        children = [(f"{prefix}.{k}" if prefix else str(k), v) for k, v in node.items()]
    elif isinstance(node, list):
        children = [(f"{prefix}[{i}]", v) for i, v in enumerate(node)]
    else:
        return [f"`{prefix}`={node}: must be a finite number"] if isinstance(node, float) and not math.isfinite(node) else []
    return [p for path, value in children for p in _non_finite(value, path)]


# ----------------------------------------------------------------------------------------- choices
def _choice(key: str, value, valid: Sequence[str]) -> Optional[str]:
    from ldm_dis.registry import unknown_name

    return unknown_name(key, value, valid)


def _choice_problems(cfg) -> List[str]:
    from ldm_dis.bottlenecks import BOTTLENECKS
    from ldm_dis.data import DATASETS
    from ldm_dis.metrics.suite import METRICS
    from ldm_dis.training.tasks import TASKS
    from ldm_dis.training.trainer import MIXED_PRECISION

    m = cfg.model
    checks = [("model.kind", m.kind, sorted(TASKS)), ("model.bottleneck.kind", m.bottleneck.kind, sorted(BOTTLENECKS)),
              ("data.name", cfg.data.name, sorted(DATASETS)), ("train.mixed_precision", cfg.train.mixed_precision, (None, *MIXED_PRECISION)),
              *((f"eval.metrics[{i}]", name, list(METRICS)) for i, name in enumerate(cfg.eval.metrics))]
    if m.kind in ("ldm", "vqgan"):
        checks.append(("model.first_stage.codebook_init", m.first_stage.codebook_init, CODEBOOK_INITS))
    if m.kind == "ldm" and m.bottleneck.kind == "dyga":
        from ldm_dis.bottlenecks.dyga.bottleneck import FITTERS

        checks.append(("model.bottleneck.dyga.fitter", m.bottleneck.dyga.fitter, FITTERS))
    if m.kind == "ldm":
        from ldm_dis.models import diffusion

        d = m.diffusion
        checks += [("model.diffusion.loss", d.loss, diffusion.LOSSES),
                   ("model.diffusion.beta_schedule", d.beta_schedule, diffusion.BETA_SCHEDULES),
                   ("model.diffusion.prediction_type", d.prediction_type, diffusion.PREDICTION_TYPES),
                   ("model.diffusion.timestep_sampling", d.timestep_sampling, diffusion.TIMESTEP_SAMPLING),
                   ("model.diffusion.loss_weighting", d.loss_weighting, diffusion.LOSS_WEIGHTING)]
    from ldm_dis.training.tasks import BASELINE_KINDS

    if m.kind in BASELINE_KINDS:
        from ldm_dis.baselines.losses import LIKELIHOODS

        checks.append(("model.baseline.likelihood", m.baseline.likelihood, LIKELIHOODS))
    return [p for p in (_choice(*check) for check in checks) if p]


# -------------------------------------------------------------------------------- across fields
NAMED_DATASET_RESOLUTION = 64  # every named dataset is served at 64x64 by default (Cars3D and CelebA resized to it)


def served_resolution(cfg) -> Optional[int]:
    """``data.resolution``, or when unset the size the dataset serves; None for an ``arrays`` file, whose
    size is known only once it is read (the networks check it when they are built)."""
    if cfg.data.resolution is not None:
        return int(cfg.data.resolution)
    return None if cfg.data.name == "arrays" else NAMED_DATASET_RESOLUTION


def _first_stage_problems(cfg) -> List[str]:
    fs, resolution, problems = cfg.model.first_stage, served_resolution(cfg), []
    widths = [fs.base_channels * m for m in fs.channel_mult]
    if not fs.channel_mult:
        problems.append("`model.first_stage.channel_mult`=[]: needs at least one level")
    elif any(w % 32 for w in widths):
        problems.append(f"`model.first_stage.base_channels`={fs.base_channels} x `channel_mult`={list(fs.channel_mult)} "
                        f"gives widths {widths}: each must be a multiple of 32 (GroupNorm with 32 groups)")
    down = 2 ** max(len(fs.channel_mult) - 1, 0)
    if resolution is not None and resolution % down:
        problems.append(f"`data.resolution`={resolution}: must be divisible by {down}, the first stage's downsampling "
                        f"(2 ** (len(model.first_stage.channel_mult) - 1))")
    return problems


def _ldm_problems(cfg) -> List[str]:
    m, resolution, problems = cfg.model, served_resolution(cfg), []
    enc, unet, d = m.encoder, m.unet, m.diffusion
    if resolution is not None and resolution % 2 ** len(enc.channels):
        problems.append(f"`data.resolution`={resolution}: must be divisible by {2 ** len(enc.channels)}, the feature "
                        f"extractor's downsampling (2 ** len(model.encoder.channels), {len(enc.channels)} strided convs)")
    levels = [2**i for i in range(len(unet.channel_mult))]
    if not levels:
        return problems + ["`model.unet.channel_mult`=[]: needs at least one level"]
    latent = resolution // 2 ** max(len(m.first_stage.channel_mult) - 1, 0) if resolution is not None else None
    if latent is not None and latent % levels[-1]:
        problems.append(f"`data.resolution`={resolution} gives {latent}x{latent} latents, not divisible by {levels[-1]}, the "
                        f"U-Net's downsampling (2 ** (len(model.unet.channel_mult) - 1))")
    widths = [unet.base_channels * k for k in unet.channel_mult]
    if any(w % 32 for w in widths):
        problems.append(f"`model.unet.base_channels`={unet.base_channels} x `channel_mult`={list(unet.channel_mult)} gives "
                        f"widths {widths}: each must be a multiple of 32 (GroupNorm with 32 groups)")
    for key in ("attention_downsample", "skip_dropout_levels"):
        named = unet[key]
        if named is not None and set(named) - set(levels):
            problems.append(f"`model.unet.{key}`={list(named)}: no level {sorted(set(named) - set(levels))}; the U-Net's "
                            f"levels (downsample factors) are {levels}")
    attended = sorted({w for w, f in zip(widths, levels) if f in unet.attention_downsample} | {widths[-1]})
    if unet.num_heads >= 1 and any(w % unet.num_heads for w in attended):
        problems.append(f"`model.unet.num_heads`={unet.num_heads}: must divide the widths with attention {attended} "
                        "(model.unet.base_channels x channel_mult at attention_downsample and the middle block)")
    if d.beta_start >= d.beta_end and d.beta_schedule != "squaredcos_cap_v2":
        problems.append(f"`model.diffusion.beta_start`={d.beta_start}: must be below `beta_end`={d.beta_end}")
    if d.sample_steps > d.num_train_timesteps:
        problems.append(f"`model.diffusion.sample_steps`={d.sample_steps}: at most `num_train_timesteps`={d.num_train_timesteps}")
    return problems


def _cross_problems(cfg) -> List[str]:
    from ldm_dis.training.tasks import BASELINE_KINDS

    kind, problems = cfg.model.kind, []
    dyga = cfg.model.bottleneck.dyga
    if dyga.k_init > dyga.k_max:
        problems.append(f"`model.bottleneck.dyga.k_init`={dyga.k_init}: must be at most `k_max`={dyga.k_max}")
    if kind in ("ldm", "vqgan"):
        problems += _first_stage_problems(cfg)
    if kind == "ldm":
        problems += _ldm_problems(cfg)
    if kind in BASELINE_KINDS:
        r = served_resolution(cfg)
        if r is not None and (r < 8 or r & (r - 1)):
            problems.append(f"`data.resolution`={r}: the VAE baselines need a power of two of at least 8")
    return problems


def config_problems(cfg) -> List[str]:
    """Every problem of ``cfg``, one line each naming its key; empty when the config is valid."""
    problems = _non_finite(cfg) + _range_problems(cfg) + _choice_problems(cfg)
    if not problems:  # rules across fields assume each field is sane on its own
        problems = _cross_problems(cfg)
    return problems


def validate_config(cfg, source: str = "config") -> None:
    from ldm_dis.config.loading import ConfigError

    problems = config_problems(cfg)
    if len(problems) == 1:
        raise ConfigError(f"{source}: {problems[0]}")
    if problems:
        raise ConfigError(f"{source}: {len(problems)} invalid values:\n" + "\n".join(f"  - {p}" for p in problems))


# ---------------------------------------------------------------------------- a section set to a value
def _probable_key(section, value) -> Optional[str]:
    names = [f.name for f in fields(section)]
    for name in ("kind", "name"):
        if name in names:
            return name
    if isinstance(value, str) and ("/" in value or "." in value):
        for name in ("checkpoint", "path"):
            if name in names:
                return name
    return None


def section_given_a_value(schema, given, prefix: str = "") -> Optional[str]:
    """The first key of ``given`` (a YAML mapping or dotlist) that sets a section of ``schema`` (a
    dataclass instance) to a plain value, explained; None if there is none."""
    if not isinstance(given, dict):
        given = OmegaConf.to_container(given) if OmegaConf.is_config(given) else {}
    if not isinstance(given, dict):
        return None
    for key, value in given.items():
        field = getattr(schema, str(key), None)
        path = f"{prefix}{key}"
        if not is_dataclass(field):
            continue
        if isinstance(value, dict):
            found = section_given_a_value(field, value, f"{path}.")
            if found:
                return found
        elif value is not None:
            inner = _probable_key(field, value)
            keys = ", ".join(f.name for f in fields(field))
            hint = f"did you mean `{path}.{inner}={value}`? " if inner else ""
            return f"`{path}` is a section, not a value; {hint}its keys: {keys}"
    return None
