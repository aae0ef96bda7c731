"""Shapes3D (Burgess and Kim 2018): ``3dshapes.h5`` with ``images`` (480000, 64, 64, 3) uint8 and
``labels`` (480000, 6) float64, ordered row-major by floor_hue 10, wall_hue 10, object_hue 10, scale 8,
shape 4, orientation 15.

The factor sizes are read from the labels (the distinct values of each column), so a file with fewer
values per factor, in the same format, works too (the tests use such files). The HDF5 file is opened
lazily in each DataLoader worker; ``ldm-dis data prepare`` writes an uncompressed ``.npy`` copy of the
images that is faster to read at random.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ldm_dis.data.errors import dataset_error
from ldm_dis.data.storage import open_array, read_whole
from ldm_dis.data.stored import StoredImageDataset, check_images, grid_from_labels, require_path

FACTOR_NAMES = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
FACTOR_SIZES = [10, 10, 10, 8, 4, 15]


class Shapes3D(StoredImageDataset):
    name = "shapes3d"

    def __init__(self, path: str, resolution: Optional[int] = None, subset: Optional[int] = None, cache_dir: Optional[str] = None) -> None:
        source = open_array(path, "images", self.name, cache_dir)
        check_images(source, self.name, channels=(3,))
        labels = read_whole(path, "labels", self.name)
        if labels.shape != (len(source), 6) or not np.issubdtype(labels.dtype, np.number):
            raise dataset_error(self.name, path, f"numeric labels of shape ({len(source)}, 6)", f"{labels.dtype} {labels.shape}")
        # rounded: float noise in a label must not make two values of one factor level
        sizes, row_of_index, _ = grid_from_labels(np.round(labels, 6), self.name, path)
        super().__init__(source, FACTOR_NAMES, sizes, resolution, subset, row_of_index)

    @classmethod
    def from_config(cls, data_cfg) -> "Shapes3D":
        path = require_path(data_cfg, cls.name, "3dshapes.h5")
        return cls(path, data_cfg.resolution, data_cfg.subset, data_cfg.cache_dir)
