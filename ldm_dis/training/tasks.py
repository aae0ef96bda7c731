"""``model.kind`` -> the training task that implements it (see :mod:`ldm_dis.training.task`)."""

from __future__ import annotations

from typing import Dict

from ldm_dis.baselines.model import KINDS
from ldm_dis.baselines.task import BaselineTask
from ldm_dis.registry import lookup
from ldm_dis.training.ldm_task import LDMTask
from ldm_dis.training.vqgan_task import VQGANTask

BASELINE_KINDS = tuple(KINDS)  # the ten VAE-family kinds, one task class

# model.kind -> class; each is built as Cls(cfg, dataset, **kwargs) -> a TrainingTask
TASKS: Dict[str, type] = {
    "ldm": LDMTask,
    "vqgan": VQGANTask,
    **{kind: BaselineTask for kind in BASELINE_KINDS},
}


def build_task(cfg, dataset, kind: str | None = None, **kwargs):
    """Build the task for ``kind`` (default ``cfg.model.kind``); ``dataset`` is a GroundTruthDataset."""
    from ldm_dis.config.protocol import resolve_protocol

    resolve_protocol(cfg)  # configs built without load_config (tests, scripts) follow `protocol` too
    return lookup(TASKS, "model.kind", kind or cfg.model.kind)(cfg, dataset, **kwargs)
