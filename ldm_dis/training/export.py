"""The learned representation of a whole dataset, for the metrics.

    dataset, representation_fn = load_representation("runs/mpi3d")
    codes = representation_fn(images)   # images: np.float32 (n, C, H, W) in [-1, 1] -> np.float32 codes
    source = load_evaluation_source("runs/mpi3d")   # what `ldm-dis evaluate` calls: + generate_fn, cfg
    export_representation("runs/mpi3d", "runs/mpi3d/codes.npz")

The ``.npz`` holds ``codes`` ((n, N) scalars or (n, N, D) units, from ``task.encode``), ``factors``
((n, F) int64) and ``factor_names`` ((F,) str), in dataset order, and the run's evaluation protocol
(``unit_pca``, ``infomec_active``: ``ldm-dis evaluate --codes`` scores the file as ``--checkpoint`` would).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from ldm_dis.training.checkpoint import load_run_config, load_task_from_checkpoint, resolve_checkpoint
from ldm_dis.training.data_order import ordered_loader

CODES_FILE = "codes.npz"


@torch.no_grad()
def encode_dataset(task, dataset, accelerator, batch_size: int = 256, num_workers: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(codes, factors) of every image in dataset order; all processes take part and all get the result."""
    codes, factors = [], []
    for images, batch_factors in ordered_loader(dataset, accelerator, batch_size, num_workers=num_workers):
        batch_codes, batch_factors = accelerator.gather_for_metrics((task.encode(images), batch_factors))
        codes.append(batch_codes.float().cpu().numpy())
        factors.append(batch_factors.cpu().numpy())
    return np.concatenate(codes), np.concatenate(factors).astype(np.int64)


def eval_protocol(cfg) -> dict:
    """The run's evaluation choices, nulls read as the paper's: {"unit_pca": ..., "infomec_active": ...}."""
    from ldm_dis.config.protocol import EVAL_CHOICES

    return {k: cfg.eval[k] or paper for k, paper in EVAL_CHOICES["paper"].items()}


def write_representation(path: str | Path, codes: np.ndarray, factors: np.ndarray, factor_names,
                         protocol: Optional[dict] = None) -> Path:
    """Atomic: a reader never sees half a file. ``protocol``: string entries stored beside the codes
    (:func:`eval_protocol`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    extra = {k: np.asarray(str(v)) for k, v in (protocol or {}).items()}
    with open(tmp, "wb") as f:
        np.savez(f, codes=codes.astype(np.float32), factors=factors, factor_names=np.asarray(list(factor_names), dtype=str),
                 **extra)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def export_from_trainer(trainer, out_path: str | Path | None = None) -> Path:
    """After training: encode with the in-memory task on every process; the main process writes."""
    out_path = Path(out_path) if out_path else trainer.run_dir / CODES_FILE
    codes, factors = encode_dataset(trainer.task, trainer.dataset, trainer.accelerator,
                                    num_workers=trainer.cfg.data.num_workers)
    if trainer.accelerator.is_main_process:
        write_representation(out_path, codes, factors, trainer.dataset.factor_names, eval_protocol(trainer.cfg))
    trainer.accelerator.wait_for_everyone()
    return out_path


@dataclass
class EvaluationSource:
    """What the metrics need from a trained run."""

    cfg: object  # the run's config
    dataset: object
    representation_fn: Callable[[np.ndarray], np.ndarray]  # images (n, C, H, W) in [-1, 1] -> codes
    generate_fn: Optional[Callable[[int, np.random.Generator], np.ndarray]]  # FID's images; None if the task has no sampler


def load_evaluation_source(checkpoint: str | Path, dataset=None, batch_size: int = 256,
                           data_path: Optional[str] = None) -> EvaluationSource:
    """The representation and, for an LDM, a DDIM image generator of a run folder or checkpoint
    (weights as saved, task in eval use). ``data_path`` replaces the run's ``data.path``."""
    cfg = load_run_config(checkpoint)
    if dataset is None:
        from ldm_dis.sampling.components import run_dataset

        dataset = run_dataset(cfg, data_path)
    _, task = load_task_from_checkpoint(checkpoint, dataset=dataset)
    device = task_device(task)

    @torch.no_grad()
    def representation_fn(images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            batch = torch.as_tensor(np.asarray(images[start:start + batch_size], dtype=np.float32), device=device)
            out.append(task.encode(batch).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0,), np.float32)

    generate_fn = None
    if hasattr(task, "reconstruct"):
        def generate_fn(n: int, rng: np.random.Generator) -> np.ndarray:
            """n DDIM samples (n, 3, R, R) in [-1, 1], each conditioned on the units of a dataset image drawn
            from ``rng``; x_T from a generator seeded by ``rng`` (drawn on the CPU: the same on any device)."""
            images = dataset.images_from_factors(dataset.sample_factors(n, rng))
            generator = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
            out = []
            for start in range(0, n, batch_size):
                batch = torch.as_tensor(np.asarray(images[start:start + batch_size], dtype=np.float32), device=device)
                out.append(task.reconstruct(batch, generator).float().cpu().numpy())
            return np.concatenate(out)

    return EvaluationSource(cfg, dataset, representation_fn, generate_fn)


def load_representation(checkpoint: str | Path, dataset=None, batch_size: int = 256) -> Tuple[object, Callable[[np.ndarray], np.ndarray]]:
    """``(dataset, representation_fn)`` of a run folder or checkpoint (weights as saved, task in eval use)."""
    source = load_evaluation_source(checkpoint, dataset, batch_size)
    return source.dataset, source.representation_fn


def task_device(task) -> torch.device:
    for module in task.modules().values():
        for tensor in list(module.parameters()) + list(module.buffers()):
            return tensor.device
    return torch.device("cpu")


def export_representation(run_or_ckpt: str | Path, out_path: str | Path | None = None, batch_size: int = 256,
                          dataset=None) -> Path:
    """Write the ``.npz`` of the whole dataset (default ``<run>/codes.npz``) from a run or checkpoint."""
    from accelerate import Accelerator

    if dataset is None:
        from ldm_dis.data import build_dataset

        dataset = build_dataset(load_run_config(run_or_ckpt).data)
    accelerator = Accelerator()
    cfg, task = load_task_from_checkpoint(run_or_ckpt, dataset=dataset, accelerator=accelerator)
    codes, factors = encode_dataset(task, dataset, accelerator, batch_size, cfg.data.num_workers)
    out_path = Path(out_path) if out_path else resolve_checkpoint(run_or_ckpt).parent.parent / CODES_FILE
    if accelerator.is_main_process:
        write_representation(out_path, codes, factors, dataset.factor_names, eval_protocol(cfg))
    return out_path
