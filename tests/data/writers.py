"""Small files in exactly the formats of the real datasets, and their expected images."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def distinct_images(n: int, size: int = 64, channels: int = 3, seed: int = 0) -> np.ndarray:
    """uint8 ``(n, size, size, channels)``: random, so any mix-up of rows shows."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def as_model(raw: np.ndarray, max_value: float = 255.0) -> np.ndarray:
    """What the loaders must return at the stored resolution: float32 (n, C, H, W) in [-1, 1]."""
    x = raw.astype(np.float32)
    x = x[..., None] if x.ndim == 3 else x
    return x.transpose(0, 3, 1, 2) * np.float32(2.0 / max_value) - np.float32(1.0)


def grid(sizes) -> np.ndarray:
    """All factor tuples in row-major order, int64 ``(prod(sizes), F)``."""
    return np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1).astype(np.int64)


def write_shapes3d(path: Path, sizes=(2, 2, 2, 2, 2, 3), shuffle: bool = False, images=None, labels=None):
    """``images`` uint8 (N, 64, 64, 3) and ``labels`` float64 (N, 6) with the real label values."""
    import h5py

    classes = grid(sizes)
    values = [np.linspace(0, 0.9, 10), np.linspace(0, 0.9, 10), np.linspace(0, 0.9, 10),
              np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15)]
    lab = np.stack([values[k][classes[:, k]] for k in range(6)], axis=1)
    img = distinct_images(len(classes))
    order = np.random.default_rng(1).permutation(len(classes)) if shuffle else np.arange(len(classes))
    with h5py.File(path, "w") as fh:
        fh.create_dataset("images", data=img[order] if images is None else images, chunks=(4, 64, 64, 3), compression="gzip")
        fh.create_dataset("labels", data=lab[order] if labels is None else labels)
    return img  # in row-major factor order


def write_mpi3d(path: Path, n: int = 48, compressed: bool = False, key: str = "images", images=None):
    img = distinct_images(n) if images is None else images
    (np.savez_compressed if compressed else np.savez)(path, **{key: img})
    return img


def write_dsprites(path: Path, latents_sizes=(1, 3, 2, 2, 2, 2), metadata=None):
    """As the release: compressed npz with imgs (0/1), latents_classes, latents_values and a pickled
    ``metadata`` object (the loader must never unpickle it; pass any object to have it pickled there)."""
    classes = grid(latents_sizes)
    imgs = np.random.default_rng(2).integers(0, 2, (len(classes), 64, 64), dtype=np.uint8)
    if metadata is None:
        metadata = {
            "date": "April 2017", "description": "small test file in the dSprites format", "version": 1,
            "latents_names": ("color", "shape", "scale", "orientation", "posX", "posY"),
            "latents_sizes": np.array(latents_sizes), "author": "test", "title": "dSprites dataset",
            "latents_possible_values": {"shape": np.arange(1.0, 1.0 + latents_sizes[1])},
        }
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=classes.astype(np.float64),
                        metadata=np.array(metadata, dtype=object))
    return imgs


def write_cars3d(folder: Path, num_cars: int = 2, shape=(128, 128, 3, 24, 4), dtype=np.uint8):
    """``car_XXX.mat`` files with ``im`` (128, 128, 3, 24, 4); returns the list of arrays."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    ims = []
    for k in range(num_cars):
        im = np.random.default_rng(10 + k).integers(0, 256, shape).astype(dtype)
        savemat(folder / f"car_{k:03d}_mesh.mat", {"im": im})
        ims.append(im)
    return ims


def write_celeba(root: Path, n: int = 4, names=None):
    """``img_align_celeba/000001.jpg`` ... (178x218) and ``list_attr_celeba.txt``; returns attributes (n, 40) of +-1."""
    from PIL import Image

    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    attrs = rng.choice([-1, 1], size=(n, 40))
    names = names or [f"Attr_{k}" for k in range(40)]
    lines = [str(n), " ".join(names)]
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(root / "img_align_celeba" / name)
        lines.append(name + " " + " ".join(f"{v:2d}" for v in attrs[i]))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    return attrs


