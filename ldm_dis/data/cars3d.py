"""Cars3D (Reed et al. 2015, "Deep Visual Analogy-Making"): a folder of ``*.mat`` files, one per car,
each with ``im`` of shape (128, 128, 3, 24, 4) uint8: height, width, RGB, 24 azimuths, 4 elevations.

Factors (row-major): elevation 4, azimuth 24, object (one per file, in sorted file-name order; 183 in
the release). The 17,568 images are resized once, at load, to ``resolution`` (default 64, the size every
Cars3D benchmark uses; antialiased bilinear, torch) and kept in memory as uint8: 216 MB at 64x64, shared
with forked DataLoader workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ldm_dis.data.base import to_model_images
from ldm_dis.data.errors import dataset_error
from ldm_dis.data.storage import InMemoryArray
from ldm_dis.data.stored import StoredImageDataset, require_path

FACTOR_NAMES = ["elevation", "azimuth", "object"]
NUM_ELEVATIONS, NUM_AZIMUTHS = 4, 24
BENCHMARK_RESOLUTION = 64  # the renders are 128x128; the disentanglement literature uses them at 64x64


def load_car(path: Path, resolution: int) -> np.ndarray:
    """One ``.mat`` -> uint8 ``(4 elevations, 24 azimuths, R, R, 3)``."""
    from scipy.io import loadmat

    try:
        im = loadmat(path)["im"]
    except KeyError:
        raise dataset_error("cars3d", path, "a .mat file with a variable 'im'", "no variable 'im'") from None
    except Exception as exc:  # scipy raises ValueError, OSError, MatReadError... for damaged files
        raise dataset_error("cars3d", path, "a readable MATLAB .mat file", f"an unreadable or truncated file ({exc})") from None
    if im.ndim != 5 or im.shape[2:] != (3, NUM_AZIMUTHS, NUM_ELEVATIONS) or im.shape[0] != im.shape[1]:
        raise dataset_error("cars3d", path, "'im' of shape (128, 128, 3, 24, 4)", f"shape {im.shape}")
    if im.dtype != np.uint8:
        raise dataset_error("cars3d", path, "'im' of dtype uint8", f"dtype {im.dtype}")
    views = im.transpose(4, 3, 0, 1, 2).reshape(-1, im.shape[0], im.shape[1], 3)  # (elev*az, H, W, 3)
    small = to_model_images(views, resolution)  # float (96, 3, R, R) in [-1, 1]
    small = np.round((small + 1.0) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)
    return small.reshape(NUM_ELEVATIONS, NUM_AZIMUTHS, resolution, resolution, 3)


class Cars3D(StoredImageDataset):
    name = "cars3d"

    def __init__(self, path: str, resolution: Optional[int] = None, subset: Optional[int] = None) -> None:
        folder = Path(path)
        if not folder.is_dir():
            raise dataset_error(self.name, folder, "a folder of *.mat files (one per car)", "no such folder" if not folder.exists() else "a file")
        files = sorted(folder.glob("*.mat"))
        if not files:
            raise dataset_error(self.name, folder, "a folder of *.mat files (one per car)", "no .mat file")
        resolution = BENCHMARK_RESOLUTION if resolution is None else int(resolution)
        print(f"cars3d: the 128x128 renders are resized to {resolution}x{resolution} once, at load", flush=True)
        images = np.empty((NUM_ELEVATIONS, NUM_AZIMUTHS, len(files), resolution, resolution, 3), dtype=np.uint8)
        for k, file in enumerate(files):
            images[:, :, k] = load_car(file, resolution)
        source = InMemoryArray(images.reshape(-1, resolution, resolution, 3), folder, "im")
        super().__init__(source, FACTOR_NAMES, [NUM_ELEVATIONS, NUM_AZIMUTHS, len(files)], resolution, subset)

    @classmethod
    def from_config(cls, data_cfg) -> "Cars3D":
        return cls(require_path(data_cfg, cls.name, "the folder of car *.mat files"), data_cfg.resolution, data_cfg.subset)
