"""What every ground-truth dataset is: images indexed by a grid of discrete factors.

A dataset with factor sizes ``[s_1, ..., s_F]`` holds ``prod(s)`` images in row-major order: the image of
factor values ``(f_1, ..., f_F)`` has index ``ravel_multi_index(f, s)`` (the last factor varies fastest),
which is how Shapes3D, MPI3D, dSprites and Cars3D files are ordered.

Training reads ``dataset[i] -> (image (C, H, W) float32 in [-1, 1], factors (F,) int64)`` through a
DataLoader; metrics call ``sample_factors`` then ``images_from_factors``. Subclasses implement only
``images_at(indices)`` (of grid indices).

``subset=N`` keeps N images drawn at random from the whole grid (seed ``SUBSET_SEED``, kept in grid
order), so every factor still varies; position ``i`` of the dataset (``dataset[i]``, the training and
export order) is grid index ``grid_indices(i)``. The metrics still draw factor values from the whole
grid: they measure the representation on the ground truth, not on the training images.

``resolution=None`` serves the images at the dataset's own size (``native_resolution``); another size
is a resize, said once when the dataset is built.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset


SUBSET_SEED = 0  # data.subset draws the same images in every run and every process


def subset_indices(num_images: int, subset: Optional[int]) -> Optional[np.ndarray]:
    """``subset`` distinct grid indices drawn at random (seed SUBSET_SEED), sorted; None for the whole grid."""
    if subset is None or int(subset) >= num_images:
        return None
    if int(subset) < 1:
        raise ValueError(f"data.subset={subset}: expected a positive number of images")
    return np.sort(np.random.default_rng(SUBSET_SEED).choice(num_images, size=int(subset), replace=False))


def resolve_resolution(name: str, requested: Optional[int], native: int) -> int:
    """``requested`` or, when None, ``native``; a resize is said once (by the main process)."""
    resolution = int(native if requested is None else requested)
    if resolution != int(native) and os.environ.get("RANK", "0") == "0":
        print(f"{name}: images are resized from {native}x{native} to {resolution}x{resolution} "
              f"(data.resolution={resolution}; leave it unset for the native size)", flush=True)
    return resolution


class GroundTruthDataset(Dataset):
    """Base class. Attributes: ``name``, ``factor_names``, ``factor_sizes``, ``num_channels``, ``resolution``,
    ``native_resolution``."""

    name: str = ""

    def __init__(
        self,
        factor_names: Sequence[str],
        factor_sizes: Sequence[int],
        num_channels: int,
        resolution: Optional[int],
        subset: Optional[int] = None,
        native_resolution: int = 64,
    ) -> None:
        if len(factor_names) != len(factor_sizes):
            raise ValueError(f"{len(factor_names)} factor names for {len(factor_sizes)} factor sizes")
        self.factor_names: List[str] = [str(n) for n in factor_names]
        self.factor_sizes: List[int] = [int(s) for s in factor_sizes]
        self.num_channels = int(num_channels)
        self.native_resolution = int(native_resolution)
        self.resolution = resolve_resolution(self.name, resolution, native_resolution)
        self.subset = None if subset is None else int(subset)
        self._grid_size = int(np.prod(self.factor_sizes, dtype=np.int64))  # len() is called per item: compute once
        self._subset_indices: Optional[np.ndarray] = None  # drawn on first use: num_images may be set later

    @classmethod
    def from_config(cls, data_cfg) -> "GroundTruthDataset":
        """Build from the ``data`` config section (``resolution`` None = native); datasets read from files
        override this."""
        return cls(resolution=data_cfg.resolution, subset=data_cfg.subset)

    # ----------------------------------------------------------------------------------- to implement
    def images_at(self, indices: np.ndarray) -> np.ndarray:
        """Images of dataset indices ``(n,)`` -> float32 ``(n, C, resolution, resolution)`` in [-1, 1]."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- grid
    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def num_images(self) -> int:
        """Size of the full factor grid (``len`` may be smaller with ``subset``)."""
        return self._grid_size

    def index_of(self, factors: np.ndarray) -> np.ndarray:
        """Factor values ``(n, F)`` (or ``(F,)``) -> row-major indices int64 ``(n,)`` (or scalar)."""
        factors = np.asarray(factors, dtype=np.int64)
        if factors.shape[-1] != self.num_factors:
            raise ValueError(f"factors have {factors.shape[-1]} columns; {self.name} has {self.num_factors} factors")
        return np.ravel_multi_index(tuple(np.moveaxis(factors, -1, 0)), self.factor_sizes).astype(np.int64)

    def factors_of(self, indices: np.ndarray) -> np.ndarray:
        """Row-major indices ``(n,)`` -> factor values int64 ``(n, F)``."""
        indices = np.asarray(indices, dtype=np.int64)
        return np.stack(np.unravel_index(indices, self.factor_sizes), axis=-1).astype(np.int64)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` factor tuples drawn uniformly and independently per factor: int64 ``(n, F)``."""
        return rng.integers(0, self.factor_sizes, size=(int(n), self.num_factors), dtype=np.int64)

    def images_from_factors(self, factors: np.ndarray) -> np.ndarray:
        """Factor values ``(n, F)`` -> float32 images ``(n, C, H, W)`` in [-1, 1]."""
        return self.images_at(self.index_of(np.atleast_2d(factors)))

    # ---------------------------------------------------------------------------------- torch Dataset
    @property
    def subset_indices(self) -> Optional[np.ndarray]:
        """Grid indices (len,) of the subset's images, sorted; None without ``subset``."""
        if self.subset is not None and self._subset_indices is None:
            self._subset_indices = subset_indices(self.num_images, self.subset)
        return self._subset_indices

    def grid_indices(self, positions: np.ndarray) -> np.ndarray:
        """Dataset positions ``(n,)`` in ``0 .. len - 1`` -> grid indices ``(n,)`` for ``images_at`` / ``factors_of``."""
        positions = np.asarray(positions, dtype=np.int64)
        rows = self.subset_indices
        return positions if rows is None else rows[positions]

    def __len__(self) -> int:
        return self.num_images if self.subset is None else min(self.subset, self.num_images)

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {self.name} of length {n}")
        return i % n

    def __getitem__(self, i: int):
        """-> (image FloatTensor (C, H, W) in [-1, 1], factors LongTensor (F,))."""
        i = self._check_index(int(i))
        indices = self.grid_indices(np.array([i], dtype=np.int64))
        return torch.from_numpy(self.images_at(indices)[0]), torch.from_numpy(self.factors_of(indices)[0])

    def __getitems__(self, indices: Sequence[int]):
        """A whole DataLoader batch at once (torch calls this when it exists): one vectorized read/render."""
        idx = np.asarray(indices, dtype=np.int64)
        n = len(self)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"indices out of range for {self.name} of length {n}")
        idx = self.grid_indices(idx % n)
        images = torch.from_numpy(self.images_at(idx))
        factors = torch.from_numpy(self.factors_of(idx))
        return list(zip(images.unbind(0), factors.unbind(0)))

    def describe(self) -> str:
        factors = ", ".join(f"{n} {s}" for n, s in zip(self.factor_names, self.factor_sizes))
        count = f"{len(self)} images" + (f" (a random subset of {self.num_images})" if len(self) < self.num_images else "")
        return f"{self.name}: {count}, {self.num_channels}x{self.resolution}x{self.resolution}; factors: {factors}"


def to_model_images(raw: np.ndarray, resolution: int, max_value: float = 255.0) -> np.ndarray:
    """Stored images ``(n, H, W, C)`` or ``(n, H, W)`` (0..max_value) -> float32 ``(n, C, R, R)`` in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(raw))
    if x.ndim == 3:
        x = x[..., None]
    # numpy owns the output: batches of torch-allocated tensors, unbound and collated in DataLoader
    # workers, grew the workers' memory by a batch per step (torch 2.13); numpy-backed ones do not
    out = np.empty((x.shape[0], x.shape[3], x.shape[1], x.shape[2]), dtype=np.float32)
    t = torch.from_numpy(out)
    t.copy_(x.permute(0, 3, 1, 2))  # converts and transposes in one pass
    t.mul_(2.0 / max_value).sub_(1.0)
    return resize_images(out, resolution)


def resize_images(x: np.ndarray, resolution: int) -> np.ndarray:
    """float ``(n, C, H, W)`` -> ``(n, C, R, R)``; no-op at size.

    Shrinking by an integer factor (64 -> 32, 128 -> 64) averages pixel blocks in numpy (area filter);
    other sizes use torch's antialiased bilinear interpolation (no torchvision)."""
    h, w = x.shape[-2:]
    if (h, w) == (resolution, resolution):
        return x
    if h == w and h % resolution == 0:
        k = h // resolution
        return x.reshape(x.shape[0], x.shape[1], resolution, k, resolution, k).mean(axis=(3, 5), dtype=np.float32)
    y = F.interpolate(torch.from_numpy(x), size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    out = np.empty(tuple(y.shape), dtype=np.float32)  # numpy-owned, see to_model_images
    torch.from_numpy(out).copy_(y.clamp_(-1.0, 1.0))
    return out
