"""The learned representation of a whole dataset, for the metrics.

    dataset, representation_fn = load_representation("runs/mpi3d")
    codes = representation_fn(images)   # images: np.float32 (n, C, H, W) in [-1, 1] -> np.float32 codes
    source = load_evaluation_source("runs/mpi3d")   # what `ldm-dis evaluate` calls: + generate_fn, cfg
    export_representation("runs/mpi3d", "runs/mpi3d/codes.npz")             # every image
    export_representation("runs/mpi3d", "codes50k.npz", num=50_000, seed=0)   # a random subset of rows

The ``.npz`` holds ``codes`` ((n, N) scalars or (n, N, D) units, from ``task.encode``), ``factors``
((n, F) int64) and ``factor_names`` ((F,) str), in dataset order, and the run's evaluation protocol
(``unit_pca``, ``infomec_active``: ``ldm-dis evaluate --codes`` scores the file as ``--checkpoint`` would).
Encoding runs under ``torch.inference_mode`` on batches read whole from the dataset (one vectorized read
per batch, no per-image tensors; ``data.num_workers`` processes read ahead), with a progress bar counting
images. Speed: ``benchmarks/export_bench.py``, ``docs/benchmarks.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from ldm_dis.runs import run_dir_of
from ldm_dis.training.checkpoint import load_run_config, load_task_from_checkpoint

CODES_FILE = "codes.npz"


def read_batch(dataset, positions: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
    """Dataset positions (n,) -> (images (n, C, H, W) float32, factors (n, F) int64), in one vectorized read
    for a ground-truth dataset (no per-image tensors to collate); item by item for any other Dataset."""
    if hasattr(dataset, "images_at") and hasattr(dataset, "grid_indices"):
        rows = dataset.grid_indices(positions)
        return torch.from_numpy(np.ascontiguousarray(dataset.images_at(rows))), torch.from_numpy(dataset.factors_of(rows))
    items = [dataset[int(i)] for i in positions]
    return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.stack([torch.as_tensor(f) for _, f in items])


class _Batches(torch.utils.data.Dataset):
    """Item k: this process's share of global batch k of ``positions``, read whole (DataLoader workers
    prefetch whole batches while the model encodes). A global batch is padded to a multiple of the
    process count by repeating its last row, so every process reads and gathers the same number of rows."""

    def __init__(self, dataset, positions: np.ndarray, batch_size: int, process_index: int, num_processes: int):
        self.dataset, self.positions, self.batch_size = dataset, positions, batch_size
        self.process_index, self.num_processes = process_index, num_processes

    def __len__(self) -> int:
        return -(-len(self.positions) // self.batch_size)

    def size(self, k: int) -> int:
        """Rows of global batch k (the gathered shares hold padding beyond them)."""
        return min(self.batch_size, len(self.positions) - k * self.batch_size)

    def rows(self, k: int) -> np.ndarray:
        batch = self.positions[k * self.batch_size:(k + 1) * self.batch_size]
        share = -(-len(batch) // self.num_processes)
        padded = np.concatenate([batch, np.repeat(batch[-1:], share * self.num_processes - len(batch))])
        return padded[self.process_index * share:(self.process_index + 1) * share]

    def __getitem__(self, k: int):
        return read_batch(self.dataset, self.rows(k))


@torch.inference_mode()
def encode_dataset(task, dataset, accelerator, batch_size: int = 512, num_workers: int = 0,
                   indices: Optional[Sequence[int]] = None, progress: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """(codes (n, ...) float32, factors (n, F) int64) of every image (or of the positions ``indices``) in
    dataset order; all processes take part and all get the result. The main process shows a bar with
    images/s and the time left."""
    positions = np.arange(len(dataset), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    total = len(positions)
    batches = _Batches(dataset, positions, batch_size, accelerator.process_index, accelerator.num_processes)
    on_gpu = accelerator.device.type == "cuda"
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=num_workers, pin_memory=on_gpu)
    codes = factors = None
    done = 0
    with tqdm(total=total, desc="export", unit="img", unit_scale=True, dynamic_ncols=True,
              disable=not (progress and accelerator.is_main_process)) as bar:
        for k, (images, batch_factors) in enumerate(loader):
            batch_codes = task.encode(images.to(accelerator.device, non_blocking=True))
            batch_factors = batch_factors.to(accelerator.device)
            if accelerator.num_processes > 1:  # shares come back in process order: the global batch, padded
                batch_codes, batch_factors = accelerator.gather((batch_codes.contiguous(), batch_factors))
            count = batches.size(k)  # drop the padding
            batch_codes = batch_codes[:count].float().cpu().numpy()
            if codes is None:  # filled in place: no list of batches and no second copy at the end
                codes = np.empty((total, *batch_codes.shape[1:]), dtype=np.float32)
                factors = np.empty((total, batch_factors.shape[1]), dtype=np.int64)
            codes[done:done + count] = batch_codes
            factors[done:done + count] = batch_factors[:count].cpu().numpy()
            done += count
            bar.update(count)
    if done != total:
        raise RuntimeError(f"encoded {done} images of {total}")
    return codes, factors


def random_rows(num_rows: int, num: Optional[int], seed: int = 0) -> Optional[np.ndarray]:
    """``num`` distinct row indices out of ``num_rows``, drawn by ``seed`` and sorted; None for all rows."""
    from ldm_dis.errors import UserInputError

    if num is None or num >= num_rows:
        return None
    if num < 1:
        raise UserInputError(f"--num {num}: expected a positive number of images")
    return np.sort(np.random.default_rng(seed).choice(num_rows, size=num, replace=False))


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
                                    trainer.cfg.train.batch_size, trainer.cfg.data.num_workers)
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
    run_dir: Optional[Path] = None  # the run folder (default output place of the scores)


def load_evaluation_source(checkpoint: str | Path, dataset=None, batch_size: int = 512,
                           data_path: Optional[str] = None) -> EvaluationSource:
    """The representation and, for an LDM, a DDIM image generator of a run folder or checkpoint
    (weights as saved, task in eval use). ``data_path`` replaces the run's ``data.path``."""
    cfg = load_run_config(checkpoint)
    if dataset is None:
        from ldm_dis.sampling.components import run_dataset

        dataset = run_dataset(cfg, data_path)
    _, task = load_task_from_checkpoint(checkpoint, dataset=dataset)
    device = task_device(task)

    @torch.inference_mode()
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

    return EvaluationSource(cfg, dataset, representation_fn, generate_fn, run_dir_of(checkpoint))


