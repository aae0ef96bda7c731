"""Seconds to select one unit's anchors (DyGA) beside scikit-learn's full-covariance GaussianMixture.

    OMP_NUM_THREADS=1 python benchmarks/dyga_bench.py                     # 10k, 100k, 1M features
    OMP_NUM_THREADS=1 python benchmarks/dyga_bench.py --sizes 10000 100000 --sklearn-max 100000

Features: D = 32 values per point around ``--clusters`` well-separated centers, each cluster spread
over a 4-dimensional subspace plus small isotropic noise (the shape of a latent unit's features).
DyGA = ``select_anchors`` with the paper's values (K0 = 8, phi = psi = 0.5, K_max = 32): init, split,
filter, refit. scikit-learn gets the K that DyGA ended with, its default k-means init, tol 1e-3.
Both run on one thread (threadpoolctl); the table gives wall seconds and CPU seconds of this process
(on a shared machine, CPU seconds are the fairer number) and the mean log-likelihood per point.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from ldm_dis.bottlenecks.dyga import select_anchors


def make_features(n: int, n_clusters: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(dim, n_clusters)))[0].T
    centers = directions * 10.0 / np.sqrt(2)  # every pair 10 apart
    labels = rng.integers(n_clusters, size=n)
    bases = np.linalg.qr(rng.normal(size=(n_clusters, dim, 4)))[0]
    X = centers[labels] + np.einsum("ndi,ni->nd", bases[labels], rng.normal(size=(n, 4)) * 0.5)
    return X + 0.02 * rng.normal(size=X.shape)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sklearn-max", type=int, default=10**9, help="skip scikit-learn above this n")
    args = parser.parse_args()

    print("| n | DyGA wall s | DyGA CPU s | K | DyGA loglik | sklearn full wall s | sklearn CPU s | sklearn loglik |")
    print("|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for n in args.sizes:
            X = make_features(n, args.clusters, args.dim, args.seed)
            model, wall, cpu = timed(lambda: select_anchors(X, seed=args.seed))
            k = model.n_components_
            row = f"| {n:,} | {wall:.2f} | {cpu:.2f} | {k} | {model.score(X):.2f} |"
            if n <= args.sklearn_max:
                gm, s_wall, s_cpu = timed(
                    lambda: GaussianMixture(k, covariance_type="full", random_state=args.seed).fit(X))
                row += f" {s_wall:.2f} | {s_cpu:.2f} | {gm.score(X):.2f} |"
            else:
                row += " skipped | skipped | |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
