"""dSprites (Matthey et al. 2017): ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` with ``imgs``
(737280, 64, 64) uint8 of 0/1, ``latents_classes`` (737280, 6) int, ``latents_values`` (737280, 6) and
``metadata``, a pickled dict.

Only ``imgs`` and ``latents_classes`` are read, both without unpickling: the ``metadata`` member is
never opened (a pickle can run code), and the factor sizes are the release's constants (colour 1,
shape 3, scale 6, orientation 40, posX 32, posY 32). The constant colour factor is dropped: 5 factors,
1 channel. ``latents_classes`` must hold class indices within those sizes, each combination once; a
trimmed copy holding fewer values of a factor (a full sub-grid) is accepted with the sizes it holds.
The released file stores ``imgs`` compressed: it is copied once to an uncompressed ``.npy`` cache
(3 GB) and read by rows from there.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ldm_dis.data.errors import dataset_error
from ldm_dis.data.storage import open_array, read_whole
from ldm_dis.data.stored import StoredImageDataset, check_images, grid_from_labels, require_path

FACTOR_NAMES = ["shape", "scale", "orientation", "pos_x", "pos_y"]
FACTOR_SIZES = [3, 6, 40, 32, 32]  # the release's latents_sizes without the constant colour


class DSprites(StoredImageDataset):
    name = "dsprites"

    def __init__(self, path: str, resolution: Optional[int] = None, subset: Optional[int] = None, cache_dir: Optional[str] = None) -> None:
        source = open_array(path, "imgs", self.name, cache_dir)
        check_images(source, self.name, ndim=3)
        classes = read_whole(path, "latents_classes", self.name)
        if classes.shape != (len(source), 6) or not np.issubdtype(classes.dtype, np.integer):
            raise dataset_error(self.name, path, f"integer latents_classes of shape ({len(source)}, 6)",
                                f"{classes.dtype} of shape {classes.shape}")
        if np.any(classes[:, 0] != 0):
            raise dataset_error(self.name, path, "latents_classes with colour (column 0) always 0",
                                f"colour classes {np.unique(classes[:, 0]).tolist()}")
        for k, (name, size) in enumerate(zip(FACTOR_NAMES, FACTOR_SIZES), start=1):
            low, high = int(classes[:, k].min()), int(classes[:, k].max())
            if low < 0 or high >= size:
                raise dataset_error(self.name, path, f"latents_classes {name} (column {k}) in 0..{size - 1}",
                                    f"values {low}..{high}")
        sizes, row_of_index, _ = grid_from_labels(classes[:, 1:], self.name, path)
        super().__init__(source, FACTOR_NAMES, sizes, resolution, subset, row_of_index, max_value=1.0)

    @classmethod
    def from_config(cls, data_cfg) -> "DSprites":
        path = require_path(data_cfg, cls.name, "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz")
        return cls(path, data_cfg.resolution, data_cfg.subset, data_cfg.cache_dir)
