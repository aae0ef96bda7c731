"""Bottlenecks between the feature extractor and the U-Net: none, DyGA, FactorQ, FSQ."""

from ldm_dis.bottlenecks.base import Bottleneck, BottleneckOutput, Identity

__all__ = ["Bottleneck", "BottleneckOutput", "Identity"]
