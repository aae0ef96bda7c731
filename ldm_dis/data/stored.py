"""Datasets whose images are stored in a file: the shared reading, checking and factor-grid logic.

A stored dataset is an :class:`~ldm_dis.data.storage.ArraySource` of images plus a factor grid. Images
are usually stored in row-major factor order (Shapes3D, MPI3D, dSprites); when a label array says
otherwise, ``row_of_index`` maps a row-major grid index to the file's row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from ldm_dis.data.base import GroundTruthDataset, to_model_images
from ldm_dis.data.errors import dataset_error
from ldm_dis.data.storage import ArraySource


class StoredImageDataset(GroundTruthDataset):
    """Images ``(N, H, W[, C])`` read by rows from ``source``; ``max_value`` is white (255, or 1 for dSprites).
    ``resolution`` None serves them at their stored size."""

    def __init__(
        self,
        source: ArraySource,
        factor_names: Sequence[str],
        factor_sizes: Sequence[int],
        resolution: Optional[int],
        subset: Optional[int] = None,
        row_of_index: Optional[np.ndarray] = None,
        max_value: float = 255.0,
        channels_first: bool = False,
    ) -> None:
        channels = source.shape[1] if channels_first else (source.shape[3] if len(source.shape) == 4 else 1)
        native = source.shape[2] if channels_first else source.shape[1]  # the stored images' size (square)
        super().__init__(factor_names, factor_sizes, channels, resolution, subset, native_resolution=native)
        if self.num_images != len(source):
            raise dataset_error(
                self.name, source.path, f"{self.num_images} images for factor sizes {self.factor_sizes}", f"{len(source)} images"
            )
        self.source = source
        self.row_of_index = row_of_index
        self.max_value = float(max_value)
        self.channels_first = channels_first

    @property
    def path(self) -> Path:
        return self.source.path

    def images_at(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        rows = indices if self.row_of_index is None else self.row_of_index[indices]
        raw = self.source.read(rows)
        if self.channels_first:
            raw = raw.transpose(0, 2, 3, 1)
        return to_model_images(raw, self.resolution, self.max_value)

    def describe(self) -> str:
        return f"{super().describe()}\nfile: {self.source.describe()}"


def check_images(
    source: ArraySource, dataset: str, ndim: int = 4, channels: Tuple[int, ...] = (3,), dtypes=(np.uint8,), size=None
) -> None:
    """Raise a DatasetError unless the image array is ``(N, H, W, C)`` (``ndim`` 4) or ``(N, H, W)`` (3)."""
    shape, dtype = source.shape, source.dtype
    want = "(N, H, W)" if ndim == 3 else f"(N, H, W, C) with C in {list(channels)}"
    if size is not None:
        want = want.replace("H, W", f"{size}, {size}")
    ok = len(shape) == ndim and shape[0] > 0 and shape[1] == shape[2] and (ndim == 3 or shape[3] in channels)
    ok = ok and (size is None or shape[1] == size)
    if not ok:
        raise dataset_error(dataset, source.path, f"images {source.key!r} of shape {want}", f"shape {shape}")
    if not any(np.dtype(dtype) == np.dtype(d) for d in dtypes):
        raise dataset_error(dataset, source.path, f"images {source.key!r} of dtype {[np.dtype(d).name for d in dtypes]}", f"dtype {dtype}")


def check_float_images(source: ArraySource, dataset: str, high: float = 1.0, chunk_bytes: int = 64 << 20) -> None:
    """Raise a DatasetError unless every value of a float image array is finite and in [0, ``high``].
    Reads the whole array once, in pieces of ``chunk_bytes`` (a NaN would otherwise surface as a NaN loss)."""
    if not np.issubdtype(source.dtype, np.floating):
        return
    rows = max(1, chunk_bytes // max(1, int(np.prod(source.shape[1:], dtype=np.int64)) * source.dtype.itemsize))
    nan = inf = 0
    first_bad, low_seen, high_seen = None, np.inf, -np.inf
    for start in range(0, len(source), rows):
        x = source.read(np.arange(start, min(start + rows, len(source))))
        x = x.reshape(len(x), -1)
        finite = np.isfinite(x)
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        if len(bad_rows):
            nan += int(np.isnan(x).any(axis=1).sum())
            inf += int(np.isinf(x).any(axis=1).sum())
            first_bad = start + int(bad_rows[0]) if first_bad is None else first_bad
        values = x[finite]
        if values.size:
            low_seen, high_seen = min(low_seen, float(values.min())), max(high_seen, float(values.max()))
    want = f"images {source.key!r} of finite floats in [0, {high:g}]"
    if nan or inf:
        raise dataset_error(dataset, source.path, want, f"{nan} images with NaN and {inf} with inf values (the first is row {first_bad})")
    slack = 1e-6 * high  # float rounding of a value stored as exactly 0 or 1
    if low_seen < -slack or high_seen > high + slack:
        hint = " (0..255 floats: divide by 255, or store uint8)" if high_seen > 1.5 * high else ""
        raise dataset_error(dataset, source.path, want, f"values from {low_seen:.4g} to {high_seen:.4g}{hint}")


def grid_from_labels(labels: np.ndarray, dataset: str, path) -> Tuple[list, Optional[np.ndarray], np.ndarray]:
    """Label values ``(N, F)`` -> (factor sizes, ``row_of_index`` or None when already row-major, classes ``(N, F)``).

    Each column's distinct values, sorted, become classes 0..s-1. Every combination must occur exactly
    once: metrics ask for the image of any factor tuple."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise dataset_error(dataset, path, "labels of shape (N, F)", f"shape {labels.shape}")
    classes = np.empty(labels.shape, dtype=np.int64)
    sizes = []
    for k in range(labels.shape[1]):
        values, classes[:, k] = np.unique(labels[:, k], return_inverse=True)
        sizes.append(len(values))
    index = np.ravel_multi_index(tuple(classes.T), sizes)
    if np.array_equal(index, np.arange(len(index))):
        return sizes, None, classes
    if int(np.prod(sizes, dtype=np.int64)) != len(index) or np.bincount(index, minlength=len(index)).max() > 1:
        raise dataset_error(
            dataset, path, f"labels with every combination of the factor values exactly once ({sizes} -> {int(np.prod(sizes))} images)",
            f"{len(index)} rows with {len(np.unique(index))} distinct combinations",
        )
    row_of_index = np.empty(len(index), dtype=np.int64)
    row_of_index[index] = np.arange(len(index))
    return sizes, row_of_index, classes


def require_path(data_cfg, dataset: str, what: str) -> str:
    """``data.path`` or a DatasetError saying what file it should name."""
    if not data_cfg.path:
        raise dataset_error(dataset, None, f"data.path naming {what}", "no path (data.path is unset)")
    return str(data_cfg.path)
