"""DyGA as a bottleneck: per-unit anchors (fitted every r epochs) and feature alignment on the tokens.

The trainer's side (the LDM task):

    bn = DyGABottleneck.from_config(cfg.model.bottleneck.dyga, num_units=N, unit_dim=D)
    out = bn(tokens)                      # (B, N, D) -> BottleneckOutput(aligned tokens); identity until fitted
    if bn.should_fit(epoch):              # epoch: 0-based index of the epoch that just ended
        rows = bn.fit_rows(len(dataset), epoch)   # at most max_samples images, or None for all
        feats = ...                       # (n, N, D) tokens of those images, model in eval mode,
                                          # gathered from all processes
        if rank == 0:
            log = bn.fit(feats)           # {"dyga/K_unit00": ..., "dyga/fit_seconds": ...}
            bn.save_fit(run_dir / "dyga" / f"fit_epoch{epoch}")     # .npz + .json
        for buf in bn.buffers():          # every piece of state is a fixed-shape buffer
            torch.distributed.broadcast(buf, src=0)

All state lives in buffers padded to k_max (so it is in every safetensors checkpoint and resume
continues with the same anchors). Absent components have weight 0, mean 0, unit variances and identity
eigenvectors, so the density stays finite and the weight alone removes them.

Eval mode aligns with the most responsible anchor instead of a Gumbel draw: the U-Net was trained on
aligned conditions, so pictures and metrics keep that input distribution, and they stay deterministic.

``alignment="released"`` reproduces the released code instead (:func:`released_alignment`; fits
normalized by the set's min/max): its normalization and lambda are batch statistics, so a sample's
units depend on the other samples of its batch, in evaluation too.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from dataclasses import fields
from typing import Dict, List, Optional

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ldm_dis.bottlenecks.base import Bottleneck, BottleneckOutput
from ldm_dis.bottlenecks.dyga.alignment import align_features, released_alignment
from ldm_dis.bottlenecks.dyga.anchor_selection import fit_unit
from ldm_dis.bottlenecks.dyga.batched_fit import fit_units
from ldm_dis.bottlenecks.dyga.hddc import HDDC
from ldm_dis.config.schema import DyGAConfig
from ldm_dis.errors import UserInputError

FITTERS = ("torch", "numpy")


def _fit_unit_in_worker(args):
    """One unit, with one BLAS thread: the products are small (n x D x d), so threads mostly spin;
    parallelism comes from fitting units in ``num_workers`` processes instead."""
    features, options, seed = args
    with threadpool_limits(1):
        return fit_unit(features, options, seed)


def _worker_context():
    """Processes that never inherit CUDA or OpenMP state (forking the trainer is unsafe).

    A forkserver imports the fitting code once and forks each later worker from that clean process, so
    only the first fit pays the imports; where there is none (Windows), spawn.
    """
    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(["ldm_dis.bottlenecks.dyga.bottleneck"])
    return ctx


class DyGABottleneck(Bottleneck):
    """Dynamic Gaussian Anchoring on N tokens of D values (paper Sec. 3.2).

    Buffers (N units, K = k_max, D): center (N, D), scale (N,): feature normalization of the last
    fitted set; means (N, K, D), variances (N, K, D) (structured spectrum a_1..a_d, b..b), eigenvectors
    (N, K, D, D), intrinsic_dims (N, K), weights (N, K): each unit's HDDC in normalized units;
    num_fits (): how many fits have run (0 = not fitted, no alignment).
    """

    acts_on = "tokens"

    def __init__(self, num_units: int, unit_dim: int, *, k_init: int = 8, k_max: int = 32, phi: float = 0.5,
                 psi: float = 0.5, random_split_prob: float = 0.05, max_split_rounds: int = 10,
                 min_count: float = 10.0, em_iters: int = 100, tol: float = 1e-3, dim_threshold: float = 0.2,
                 reg_covar: float = 1e-6, search_samples: int = 20_000, refit_iters: Optional[int] = 2,
                 fitter: str = "torch", tau: float = 1e-4, lam: float = 0.1, alignment: Optional[str] = None,
                 fit_every_epochs: int = 1, max_samples: int = 100_000, num_workers: int = 2, seed: int = 0):
        """N units of D values. The anchor-selection options (``k_init`` .. ``refit_iters``) are those of
        :func:`ldm_dis.bottlenecks.dyga.anchor_selection.select_anchors`; ``tau`` and ``lam`` are the
        alignment's Gumbel temperature and largest pull; ``alignment`` is "paper" (None) or "released";
        fits run every ``fit_every_epochs`` epochs on at most ``max_samples`` rows drawn by ``seed``
        (see ``model.bottleneck.dyga`` for each)."""
        super().__init__()
        alignment = alignment or "paper"  # null = the paper's (see ldm_dis.config.protocol)
        if alignment not in ("paper", "released"):
            raise ValueError(f"model.bottleneck.dyga.alignment={alignment!r}: expected 'paper' or 'released'")
        if fitter not in FITTERS:
            raise UserInputError(f"model.bottleneck.dyga.fitter={fitter!r}: expected one of {FITTERS}")
        self.num_units, self.unit_dim, self.k_max = num_units, unit_dim, int(k_max)
        self.fit_options = dict(
            k_init=k_init, k_max=k_max, phi=phi, psi=psi, random_split_prob=random_split_prob,
            max_split_rounds=max_split_rounds, min_count=min_count, em_iters=em_iters, tol=tol,
            dim_threshold=dim_threshold, reg_covar=reg_covar, search_samples=search_samples,
            normalization="minmax" if alignment == "released" else "median", refit_iters=refit_iters,
        )
        self.fitter, self.num_workers, self.seed = fitter, int(num_workers), int(seed)
        self.tau, self.lam, self.alignment = float(tau), float(lam), alignment
        self.fit_every_epochs, self.max_samples = int(fit_every_epochs), int(max_samples)
        n, k, d = num_units, k_max, unit_dim
        self.register_buffer("center", torch.zeros(n, d))
        self.register_buffer("scale", torch.ones(n))
        self.register_buffer("means", torch.zeros(n, k, d))
        self.register_buffer("variances", torch.ones(n, k, d))
        self.register_buffer("eigenvectors", torch.eye(d).expand(n, k, d, d).clone())
        self.register_buffer("intrinsic_dims", torch.zeros(n, k, dtype=torch.long))
        self.register_buffer("weights", torch.zeros(n, k))
        self.register_buffer("num_fits", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg, num_units: int, unit_dim: int) -> "DyGABottleneck":
        """``cfg`` is ``model.bottleneck.dyga`` (every key is an argument of the constructor)."""
        return cls(num_units, unit_dim, **{f.name: getattr(cfg, f.name) for f in fields(DyGAConfig)})

    # ------------------------------------------------------------------------------------ schedule
    @property
    def is_fitted(self) -> bool:
        return bool(self.num_fits.item() > 0)

    def should_fit(self, epoch: int) -> bool:
        """True after every ``fit_every_epochs`` epochs. ``epoch`` is the 0-based index of the epoch that
        just ended (the trainer's ``on_epoch_end`` argument): with r = 5, fits follow epochs 4, 9, ..."""
        return (epoch + 1) % self.fit_every_epochs == 0

    def fit_rows(self, num_rows: int, epoch: int) -> Optional[np.ndarray]:
        """Which of ``num_rows`` training images the fit after ``epoch`` uses: at most ``max_samples``,
        drawn with ``seed + epoch`` (sorted), or None for all. Drawn before the features are computed,
        so only the chosen images are encoded; :meth:`fit` uses every row it is given."""
        if num_rows <= self.max_samples:
            return None
        return np.sort(np.random.default_rng(self.seed + epoch).choice(num_rows, self.max_samples, replace=False))

    @property
    def num_anchors(self) -> torch.Tensor:
        """K per unit (N,)."""
        return (self.weights > 0).sum(1)

    # ------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, step: int = 0) -> BottleneckOutput:
        """x: tokens (B, N, D) -> aligned tokens (B, N, D); unchanged before the first fit. ``step`` is unused:
        DyGA's Gumbel temperature ``tau`` is fixed."""
        if not self.is_fitted:
            return BottleneckOutput(x)
        # float32 whatever the autocast: Mahalanobis distances lose too much in half precision
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.alignment == "released":
                aligned, _ = released_alignment(x.float(), self.means, self.variances, self.eigenvectors,
                                                self.weights, lam=self.lam)
            else:
                aligned = align_features(
                    x.float(), self.center, self.scale, self.means, self.variances, self.eigenvectors,
                    self.weights, tau=self.tau, lam=self.lam, stochastic=self.training,
                )
        return BottleneckOutput(aligned.to(x.dtype))

    # ---------------------------------------------------------------------------------------- fit
    def fit(self, features) -> Dict[str, float]:
        """Select anchors for every unit from features (n, N, D) collected in eval mode (array or tensor),
        every row of them (:meth:`fit_rows` chooses the training images they come from).

        ``fitter: torch`` fits every unit at once on this module's device; ``numpy`` fits units in
        ``num_workers`` processes. Fills the buffers and returns numbers to log (K per unit, seconds).
        """
        if tuple(features.shape[1:]) != (self.num_units, self.unit_dim) or len(features.shape) != 3:
            raise ValueError(f"features must be (n, {self.num_units}, {self.unit_dim}), got {tuple(features.shape)}")
        start = time.perf_counter()
        fit_index = int(self.num_fits.item())
        seeds = np.random.SeedSequence([self.seed, fit_index])
        # the first state once seeded a second subsample; still drawn, so fits keep their seeds
        _, *unit_seeds, torch_seed = seeds.generate_state(self.num_units + 2)
        if self.fitter == "torch":
            counts = self._fit_torch(features, int(torch_seed))
        else:
            counts = self._fit_numpy(np.asarray(features), unit_seeds)
        self.num_fits += 1

        log = {f"dyga/K_unit{i:02d}": float(k) for i, k in enumerate(counts)}
        log["dyga/K_mean"] = float(np.mean(counts))
        log["dyga/fit_seconds"] = time.perf_counter() - start
        log["dyga/fit_index"] = float(fit_index + 1)
        return log

    def _fit_numpy(self, features: np.ndarray, unit_seeds) -> List[int]:
        workers = max(1, min(self.num_workers, self.num_units))
        jobs = [(np.ascontiguousarray(features[:, i]), self.fit_options, int(unit_seeds[i]))
                for i in range(self.num_units)]
        if workers == 1:
            results = [_fit_unit_in_worker(job) for job in jobs]
        else:
            with ProcessPoolExecutor(workers, mp_context=_worker_context()) as pool:
                results = list(pool.map(_fit_unit_in_worker, jobs))
        self._store(results)
        return [m.n_components_ for _, _, m in results]

    @torch.no_grad()
    def _fit_torch(self, features, seed: int) -> List[int]:
        device = self.means.device
        feats = torch.as_tensor(features).to(device=device, dtype=torch.float32)
        with torch.autocast(device_type=device.type, enabled=False):
            fit = fit_units(feats, seed=seed, **self.fit_options)
        m = fit.mixtures
        for buf, value in ((self.center, fit.center), (self.scale, fit.scale), (self.means, m.means),
                           (self.variances, m.variances), (self.eigenvectors, m.eigenvectors),
                           (self.intrinsic_dims, m.dims), (self.weights, m.weights)):
            buf.copy_(value.to(buf.dtype))
        return fit.num_anchors.tolist()

    @torch.no_grad()
    def _store(self, results: List) -> None:
        """Buffers from the numpy fitter's per-unit results (center, scale, HDDC)."""
        n, k_max, d = self.means.shape
        means = np.zeros((n, k_max, d))
        variances = np.ones((n, k_max, d))
        eigenvectors = np.broadcast_to(np.eye(d), (n, k_max, d, d)).copy()
        dims = np.zeros((n, k_max), dtype=np.int64)
        weights = np.zeros((n, k_max))
        for i, (_, _, m) in enumerate(results):
            k = m.n_components_
            means[i, :k] = m.means_
            variances[i, :k] = m.variances_
            eigenvectors[i, :k] = m.eigenvectors_
            dims[i, :k] = m.intrinsic_dims_
            weights[i, :k] = m.weights_
        centers = np.stack([c for c, _, _ in results])
        scales = np.array([s for _, s, _ in results])
        for buf, value in ((self.center, centers), (self.scale, scales), (self.means, means),
                           (self.variances, variances), (self.eigenvectors, eigenvectors),
                           (self.intrinsic_dims, dims), (self.weights, weights)):
            buf.copy_(torch.as_tensor(value, dtype=buf.dtype))

    # ---------------------------------------------------------------------------------- inspection
    def unit_mixture(self, unit: int) -> HDDC:
        """Unit ``unit``'s mixture as an HDDC in feature units (rebuilt from the buffers)."""
        if not self.is_fitted:
            raise RuntimeError("DyGA has not been fitted yet")
        keep = (self.weights[unit] > 0).cpu().numpy()
        z = HDDC(int(keep.sum()), dim_threshold=self.fit_options["dim_threshold"])
        as_np = lambda t: t[unit].detach().cpu().double().numpy()[keep]  # noqa: E731
        z.means_, z.variances_, z.eigenvectors_ = as_np(self.means), as_np(self.variances), as_np(self.eigenvectors)
        z.weights_ = as_np(self.weights)
        z.intrinsic_dims_ = self.intrinsic_dims[unit].cpu().numpy()[keep]
        z.noise_variances_ = z.variances_[:, -1].copy()
        z.eigenvalues_ = z.variances_.copy()  # the scatter spectrum is not kept; the model's is
        z.n_features_in_ = self.unit_dim
        scale = float(self.scale[unit])
        return z.transformed(scale, self.center[unit].detach().cpu().double().numpy())

    def save_fit(self, path) -> None:
        """Write the current anchors to ``path``.npz (arrays) and ``path``.json (summary), feature units.

        npz: means (N, K, D), variances (N, K, D), eigenvectors (N, K, D, D), covariances (N, K, D, D),
        intrinsic_dims (N, K), weights (N, K) (0 marks padding), num_anchors (N,), center (N, D),
        scale (N,), fit_index ().
        """
        path = Path(path)
        if path.suffix in (".npz", ".json"):
            path = path.with_suffix("")
        path.parent.mkdir(parents=True, exist_ok=True)
        s2 = (self.scale**2)[:, None, None]
        means = self.center[:, None, :] + self.scale[:, None, None] * self.means
        variances = self.variances * s2
        q = self.eigenvectors
        covariances = torch.einsum("nkij,nkj,nklj->nkil", q, variances, q)
        arrays = {
            "means": means, "variances": variances, "eigenvectors": q, "covariances": covariances,
            "intrinsic_dims": self.intrinsic_dims, "weights": self.weights,
            "num_anchors": self.num_anchors, "center": self.center, "scale": self.scale,
            "fit_index": self.num_fits,
        }
        np.savez(path.with_suffix(".npz"), **{k: v.detach().cpu().numpy() for k, v in arrays.items()})
        counts = self.num_anchors.tolist()
        summary = {
            "fit_index": int(self.num_fits.item()),
            "num_units": self.num_units,
            "unit_dim": self.unit_dim,
            "k_max": self.k_max,
            "num_anchors": counts,
            "units": [
                {
                    "unit": i,
                    "K": counts[i],
                    "weights": [round(float(w), 6) for w in self.weights[i, : counts[i]]],
                    "intrinsic_dims": self.intrinsic_dims[i, : counts[i]].tolist(),
                }
                for i in range(self.num_units)
            ],
        }
        path.with_suffix(".json").write_text(json.dumps(summary, indent=1))

    def extra_repr(self) -> str:
        return f"num_units={self.num_units}, unit_dim={self.unit_dim}, k_max={self.k_max}"
