"""DataLoader workers must not grow: torch-allocated batches, split and collated in workers, once grew each
worker by about a batch per step (see docs/benchmarks.md, Data loading). Slow: run with -m slow."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch

from ldm_dis.data import build_dataset


def _anon_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("RssAnon:")) / 1024


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")
@pytest.mark.parametrize("resolution", [64, 32])  # 32: the downscaling path
def test_workers_do_not_grow_over_many_batches(tmp_path, resolution):
    np.savez(tmp_path / "mpi3d_toy.npz", images=np.random.default_rng(0).integers(0, 256, (8192, 64, 64, 3), dtype=np.uint8))
    ds = build_dataset({"name": "mpi3d", "path": str(tmp_path / "mpi3d_toy.npz"), "resolution": resolution,
                        "factor_sizes": [8192, 1, 1, 1, 1, 1, 1]})
    loader = torch.utils.data.DataLoader(ds, batch_size=256, shuffle=True, num_workers=2, persistent_workers=True)
    iterator = iter(itertools.chain.from_iterable(itertools.repeat(loader, 8)))
    for _ in range(20):
        next(iterator)
    workers = [w.pid for w in loader._iterator._workers]
    before = [_anon_mib(p) for p in workers]
    for _ in range(200):
        next(iterator)
    after = [_anon_mib(p) for p in workers]
    # 200 batches of 256 x 3 x 64 x 64 float32 are 2.4 GiB: a leak of even a tenth of that would show
    assert max(a - b for a, b in zip(after, before)) < 64, (before, after)
