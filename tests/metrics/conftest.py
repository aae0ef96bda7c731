"""A tiny ground-truth dataset for metric tests: images are the factor values themselves."""

from __future__ import annotations

import numpy as np
import pytest


class FactorImageDataset:
    """Fake dataset with the project's dataset interface. An "image" (1, 1, F) holds the factor values
    scaled to [-1, 1], so a representation_fn can be any function of the factors."""

    def __init__(self, factor_sizes=(10, 10, 10, 8, 4, 15), factor_names=None):
        self.factor_sizes = list(factor_sizes)
        self.factor_names = factor_names or [f"f{j}" for j in range(len(factor_sizes))]
        self.num_channels, self.resolution = 1, 1

    def __len__(self):
        return int(np.prod(self.factor_sizes))

    def sample_factors(self, n, rng):
        return np.stack([rng.integers(k, size=n) for k in self.factor_sizes], axis=1).astype(np.int64)

    def images_from_factors(self, factors):
        scale = np.maximum(np.asarray(self.factor_sizes) - 1, 1)
        x = 2.0 * np.asarray(factors) / scale - 1.0
        return x[:, None, None, :].astype(np.float32)

    def __getitem__(self, i):
        import torch

        factors = np.array(np.unravel_index(i, self.factor_sizes))[None]
        return torch.from_numpy(self.images_from_factors(factors)[0]), torch.from_numpy(factors[0])


def factor_values(images: np.ndarray) -> np.ndarray:
    """(n, 1, 1, F) images of FactorImageDataset -> (n, F) values in [-1, 1]."""
    return images.reshape(len(images), -1).astype(np.float64)


class AlignedCodes:
    """Codes = the factors permuted, rescaled, plus tiny noise (noise from the image, so deterministic)."""

    def __init__(self, num_factors, seed=0, noise=1e-3, rotate=False):
        rng = np.random.default_rng(seed)
        self.perm = rng.permutation(num_factors)
        self.scale = rng.uniform(0.5, 3.0, size=num_factors)
        self.noise = noise
        self.rotation = np.linalg.qr(rng.normal(size=(num_factors, num_factors)))[0] if rotate else None

    def __call__(self, images):
        x = factor_values(images)
        # deterministic "noise" that depends on the value, so equal images give equal codes
        z = x[:, self.perm] * self.scale + self.noise * np.sin(1e3 * x[:, self.perm] + np.arange(x.shape[1]))
        return z @ self.rotation if self.rotation is not None else z


@pytest.fixture
def shapes_like():
    return FactorImageDataset()


@pytest.fixture
def small_dataset():
    return FactorImageDataset(factor_sizes=(4, 5, 3))
