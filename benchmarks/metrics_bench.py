"""Seconds per classic metric: ldm_dis.metrics vs a reference-style serial implementation.

The reference side is tests/metrics/dislib_reference.py, a transcription of disentanglement_lib's
loops (serial classifiers, representations 16 at a time, one call per FactorVAE batch). Both sides
score the same representation of Shapes3D-shaped factors (sizes 10, 10, 10, 8, 4, 15) with a
10-dimensional code; images are the factor values themselves, so the time is the metrics' own.

    .venv/bin/python benchmarks/metrics_bench.py            # standard sizes (10,000 / 5,000)
    .venv/bin/python benchmarks/metrics_bench.py --fast     # the --fast preset sizes
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "metrics"))

import dislib_reference as reference  # noqa: E402

from ldm_dis.metrics import FAST_PROTOCOL, METRICS  # noqa: E402
from ldm_dis.metrics.parallel import resolve_jobs  # noqa: E402

CLASSIC = ["factorvae", "dci", "mig", "sap", "modularity"]
HEADLINE = {"factorvae": "eval_accuracy", "dci": "disentanglement", "mig": "discrete_mig",
            "sap": "SAP_score", "modularity": "modularity_score"}


class ShapesLikeFactors:
    """Factor sizes of Shapes3D; an "image" (1, 1, 6) is the factor values scaled to [-1, 1]."""

    factor_sizes = [10, 10, 10, 8, 4, 15]
    factor_names = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    num_channels, resolution = 1, 1

    def sample_factors(self, n, rng):
        return np.stack([rng.integers(k, size=n) for k in self.factor_sizes], axis=1)

    def images_from_factors(self, factors):
        x = 2.0 * np.asarray(factors) / (np.asarray(self.factor_sizes) - 1) - 1.0
        return x[:, None, None, :].astype(np.float32)


class MixedCode:
    """A partly disentangled 10-d code: factors mixed by near-identity weights, 4 nuisance dims,
    and value-dependent jitter (deterministic, so equal images give equal codes)."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.mix = np.eye(6, 10) + 0.3 * rng.normal(size=(6, 10))

    def __call__(self, images):
        x = images.reshape(len(images), -1).astype(np.float64)
        z = np.tanh(x @ self.mix)
        return z + 0.05 * np.sin(50.0 * z + np.arange(10))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="use the --fast preset sizes")
    parser.add_argument("--metrics", nargs="+", default=CLASSIC, choices=CLASSIC)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dataset, rep = ShapesLikeFactors(), MixedCode()
    preset = "fast" if args.fast else "standard"
    print(f"preset: {preset}; cores used by ours: {resolve_jobs(-1)}; reference: 1 (serial)")
    rows = []
    for name in args.metrics:
        sizes = FAST_PROTOCOL[name] if args.fast else {}
        start = time.perf_counter()
        ours = METRICS[name](dataset, rep, np.random.default_rng(args.seed), **sizes)
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        ref = reference.CLASSIC[name](dataset, rep, np.random.RandomState(args.seed), **sizes)
        t_ref = time.perf_counter() - start
        key = HEADLINE[name]
        rows.append((name, t_ours, t_ref, float(ours[key]), float(ref[key]), key))
        print(f"  {name}: ours {t_ours:.1f} s, reference {t_ref:.1f} s", flush=True)
    print()
    print("| metric | ours (s) | reference (s) | speed-up | score ours | score reference |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, t_ours, t_ref, s_ours, s_ref, key in rows:
        print(f"| {name} ({key}) | {t_ours:.1f} | {t_ref:.1f} | {t_ref / t_ours:.1f}x | {s_ours:.3f} | {s_ref:.3f} |")
    total_ours, total_ref = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"| **total** | {total_ours:.1f} | {total_ref:.1f} | {total_ref / total_ours:.1f}x | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
