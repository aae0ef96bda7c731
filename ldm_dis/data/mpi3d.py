"""MPI3D (Gondal et al. 2019), toy / realistic / real: ``mpi3d_<variant>.npz`` with ``images``
(N, 64, 64, 3) uint8 in row-major factor order and no labels.

The factor sizes follow from N: 1,036,800 images -> [6, 6, 2, 3, 3, 40, 40]; 460,800 (the smaller
real-world release) -> [4, 4, 2, 3, 3, 40, 40]. ``data.factor_sizes`` overrides the inference (for
other files in the same format, e.g. small test files). Read by rows with ``pread`` when the member
is stored uncompressed; a compressed member is copied once to an uncompressed ``.npy`` cache.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ldm_dis.data.errors import dataset_error
from ldm_dis.data.storage import open_array
from ldm_dis.data.stored import StoredImageDataset, check_images, require_path

FACTOR_NAMES = ["object_color", "object_shape", "object_size", "camera_height", "background_color", "horizontal_axis", "vertical_axis"]
_SIZES_BY_COUNT = {1_036_800: [6, 6, 2, 3, 3, 40, 40], 460_800: [4, 4, 2, 3, 3, 40, 40]}


def mpi3d_factor_sizes(num_images: int) -> Optional[list]:
    """Factor sizes of an MPI3D file with ``num_images`` images; None for a count no release has."""
    sizes = _SIZES_BY_COUNT.get(int(num_images))
    return None if sizes is None else list(sizes)


class MPI3D(StoredImageDataset):
    name = "mpi3d"

    def __init__(
        self,
        path: str,
        resolution: Optional[int] = None,
        subset: Optional[int] = None,
        cache_dir: Optional[str] = None,
        factor_sizes: Optional[Sequence[int]] = None,
    ) -> None:
        source = open_array(path, "images", self.name, cache_dir)
        check_images(source, self.name, channels=(3,))
        sizes = list(factor_sizes) if factor_sizes else mpi3d_factor_sizes(len(source))
        if sizes is None:
            raise dataset_error(
                self.name, path, "1,036,800 or 460,800 images (or data.factor_sizes for another count)", f"{len(source)} images"
            )
        if len(sizes) != 7 or int(np.prod(sizes)) != len(source):
            raise dataset_error(self.name, path, f"7 factor sizes whose product is the image count {len(source)}", f"factor sizes {sizes}")
        super().__init__(source, FACTOR_NAMES, sizes, resolution, subset)

    @classmethod
    def from_config(cls, data_cfg) -> "MPI3D":
        path = require_path(data_cfg, cls.name, "mpi3d_toy.npz, mpi3d_realistic.npz or mpi3d_real.npz")
        return cls(path, data_cfg.resolution, data_cfg.subset, data_cfg.cache_dir, data_cfg.factor_sizes)