def load_representation(checkpoint: str | Path, dataset=None, batch_size: int = 512) -> Tuple[object, Callable[[np.ndarray], np.ndarray]]:
    """``(dataset, representation_fn)`` of a run folder or checkpoint (weights as saved, task in eval use)."""
    source = load_evaluation_source(checkpoint, dataset, batch_size)
    return source.dataset, source.representation_fn


def task_device(task) -> torch.device:
    for module in task.modules().values():
        for tensor in list(module.parameters()) + list(module.buffers()):
            return tensor.device
    return torch.device("cpu")


def export_representation(run_or_ckpt: str | Path, out_path: str | Path | None = None, batch_size: int = 512,
                          dataset=None, num: Optional[int] = None, seed: int = 0, progress: bool = True) -> Path:
    """Write the ``.npz`` (default ``<run>/codes.npz``) of the whole dataset, or of ``num`` rows drawn at
    random by ``seed``, from a run or checkpoint."""
    from accelerate import Accelerator

    if dataset is None:
        from ldm_dis.data import build_dataset

        dataset = build_dataset(load_run_config(run_or_ckpt).data)
    accelerator = Accelerator()
    cfg, task = load_task_from_checkpoint(run_or_ckpt, dataset=dataset, accelerator=accelerator)
    rows = random_rows(len(dataset), num, seed)
    codes, factors = encode_dataset(task, dataset, accelerator, batch_size, cfg.data.num_workers, rows, progress)
    out_path = Path(out_path) if out_path else run_dir_of(run_or_ckpt) / CODES_FILE
    if accelerator.is_main_process:
        write_representation(out_path, codes, factors, dataset.factor_names, eval_protocol(cfg))
    return out_path
