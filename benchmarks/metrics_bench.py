"""Seconds per classic metric: ldm_dis.metrics vs a reference-style serial implementation.

The reference side is tests/metrics/dislib_reference.py, a transcription of disentanglement_lib's
loops (serial classifiers, representations 16 at a time, one call per FactorVAE batch). Both sides
score the same representation of Shapes3D-shaped factors (sizes 10, 10, 10, 8, 4, 15) with a
10-dimensional code; images are the factor values themselves, so the time is the metrics' own.

The speed-up is the ratio of wall seconds, so run it on an otherwise idle machine (the load average at
start and end is printed). CPU seconds are printed too: the reference's, and ours summed over all
threads and worker processes (more than our wall time when both cores work).

    .venv/bin/python benchmarks/metrics_bench.py            # standard sizes (10,000 / 5,000)
    .venv/bin/python benchmarks/metrics_bench.py --fast     # the --fast preset sizes
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import psutil

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


def cpu_seconds() -> tuple[float, dict[int, float]]:
    """CPU seconds (user + system) of this process and of each live child (the worker processes)."""
    me = psutil.Process()
    children = {}
    for child in me.children(recursive=True):
        try:
            children[child.pid] = sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return sum(me.cpu_times()[:2]), children


def timed(fn):
    """Run fn(); return (result, wall s, CPU s of this process and its workers)."""
    main0, kids0 = cpu_seconds()
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    main1, kids1 = cpu_seconds()
    kid_deltas = [t - kids0.get(pid, 0.0) for pid, t in kids1.items()]
    return result, wall, main1 - main0 + sum(kid_deltas)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="use the --fast preset sizes")
    parser.add_argument("--metrics", nargs="+", default=CLASSIC, choices=CLASSIC)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dataset, rep = ShapesLikeFactors(), MixedCode()
    preset = "fast" if args.fast else "standard"
    print(f"preset: {preset}; cores used by ours: {resolve_jobs(-1)}; reference: 1 (serial)")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    rows = []
    for name in args.metrics:
        sizes = FAST_PROTOCOL[name] if args.fast else {}
        ours, wall_o, cpu_o = timed(
            lambda: METRICS[name](dataset, rep, np.random.default_rng(args.seed), **sizes))
        ref, wall_r, cpu_r = timed(
            lambda: reference.CLASSIC[name](dataset, rep, np.random.RandomState(args.seed), **sizes))
        key = HEADLINE[name]
        rows.append((name, key, wall_o, cpu_o, wall_r, cpu_r, float(ours[key]), float(ref[key])))
        print(f"  {name}: ours {wall_o:.1f} s wall / {cpu_o:.1f} s CPU; "
              f"reference {wall_r:.1f} s wall / {cpu_r:.1f} s CPU", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print()
    print("| metric | ours wall (s) | ours CPU (s) | reference wall (s) | reference CPU (s) | ours / reference (wall) "
          "| score ours | score reference |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, key, wall_o, cpu_o, wall_r, cpu_r, s_o, s_r in rows:
        print(f"| {name} ({key}) | {wall_o:.1f} | {cpu_o:.1f} | {wall_r:.1f} | {cpu_r:.1f} "
              f"| {wall_o / max(wall_r, 1e-9):.3f} | {s_o:.3f} | {s_r:.3f} |")
    tot = [sum(r[i] for r in rows) for i in (2, 3, 4, 5)]
    print(f"| **classic suite** | {tot[0]:.1f} | {tot[1]:.1f} | {tot[2]:.1f} | {tot[3]:.1f} "
          f"| **{tot[0] / max(tot[2], 1e-9):.3f}** | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
