"""Bottlenecks between the feature extractor and the U-Net, chosen by ``model.bottleneck.kind``.

none: the plain EncDiff-style model; dyga: Dynamic Gaussian Anchoring; factorq: global scalar codebook
with total correlation; fsq: finite scalar quantization (paper Table 11).
"""

from __future__ import annotations

from typing import Dict, Type

from ldm_dis.bottlenecks.base import Bottleneck, BottleneckOutput, Identity
from ldm_dis.bottlenecks.dyga import DyGABottleneck
from ldm_dis.bottlenecks.factorq import FactorQ
from ldm_dis.bottlenecks.fsq import FSQ
from ldm_dis.registry import lookup

# model.bottleneck.kind -> class; each is built by Cls.from_config(its section of model.bottleneck, N, D)
BOTTLENECKS: Dict[str, Type[Bottleneck]] = {"none": Identity, "dyga": DyGABottleneck, "factorq": FactorQ, "fsq": FSQ}


def build_bottleneck(cfg, num_units: int, unit_dim: int) -> Bottleneck:
    """``cfg`` is ``model.bottleneck``; the class of ``cfg.kind`` reads its own section of it."""
    cls = lookup(BOTTLENECKS, "model.bottleneck.kind", cfg.kind)
    return cls.from_config(getattr(cfg, cfg.kind, None), num_units, unit_dim)


__all__ = ["BOTTLENECKS", "Bottleneck", "BottleneckOutput", "Identity", "build_bottleneck"]
