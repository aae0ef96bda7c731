"""CelebA (Liu et al. 2015), used for the TAD metric: ``img_align_celeba/*.jpg`` (178x218) and
``list_attr_celeba.txt`` (first line the image count, second line the 40 attribute names, then one line
per image: ``000001.jpg  -1  1 ...``).

The 40 binary attributes stand in for factors (``factor_sizes`` all 2, values 0/1), but they are not an
enumerable grid: there is no image for an arbitrary attribute tuple, so ``images_from_factors``,
``index_of`` and ``sample_factors`` raise; TAD uses images and attributes of dataset samples
(``images_at`` and ``factors_of`` of dataset indices). Images are centre-cropped to a 148-pixel square
(for 178-pixel-wide images) and resized to ``resolution``, as is customary for 64x64 CelebA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ldm_dis.data.base import GroundTruthDataset, to_model_images
from ldm_dis.data.errors import dataset_error

ATTR_FILE = "list_attr_celeba.txt"
IMAGE_DIR = "img_align_celeba"
NUM_ATTRIBUTES = 40
CROP_FRACTION = 148 / 178  # of the shorter image side


def read_attributes(path: Path):
    """``list_attr_celeba.txt`` -> (file names list, attribute names list, attributes int64 (N, 40) of 0/1)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise dataset_error("celeba", path, "a readable text attribute file", f"{exc}") from None
    try:
        count = int(lines[0].strip())
    except (IndexError, ValueError):
        raise dataset_error("celeba", path, "the image count on the first line", repr(lines[0][:40]) if lines else "an empty file") from None
    names = lines[1].split() if len(lines) > 1 else []
    if len(names) != NUM_ATTRIBUTES:
        raise dataset_error("celeba", path, f"{NUM_ATTRIBUTES} attribute names on the second line", f"{len(names)}")
    rows = [line.split() for line in lines[2:] if line.strip()]
    if len(rows) != count:
        raise dataset_error("celeba", path, f"{count} image lines (the count on the first line)", f"{len(rows)} (truncated?)")
    bad = next((i for i, r in enumerate(rows) if len(r) != NUM_ATTRIBUTES + 1), None)
    if bad is not None:
        raise dataset_error("celeba", path, f"a file name and {NUM_ATTRIBUTES} values per line", f"line {bad + 3}: {' '.join(rows[bad])[:80]!r}")
    try:
        values = np.array([r[1:] for r in rows], dtype=np.int64)
    except ValueError:
        raise dataset_error("celeba", path, "attribute values 1 and -1", "non-integer values") from None
    if not np.isin(values, (-1, 1)).all():
        raise dataset_error("celeba", path, "attribute values 1 and -1", f"values {np.unique(values)[:10].tolist()}")
    return [r[0] for r in rows], names, (values > 0).astype(np.int64)


def find_files(path: Path):
    """Accept the dataset root (with ``list_attr_celeba.txt`` and ``img_align_celeba/``, also under ``Anno/``)
    or the image folder itself -> (attribute file, image folder)."""
    for attr in (path / ATTR_FILE, path / "Anno" / ATTR_FILE, path.parent / ATTR_FILE):
        if attr.is_file():
            images = path / IMAGE_DIR if (path / IMAGE_DIR).is_dir() else path
            return attr, images
    raise dataset_error("celeba", path, f"a folder with {ATTR_FILE} and {IMAGE_DIR}/", "no such folder" if not path.exists() else f"no {ATTR_FILE}")


class CelebA(GroundTruthDataset):
    name = "celeba"

    def __init__(self, path: str, resolution: Optional[int] = None, subset: Optional[int] = None) -> None:
        attr_file, self.image_dir = find_files(Path(path))
        self.files, names, self.attributes = read_attributes(attr_file)
        # the aligned images are 178x218: a square centre crop is always resized, to 64 unless told otherwise
        super().__init__(names, [2] * NUM_ATTRIBUTES, num_channels=3, resolution=resolution, subset=subset,
                         native_resolution=resolution or 64)
        if not (self.image_dir / self.files[0]).is_file():
            raise dataset_error(self.name, self.image_dir / self.files[0], f"the images listed in {attr_file}", "no such file")

    @classmethod
    def from_config(cls, data_cfg) -> "CelebA":
        if not data_cfg.path:
            raise dataset_error(cls.name, None, f"data.path naming the folder with {ATTR_FILE} and {IMAGE_DIR}/", "no path")
        return cls(data_cfg.path, data_cfg.resolution, data_cfg.subset)

    @property
    def num_images(self) -> int:
        return len(self.files)

    def load_image(self, i: int) -> np.ndarray:
        """Image ``i`` centre-cropped and resized -> uint8 ``(R, R, 3)``."""
        file = self.image_dir / self.files[i]
        try:
            with Image.open(file) as img:
                img = img.convert("RGB")
                w, h = img.size
                side = round(min(w, h) * CROP_FRACTION)
                left, top = (w - side) // 2, (h - side) // 2
                img = img.crop((left, top, left + side, top + side)).resize((self.resolution,) * 2, Image.BILINEAR)
                return np.asarray(img, dtype=np.uint8)
        except OSError as exc:
            raise dataset_error(self.name, file, "a readable JPEG image", f"{exc}") from None

    def images_at(self, indices: np.ndarray) -> np.ndarray:
        raw = np.stack([self.load_image(int(i)) for i in np.asarray(indices).reshape(-1)])
        return to_model_images(raw, self.resolution)

    def factors_of(self, indices: np.ndarray) -> np.ndarray:
        """Attributes (0/1) of dataset images ``(n,)`` -> int64 ``(n, 40)``."""
        return self.attributes[np.asarray(indices, dtype=np.int64)]

    def _no_grid(self, what: str):
        return TypeError(
            f"celeba has attributes, not an enumerable factor grid: {what} is undefined; "
            "use dataset samples (images_at and factors_of of dataset indices), as TAD does"
        )

    def index_of(self, factors):
        raise self._no_grid("index_of")

    def sample_factors(self, n, rng):
        raise self._no_grid("sample_factors")

    def images_from_factors(self, factors):
        raise self._no_grid("images_from_factors")
