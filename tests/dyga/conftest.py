"""Synthetic unit features with known clusters, and one thread for BLAS and torch: on a shared 2-core
machine, busy-waiting threads oversubscribe the cores and make small products many times slower."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def make_clusters(n_clusters, n_per_cluster, dim=32, separation=10.0, radius=1.0, intrinsic_dim=4,
                  noise=0.02, seed=0):
    """Points around ``n_clusters`` centers in ``dim`` dimensions, well separated.

    Centers lie on random orthonormal directions scaled by separation / sqrt(2), so every pair is
    exactly ``separation`` apart (needs n_clusters <= dim); each cluster spreads over a random
    ``intrinsic_dim``-dimensional subspace (RMS radius ``radius``) plus isotropic noise of standard
    deviation ``noise`` per coordinate. Returns X (n, dim), labels (n,), centers (n_clusters, dim).
    """
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(dim, n_clusters)))[0].T  # (n_clusters, dim) orthonormal
    centers = directions * separation / np.sqrt(2) + rng.normal(size=dim)  # anywhere, not at 0
    labels = np.repeat(np.arange(n_clusters), n_per_cluster)
    bases = np.linalg.qr(rng.normal(size=(n_clusters, dim, intrinsic_dim)))[0]  # orthonormal columns
    coords = rng.normal(size=(len(labels), intrinsic_dim)) * radius / np.sqrt(intrinsic_dim)
    X = centers[labels] + np.einsum("ndi,ni->nd", bases[labels], coords)
    X += noise * rng.normal(size=X.shape)
    order = rng.permutation(len(labels))
    return X[order], labels[order], centers


@pytest.fixture
def clusters():
    return make_clusters
