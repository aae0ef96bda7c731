"""``model.kind`` -> the training task that implements it (see :mod:`ldm_dis.training.task`)."""

from __future__ import annotations

import importlib

from ldm_dis.errors import UserInputError

BASELINE_KINDS = ("ae", "betavae", "betatcvae", "factorvae", "bioae", "qlae", "dvae", "qvae", "factorqvae", "factordvae")

# kind -> (module, factory); each factory is called as factory(cfg, dataset, **kwargs) -> TrainingTask
TASKS = {
    "ldm": ("ldm_dis.training.ldm_task", "LDMTask"),
    "vqgan": ("ldm_dis.training.vqgan_task", "VQGANTask"),
    **{kind: ("ldm_dis.baselines", "build_baseline_task") for kind in BASELINE_KINDS},
}


def build_task(cfg, dataset, kind: str | None = None, **kwargs):
    """Build the task for ``kind`` (default ``cfg.model.kind``); ``dataset`` is a GroundTruthDataset."""
    from ldm_dis.config.protocol import resolve_protocol

    resolve_protocol(cfg)  # configs built without load_config (tests, scripts) follow `protocol` too
    kind = kind or cfg.model.kind
    if kind not in TASKS:
        raise UserInputError(f"model.kind={kind!r} is unknown; expected one of {sorted(TASKS)}")
    module, factory = TASKS[kind]
    return getattr(importlib.import_module(module), factory)(cfg, dataset, **kwargs)
