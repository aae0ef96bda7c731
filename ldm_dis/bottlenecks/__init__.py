"""Bottlenecks between the feature extractor and the U-Net, chosen by ``model.bottleneck.kind``.

none: the plain EncDiff-style model; dyga: Dynamic Gaussian Anchoring; factorq: global scalar codebook
with total correlation; fsq: finite scalar quantization (paper Table 11).
"""

from __future__ import annotations

import importlib

from ldm_dis.bottlenecks.base import Bottleneck, BottleneckOutput, Identity
from ldm_dis.errors import UserInputError

# kind -> (module, class, config section); each class is built by Cls.from_config(section, num_units, unit_dim)
BOTTLENECKS = {
    "none": ("ldm_dis.bottlenecks.base", "Identity", None),
    "dyga": ("ldm_dis.bottlenecks.dyga", "DyGABottleneck", "dyga"),
    "factorq": ("ldm_dis.bottlenecks.factorq", "FactorQ", "factorq"),
    "fsq": ("ldm_dis.bottlenecks.fsq", "FSQ", "fsq"),
}


def build_bottleneck(cfg, num_units: int, unit_dim: int) -> Bottleneck:
    """``cfg`` is ``model.bottleneck``; the class of ``cfg.kind`` reads its own section of it."""
    if cfg.kind not in BOTTLENECKS:
        raise UserInputError(f"model.bottleneck.kind={cfg.kind!r} is unknown; expected one of {sorted(BOTTLENECKS)}")
    module, cls_name, section = BOTTLENECKS[cfg.kind]
    cls = getattr(importlib.import_module(module), cls_name)
    return cls.from_config(None if section is None else cfg[section], num_units, unit_dim)


__all__ = ["BOTTLENECKS", "Bottleneck", "BottleneckOutput", "Identity", "build_bottleneck"]
