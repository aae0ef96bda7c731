"""Which images each process sees, and in which order.

Training order is a pure function of (seed, step): the stream of global batches is the concatenation of
one random permutation of the dataset per pass, ``perm(seed, 0) ++ perm(seed, 1) ++ ...`` (each pass cut
to a whole number of batches). Global batch ``s`` is therefore known without replaying steps ``0..s-1``,
which is what makes ``--resume`` exact in the middle of an epoch. ``train.batch_size`` is the *global*
batch; process ``r`` of ``P`` takes the ``r``-th contiguous slice of ``batch_size / P`` images.

Evaluation order (feature collection for DyGA, code export) is the dataset order, split across
processes; ``accelerator.gather_for_metrics`` on each batch's outputs puts it back together in order.
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ldm_dis.errors import UserInputError


def steps_per_pass(num_images: int, batch_size: int) -> int:
    if num_images < batch_size:
        raise UserInputError(
            f"train.batch_size={batch_size} is larger than the dataset ({num_images} images); "
            "lower train.batch_size or use a larger data.subset"
        )
    return num_images // batch_size


def pass_permutation(num_images: int, seed: int, pass_index: int) -> np.ndarray:
    """The image order of pass ``pass_index`` (independent of every other pass)."""
    return np.random.default_rng([seed, pass_index]).permutation(num_images)


class StepBatchSampler:
    """Batch sampler for ``DataLoader(batch_sampler=...)``: this process's slice of global batches
    ``start_step, start_step + 1, ...`` (endless; the trainer stops at ``train.max_steps``)."""

    def __init__(self, num_images: int, batch_size: int, seed: int, start_step: int = 0,
                 process_index: int = 0, num_processes: int = 1):
        if batch_size % num_processes:
            raise UserInputError(
                f"train.batch_size={batch_size} is the global batch and must be divisible by the "
                f"number of processes ({num_processes})"
            )
        self.num_images, self.batch_size, self.seed = num_images, batch_size, seed
        self.start_step = start_step
        self.per_process = batch_size // num_processes
        self.offset = process_index * self.per_process
        self.steps_per_pass = steps_per_pass(num_images, batch_size)

    def __iter__(self) -> Iterator[List[int]]:
        step, cached_pass, perm = self.start_step, None, None
        while True:
            pass_index, k = divmod(step, self.steps_per_pass)
            if pass_index != cached_pass:  # one permutation per pass, not per batch
                cached_pass, perm = pass_index, pass_permutation(self.num_images, self.seed, pass_index)
            start = k * self.batch_size + self.offset
            yield perm[start:start + self.per_process].tolist()
            step += 1


def training_loader(dataset, batch_size: int, seed: int, start_step: int, accelerator, num_workers: int = 0) -> DataLoader:
    sampler = StepBatchSampler(len(dataset), batch_size, seed, start_step,
                               accelerator.process_index, accelerator.num_processes)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=accelerator.device.type == "cuda",
        # a private generator: creating the iterator must not draw from the global torch RNG, whose
        # state is checkpointed (otherwise a resumed run would drift from an uninterrupted one)
        generator=torch.Generator().manual_seed(seed),
    )


def ordered_loader(dataset, accelerator, batch_size: int, indices: Optional[Sequence[int]] = None,
                   num_workers: int = 0):
    """The dataset (or ``indices`` of it) in order, each batch split across processes and put on the
    device. Pass per-batch outputs through ``accelerator.gather_for_metrics`` to get them in order."""
    from accelerate.data_loader import prepare_data_loader

    if indices is not None:
        dataset = Subset(dataset, list(indices))
    world = accelerator.num_processes
    batch_size = max(world, batch_size - batch_size % world)  # split_batches needs a multiple of P
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0))
    return prepare_data_loader(
        loader,
        device=accelerator.device,
        num_processes=world,
        process_index=accelerator.process_index,
        split_batches=True,
        put_on_device=True,
    )
