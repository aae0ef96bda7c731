"""Seconds to select the anchors of DyGA's latent units: the torch fitter (all units at once) and the
numpy fitter (one unit at a time), on clusters and on one Gaussian blob.

    OMP_NUM_THREADS=1 python benchmarks/dyga_bench.py                                # CPU, one thread
    python benchmarks/dyga_bench.py --device cuda --units 20 --fitters torch         # all 20 units on a GPU
    OMP_NUM_THREADS=1 python benchmarks/dyga_bench.py --sizes 100000 --sklearn       # + scikit-learn's GMM

Data, D = 32 values per point, seeded:
  * clusters: ``--clusters`` well-separated centers (10 apart), each spread over a 4-dimensional
    subspace plus small isotropic noise (the shape of a trained unit's features);
  * blob: one standard Gaussian, the worst case: every Gaussian is dense, so the split rounds run until
    K reaches K_max and every responsibility is soft.
With ``--units N`` every unit gets its own draw of the data. The options are the bottleneck's
(``DyGAConfig`` defaults: K0 = 8, phi = psi = 0.5, K_max = 32, 20k search points, refit_iters = 2).
On the CPU both fitters run on one thread (threadpoolctl and torch.set_num_threads): the table gives
wall seconds and the CPU seconds of this process (on a shared machine the fairer number), K (mean over
units) and the mean log-likelihood per point in feature units (mean over units). scikit-learn's
full-covariance ``GaussianMixture`` gets the K that the numpy fitter ended with, as a reference.
"""

from __future__ import annotations

import argparse
import platform
import time

import ldm_dis  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP)
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ldm_dis.bottlenecks.dyga import select_anchors
from ldm_dis.bottlenecks.dyga.batched_fit import fit_units
from ldm_dis.config.schema import DyGAConfig


def make_features(n: int, n_clusters: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(dim, n_clusters)))[0].T
    centers = directions * 10.0 / np.sqrt(2)  # every pair 10 apart
    labels = rng.integers(n_clusters, size=n)
    bases = np.linalg.qr(rng.normal(size=(n_clusters, dim, 4)))[0]
    X = centers[labels] + np.einsum("ndi,ni->nd", bases[labels], rng.normal(size=(n, 4)) * 0.5)
    return X + 0.02 * rng.normal(size=X.shape)


def make_data(shape: str, n: int, units: int, args) -> np.ndarray:
    """(n, units, D) float32, as the bottleneck receives features."""
    draws = []
    for u in range(units):
        if shape == "blob":
            draws.append(np.random.default_rng(args.seed + u).normal(size=(n, args.dim)))
        else:
            draws.append(make_features(n, args.clusters, args.dim, args.seed + u))
    return np.stack(draws, axis=1).astype(np.float32)


REFIT_ITERS = DyGAConfig().refit_iters  # --refit-iters changes it for a run


def options() -> dict:
    c = DyGAConfig()
    keys = ("k_init", "k_max", "phi", "psi", "random_split_prob", "max_split_rounds", "min_count", "em_iters",
            "tol", "dim_threshold", "reg_covar", "search_samples")
    return {**{k: getattr(c, k) for k in keys}, "refit_iters": REFIT_ITERS}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_torch(feats: np.ndarray, device: torch.device, seed: int):
    x = torch.as_tensor(feats).to(device)
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fit = fit_units(x, seed=seed, **options())
    sync(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return [fit.unit_hddc(u) for u in range(feats.shape[1])], wall, cpu


def run_numpy(feats: np.ndarray, seed: int):
    wall, cpu = time.perf_counter(), time.process_time()
    models = [select_anchors(feats[:, u].astype(np.float64), seed=seed + u, **options()) for u in range(feats.shape[1])]
    return models, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--shapes", nargs="+", default=["clusters", "blob"], choices=["clusters", "blob"])
    parser.add_argument("--units", type=int, nargs="+", default=[1], help="units fitted in one call")
    parser.add_argument("--fitters", nargs="+", default=["torch", "numpy"], choices=["torch", "numpy"])
    parser.add_argument("--device", default="cpu", help="the torch fitter's device (the numpy one runs on CPU)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (BLAS and torch)")
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per row (the fastest is shown)")
    parser.add_argument("--sklearn", action="store_true", help="add scikit-learn's full GaussianMixture (1 unit)")
    parser.add_argument("--refit-iters", default=None,
                        help="EM iterations of the refits on all points ('none': em_iters, the fit before the cap)")
    args = parser.parse_args(argv)
    if args.refit_iters is not None:
        global REFIT_ITERS
        REFIT_ITERS = None if args.refit_iters.lower() == "none" else int(args.refit_iters)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}"
    print(f"torch fitter on {where}; CPU threads {args.threads}; torch {torch.__version__}; options {options()}\n")
    print("| data | n | units | fitter | device | wall s | CPU s | wall s per unit | CPU s per unit | K (mean) | loglik (mean) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(args.threads):
        if device.type == "cuda" and "torch" in args.fitters:  # CUDA context and kernels, off the clock
            run_torch(make_data("clusters", 30_000, 2, args), device, args.seed)
        for shape in args.shapes:
            for n in args.sizes:
                for units in args.units:
                    feats = make_data(shape, n, units, args)
                    for fitter in args.fitters:
                        best = None
                        for _ in range(args.repeats):
                            if fitter == "torch":
                                models, wall, cpu = run_torch(feats, device, args.seed)
                            else:
                                models, wall, cpu = run_numpy(feats, args.seed)
                            if best is None or wall < best[1]:
                                best = (models, wall, cpu)
                        models, wall, cpu = best
                        k = np.mean([m.n_components_ for m in models])
                        ll = np.mean([m.score(feats[:, u].astype(np.float64)) for u, m in enumerate(models)])
                        dev = args.device if fitter == "torch" else "cpu"
                        print(f"| {shape} | {n:,} | {units} | {fitter} | {dev} | {wall:.2f} | {cpu:.2f} | "
                              f"{wall / units:.2f} | {cpu / units:.2f} | {k:.1f} | {ll:.3f} |", flush=True)
                    if args.sklearn and units == 1:
                        from sklearn.mixture import GaussianMixture

                        X = feats[:, 0].astype(np.float64)
                        k = select_anchors(X, seed=args.seed, **options()).n_components_
                        wall, cpu = time.perf_counter(), time.process_time()
                        gm = GaussianMixture(k, covariance_type="full", random_state=args.seed).fit(X)
                        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                        print(f"| {shape} | {n:,} | 1 | sklearn full GMM | cpu | {wall:.2f} | {cpu:.2f} | {wall:.2f} | "
                              f"{cpu:.2f} | {k} | {gm.score(X):.3f} |", flush=True)


if __name__ == "__main__":
    main()
