"""dSprites (Matthey et al. 2017): ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (a pickle inside:
load with ``encoding="latin1"``) with ``imgs`` (737280, 64, 64) uint8 of 0/1, ``latents_classes``
(737280, 6), ``latents_values`` (737280, 6) and ``metadata``, a pickled dict whose ``latents_sizes`` are
[1, 3, 6, 40, 32, 32] (colour, shape, scale, orientation, posX, posY).

The constant colour factor is dropped: 5 factors, 1 channel. The factor sizes come from the metadata
(checked against the image count and ``latents_classes``). The released file stores ``imgs``
compressed: it is copied once to an uncompressed ``.npy`` cache (3 GB) and read by rows from there.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ldm_dis.data.errors import dataset_error
from ldm_dis.data.storage import open_array, read_whole
from ldm_dis.data.stored import StoredImageDataset, check_images, grid_from_labels, require_path

FACTOR_NAMES = ["shape", "scale", "orientation", "pos_x", "pos_y"]


class DSprites(StoredImageDataset):
    name = "dsprites"

    def __init__(self, path: str, resolution: Optional[int] = None, subset: Optional[int] = None, cache_dir: Optional[str] = None) -> None:
        metadata = read_whole(path, "metadata", self.name, pickled=True)
        metadata = metadata.item() if isinstance(metadata, np.ndarray) and metadata.shape == () else metadata
        if not isinstance(metadata, dict) or "latents_sizes" not in metadata:
            raise dataset_error(self.name, path, "a pickled metadata dict with 'latents_sizes'", f"{type(metadata).__name__}")
        latent_sizes = [int(s) for s in np.asarray(metadata["latents_sizes"]).reshape(-1)]
        if len(latent_sizes) != 6 or latent_sizes[0] != 1:
            raise dataset_error(self.name, path, "metadata latents_sizes [1 colour, shape, scale, orientation, posX, posY]", f"{latent_sizes}")
        source = open_array(path, "imgs", self.name, cache_dir)
        check_images(source, self.name, ndim=3)
        classes = read_whole(path, "latents_classes", self.name)
        if classes.shape != (len(source), 6):
            raise dataset_error(self.name, path, f"latents_classes of shape ({len(source)}, 6)", f"shape {classes.shape}")
        sizes, row_of_index, _ = grid_from_labels(classes[:, 1:], self.name, path)
        if sizes != latent_sizes[1:]:
            raise dataset_error(self.name, path, f"latents_classes with the metadata's sizes {latent_sizes[1:]}", f"sizes {sizes}")
        super().__init__(source, FACTOR_NAMES, sizes, resolution, subset, row_of_index, max_value=1.0)

    @classmethod
    def from_config(cls, data_cfg) -> "DSprites":
        path = require_path(data_cfg, cls.name, "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz")
        return cls(path, data_cfg.resolution, data_cfg.subset, data_cfg.cache_dir)
