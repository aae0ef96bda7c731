"""``arrays``: any image array in a ``.npz``, ``.npy`` or ``.h5`` file with its factors given either by a
label array or by factor sizes for row-major order.

    data: {name: arrays, path: my.npz, images_key: images, labels_key: labels}
    data: {name: arrays, path: my.npy, factor_sizes: [3, 6, 40], factor_names: [shape, scale, angle]}

Images: ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with C = 1 or 3, square; uint8 (0..255) or
float (0..1). Labels: ``(N, F)`` values of any numeric type; each column's distinct values become the
classes of one factor, and every combination must occur once. For a ``.npy`` file, ``labels_key`` is
the path of a second ``.npy`` (relative to the images' folder).

Factor names: ``data.factor_names`` when given; otherwise a ``factor_names`` array of strings in the
``.npz`` / ``.h5`` file (as ``ldm-dis export`` writes one); otherwise ``factor_0``, ``factor_1``, ...
Images are served at their stored size unless ``data.resolution`` says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ldm_dis.data.errors import dataset_error
from ldm_dis.data.storage import npz_keys, open_array, read_whole
from ldm_dis.data.stored import StoredImageDataset, check_float_images, grid_from_labels, require_path


class ArrayDataset(StoredImageDataset):
    name = "arrays"

    def __init__(
        self,
        path: str,
        resolution: Optional[int] = None,
        subset: Optional[int] = None,
        images_key: str = "images",
        labels_key: Optional[str] = None,
        factor_sizes: Optional[Sequence[int]] = None,
        factor_names: Optional[Sequence[str]] = None,
        cache_dir: Optional[str] = None,
    ) -> None:
        source = open_array(path, images_key, self.name, cache_dir)
        shape = source.shape
        channels_first = len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3)
        hw = shape[2:4] if channels_first else shape[1:3]
        channels = (shape[1] if channels_first else shape[3]) if len(shape) == 4 else 1
        if len(shape) not in (3, 4) or channels not in (1, 3) or hw[0] != hw[1]:
            raise dataset_error(self.name, path, "square images (N, H, W), (N, H, W, C) or (N, C, H, W) with C in [1, 3]", f"shape {shape}")
        if source.dtype == np.uint8:
            max_value = 255.0
        elif np.issubdtype(source.dtype, np.floating):
            max_value = 1.0
            check_float_images(source, self.name, max_value)  # NaN, inf or 0..255 floats are refused here
        else:
            raise dataset_error(self.name, path, "uint8 (0..255) or float (0..1) images", f"dtype {source.dtype}")

        row_of_index = None
        if labels_key and factor_sizes:
            raise dataset_error(self.name, path, "either data.labels_key or data.factor_sizes", "both")
        if labels_key:
            label_file = Path(path).parent / labels_key if Path(path).suffix.lower() == ".npy" else Path(path)
            labels = read_whole(label_file, labels_key, self.name)
            if labels.ndim != 2 or len(labels) != len(source):
                raise dataset_error(self.name, label_file, f"labels {labels_key!r} of shape ({len(source)}, F)", f"shape {labels.shape}")
            sizes, row_of_index, _ = grid_from_labels(labels, self.name, label_file)
        elif factor_sizes:
            sizes = [int(s) for s in factor_sizes]
            if int(np.prod(sizes)) != len(source):
                raise dataset_error(self.name, path, f"{int(np.prod(sizes))} images for data.factor_sizes {sizes}", f"{len(source)} images")
        else:
            raise dataset_error(self.name, path, "data.labels_key or data.factor_sizes to define the factors", "neither")
        names = list(factor_names) if factor_names else stored_factor_names(Path(path), self.name)
        names = names if names is not None else [f"factor_{k}" for k in range(len(sizes))]
        if len(names) != len(sizes):
            raise dataset_error(self.name, path, f"{len(sizes)} data.factor_names", f"{len(names)}")
        super().__init__(source, names, sizes, resolution, subset, row_of_index, max_value, channels_first)

    @classmethod
    def from_config(cls, data_cfg) -> "ArrayDataset":
        path = require_path(data_cfg, cls.name, "a .npz, .npy or .h5 file of images")
        return cls(
            path, data_cfg.resolution, data_cfg.subset, data_cfg.images_key, data_cfg.labels_key,
            data_cfg.factor_sizes, data_cfg.factor_names, data_cfg.cache_dir,
        )


FACTOR_NAMES_KEY = "factor_names"


def stored_factor_names(path: Path, dataset: str) -> Optional[list]:
    """The ``factor_names`` array of strings in a ``.npz`` or ``.h5`` file; None when there is none."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if FACTOR_NAMES_KEY not in npz_keys(path, dataset):
            return None
    elif suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as fh:
            if FACTOR_NAMES_KEY not in fh:
                return None
    else:
        return None
    names = np.asarray(read_whole(path, FACTOR_NAMES_KEY, dataset))
    strings = names.dtype.kind in "US" or (names.dtype.kind == "O" and all(isinstance(n, (str, bytes)) for n in names.flat))
    if names.ndim != 1 or not strings:  # h5py gives variable-length strings as objects
        raise dataset_error(dataset, path, f"{FACTOR_NAMES_KEY!r} as a 1-D array of strings", f"{names.dtype} {names.shape}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
