"""``protocol: paper | released``: one switch for every place where the released code (which produced the
paper's tables) differs from the paper's text.

    key                               paper (default)                      released
    model.unet.skip_dropout_levels    levels without cross-attention       levels whose spatial size is not an
                                      (null)                               attention factor (16x16, 8x8 at Table 8)
    model.unet.resblock_updown        false: strided conv / conv upsample  true: ResBlocks resample
    model.bottleneck.dyga.alignment   paper: Gumbel anchor, per-sample     released: argmax anchor, one lambda per
                                      lambda, fixed normalization          batch, batch min/max normalization
    eval.unit_pca                     sample: fitted on each metric's      all: fitted once on the codes of the
                                      evaluation sample                    whole dataset
    eval.infomec_active               range: range > largest / 20          iqr: IQR > largest IQR / 10

Each key is null by default, which means "as the protocol says"; a value set in a file or an override is
kept whatever the protocol (:func:`protocol_differences` lists such values, and ``ldm-dis train`` prints
them). :func:`resolve_protocol`, run when a config is loaded, fills the nulls with the released values when
``protocol: released`` (the run's saved config.yaml then holds them); under ``paper`` the nulls stay and
every consumer reads null as the paper's choice.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from omegaconf import OmegaConf

from ldm_dis.errors import UserInputError

PROTOCOLS = ("paper", "released")
# the evaluation's choices, also for `ldm-dis evaluate --protocol` (no config needed)
EVAL_CHOICES = {
    "paper": {"unit_pca": "sample", "infomec_active": "range"},
    "released": {"unit_pca": "all", "infomec_active": "iqr"},
}


def _level_factors(cfg) -> List[int]:
    return [2**i for i in range(len(cfg.model.unet.channel_mult))]


def paper_values(cfg) -> Dict[str, Any]:
    """The paper's value of each protocol key for this config (what a null reads as)."""
    from ldm_dis.models.skip_dropout import paper_levels

    return {
        "model.unet.skip_dropout_levels": paper_levels(_level_factors(cfg), cfg.model.unet.attention_downsample),
        "model.unet.resblock_updown": False,
        "model.bottleneck.dyga.alignment": "paper",
        **{f"eval.{k}": v for k, v in EVAL_CHOICES["paper"].items()},
    }


def released_values(cfg) -> Dict[str, Any]:
    """The released code's value of each protocol key for this config."""
    from ldm_dis.models.skip_dropout import released_code_levels

    latent_size = cfg.data.resolution // 2 ** (len(cfg.model.first_stage.channel_mult) - 1)
    return {
        "model.unet.skip_dropout_levels": released_code_levels(latent_size, cfg.model.unet.attention_downsample,
                                                               _level_factors(cfg)),
        "model.unet.resblock_updown": True,
        "model.bottleneck.dyga.alignment": "released",
        **{f"eval.{k}": v for k, v in EVAL_CHOICES["released"].items()},
    }


def protocol_values(cfg) -> Dict[str, Any]:
    """What ``cfg.protocol`` sets for each protocol key."""
    if cfg.protocol not in PROTOCOLS:
        raise UserInputError(f"protocol={cfg.protocol!r} is unknown; expected one of {list(PROTOCOLS)}")
    return paper_values(cfg) if cfg.protocol == "paper" else released_values(cfg)


def resolve_protocol(cfg):
    """Under ``protocol: released``, fill the protocol keys left null with its values (in place; returns
    ``cfg``). Under ``paper`` nothing changes: a null is the paper's choice wherever it is read."""
    values = protocol_values(cfg)
    if cfg.protocol == "released":
        for key, value in values.items():
            if OmegaConf.select(cfg, key) is None:
                OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def protocol_differences(cfg) -> List[Tuple[str, Any, Any]]:
    """(key, value in cfg, the protocol's value) for every protocol key set to something else."""
    out = []
    for key, value in protocol_values(cfg).items():
        current = OmegaConf.select(cfg, key)
        current = OmegaConf.to_container(current) if OmegaConf.is_config(current) else current
        if current is not None and current != value:
            out.append((key, current, value))
    return out
