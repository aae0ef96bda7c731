"""Anchor selection for all latent units at once, in torch, on the training device.

The algorithm of :func:`ldm_dis.bottlenecks.dyga.anchor_selection.select_anchors` in the same three steps
(:func:`initial_mixtures`, :func:`split_gaussians`, :func:`filter_gaussians`; k-means++ seeds,
HDDC EM, density and random splits, filter, refit), run for every unit in lockstep with the EM of
:mod:`ldm_dis.bottlenecks.dyga.batched_hddc`: units are groups of one batched computation, the
clusters split in a round are groups of another. Each unit still makes its own choices (its densities,
its random splits, its convergence), so units do not change each other's anchors except through the
shared random stream. What differs from the numpy fit: the random draws (one torch generator, one
subsample of rows shared by the units), and float32 for the per-point work by default.

    fit = fit_units(features, seed=0, **options)    # features (n, N, D) -> UnitFit, padded to k_max
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from ldm_dis.bottlenecks.dyga.batched_hddc import (
    Mixtures, chunk_rows, e_step, empty_mixtures, fit_em, kmeans_plusplus_resp, weighted_log_prob,
)
from ldm_dis.bottlenecks.dyga.hddc import HDDC

# Batches of the split rounds' 2-component fits: padded rows (clusters x largest member count) at
# most, and on a CPU, where padding costs time, at most 1.25 x the real rows (or a small minimum)
_SPLIT_ROWS = {"cuda": (2**23, float("inf")), "cpu": (2**18, 1.25)}
_SPLIT_MIN_ROWS = 2**12


@dataclass
class UnitFit:
    """Anchors of N units in normalized units (features -> (features - center) / scale).

    center (N, D), scale (N,) float64; mixtures: N mixtures padded to k_max, fitted components first;
    logs: per unit, the split log of ``select_anchors`` (splits per round, K before the filter,
    components filtered, points left out)."""

    center: torch.Tensor
    scale: torch.Tensor
    mixtures: Mixtures
    logs: List[dict]

    @property
    def num_anchors(self) -> torch.Tensor:
        return self.mixtures.active.sum(1)

    def unit_hddc(self, unit: int) -> HDDC:
        """Unit ``unit``'s mixture as a fitted :class:`HDDC` in feature units (for inspection and tests)."""
        m = self.mixtures
        k = int(m.active[unit].sum())
        z = HDDC(k)
        z.means_, z.eigenvectors_ = m.means[unit, :k].cpu().numpy(), m.eigenvectors[unit, :k].cpu().numpy()
        z.eigenvalues_, z.variances_ = m.eigenvalues[unit, :k].cpu().numpy(), m.variances[unit, :k].cpu().numpy()
        z.intrinsic_dims_, z.weights_ = m.dims[unit, :k].cpu().numpy(), m.weights[unit, :k].cpu().numpy()
        z.noise_variances_ = z.variances_[:, -1].copy()
        z.n_features_in_ = z.means_.shape[1]
        z.split_log_ = self.logs[unit]
        return z.transformed(float(self.scale[unit]), self.center[unit].cpu().numpy())


def _median(x: torch.Tensor, dim: int) -> torch.Tensor:
    """numpy's median (the mean of the two middle values for an even count), float64."""
    if x.device.type == "cpu":  # numpy's partition is several times faster than torch's kthvalue there
        return torch.as_tensor(np.median(x.numpy(), axis=dim), dtype=torch.float64)
    return _median_kth(x, dim)


def _median_kth(x: torch.Tensor, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    upper = x.kthvalue(n // 2 + 1, dim).values.double()
    if n % 2:
        return upper
    return 0.5 * (upper + x.kthvalue(n // 2, dim).values.double())


def normalize(features: torch.Tensor, dtype: torch.dtype, method: str = "median"):
    """Per-unit center (coordinate-wise median) and scale (median distance to it), as
    ``feature_normalization``, and the normalized features. features (N, n, D) -> Z (N, n, D) in ``dtype``,
    center (N, D), scale (N,). ``method="minmax"``: the released code's, as ``feature_normalization``."""
    if method == "minmax":
        flat = features.reshape(features.shape[0], -1).double()
        hi, lo = flat.max(1).values, flat.min(1).values
        center = hi[:, None].expand(-1, features.shape[2]).contiguous()
        scale = hi - lo + 1e-6
        return ((features.double() - center[:, None]) / scale[:, None, None]).to(dtype), center, scale
    if method != "median":
        raise ValueError(f"normalization={method!r}: expected 'median' or 'minmax'")
    center = _median(features, 1)
    z = torch.empty(features.shape, dtype=dtype, device=features.device)
    scale = torch.ones(features.shape[0], dtype=torch.float64, device=features.device)
    for u in range(features.shape[0]):  # one unit at a time: a float64 copy of one unit only
        diff = features[u].double() - center[u]
        s = float(_median(diff.norm(dim=1), 0))
        scale[u] = s if s > 0 else 1.0
        z[u] = (diff / scale[u]).to(dtype)
    return z, center, scale


def cluster_densities(X: torch.Tensor, resp: torch.Tensor, phi: float) -> torch.Tensor:
    """Mean distance of each cluster's members (resp > phi) to their centroid, (G, K) float64; 0 for a
    cluster of fewer than 2 members. X (G, n, D), resp (G, n, K)."""
    g, n, dim = X.shape
    members = (resp > phi).to(X.dtype)
    count = members.sum(1, dtype=torch.float64)
    centroid = (torch.einsum("gnk,gnd->gkd", members, X).double() / count.clamp_min(1)[..., None]).to(X.dtype)
    total = torch.zeros_like(count)
    step = chunk_rows(g, resp.shape[2] * dim, X.device)
    for lo in range(0, n, step):
        dist = (X[:, lo:lo + step, None] - centroid[:, None]).norm(dim=-1)  # (G, c, K)
        total += (dist * members[:, lo:lo + step]).sum(1, dtype=torch.float64)
    return torch.where(count >= 2, total / count.clamp_min(1), torch.zeros_like(total))


def _children(S, members, units, comps, counts, generator, em_kw) -> Mixtures:
    """2-component fits on the members of clusters (units[p], comps[p]), P pairs, batched by size so
    that padding stays bounded. Returns P mixtures of 2 components."""
    order = counts.argsort()
    out = empty_mixtures(len(units), 2, S.shape[2], S.device)
    most, slack = _SPLIT_ROWS["cuda" if S.device.type == "cuda" else "cpu"]
    sizes = counts[order].tolist()
    start = 0
    while start < len(sizes):
        stop, real = start + 1, sizes[start]
        while stop < len(sizes):
            padded = (stop + 1 - start) * sizes[stop]
            if padded > most or padded > max(slack * (real + sizes[stop]), _SPLIT_MIN_ROWS):
                break
            real += sizes[stop]
            stop += 1
        batch = order[start:stop]
        width = sizes[stop - 1]
        mask = members[units[batch], :, comps[batch]]  # (B, n_s) bool
        # member indices first (stable), padded to the largest member count of the batch
        rows = (~mask).to(torch.int8).argsort(dim=1, stable=True)[:, :width]
        weight = (torch.arange(width, device=S.device) < counts[batch, None]).to(S.dtype)
        points = S[units[batch, None], rows]  # (B, width, D)
        resp = kmeans_plusplus_resp(points, weight, 2, generator)
        fitted = fit_em(points, resp, torch.ones(len(batch), 2, dtype=torch.bool, device=S.device),
                        weight=weight, **em_kw)
        out.put(batch, fitted.mixtures)
        start = stop
    return out


def _child_posteriors(S, children: Mixtures, units, slot, n_units) -> torch.Tensor:
    """Posterior (P, n_s, 2) of each pair's two children over its unit's search points, evaluated in the
    units' layout: unit u's j-th split holds components 2j, 2j + 1."""
    width = int(slot.max()) + 1
    layout = empty_mixtures(n_units, 2 * width, S.shape[2], S.device)
    for j in (0, 1):
        cols = 2 * slot + j
        for name in ("means", "eigenvectors", "eigenvalues", "variances", "dims", "weights", "active"):
            getattr(layout, name)[units, cols] = getattr(children, name)[:, j]
    logp = weighted_log_prob(S, layout).view(n_units, S.shape[1], width, 2)
    return torch.softmax(logp[units, :, slot], dim=-1)  # (P, n_s, 2)


@torch.no_grad()
def fit_units(
    features: torch.Tensor,
    *,
    k_init: int = 8,
    k_max: int = 32,
    phi: float = 0.5,
    psi: float = 0.5,
    random_split_prob: float = 0.05,
    max_split_rounds: int = 10,
    min_count: float = 10.0,
    em_iters: int = 100,
    tol: float = 1e-3,
    dim_threshold: float = 0.2,
    reg_covar: float = 1e-6,
    search_samples: int = 20_000,
    refit_iters: Optional[int] = None,
    normalization: str = "median",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    unit_batch: Optional[int] = None,
) -> UnitFit:
    """Anchors of every unit. features (n, N, D) on the device to fit on; options as ``select_anchors``.

    ``refit_iters``: EM iterations at most of each refit on all points after a search on a subsample
    (None: ``em_iters``), as in ``select_anchors``. ``unit_batch``: units fitted in one lockstep
    computation (None: all of them on a GPU, one at a time on a CPU, where batching gains nothing and
    the working set would outgrow the caches).
    """
    if not 1 <= k_init <= k_max:
        raise ValueError(f"need 1 <= k_init <= k_max, got k_init={k_init}, k_max={k_max}")
    if features.ndim != 3:
        raise ValueError(f"features must be (n, N, D), got shape {tuple(features.shape)}")
    options = dict(k_init=k_init, k_max=k_max, phi=phi, psi=psi, random_split_prob=random_split_prob,
                   max_split_rounds=max_split_rounds, min_count=min_count, em_iters=em_iters, tol=tol,
                   dim_threshold=dim_threshold, reg_covar=reg_covar, search_samples=search_samples,
                   refit_iters=refit_iters, normalization=normalization)
    device = features.device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    n_units = features.shape[1]
    step = unit_batch or (n_units if device.type == "cuda" else 1)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32 on a GPU: scatter sums need float32's mantissa
    try:
        parts = [_fit_batch(features[:, lo:lo + step], generator, dtype, **options) for lo in range(0, n_units, step)]
    finally:
        torch.set_float32_matmul_precision(precision)
    if len(parts) == 1:
        return parts[0]
    mixtures = empty_mixtures(n_units, k_max, features.shape[2], device)
    for lo, part in zip(range(0, n_units, step), parts):
        mixtures.put(slice(lo, lo + step), part.mixtures)
    return UnitFit(torch.cat([p.center for p in parts]), torch.cat([p.scale for p in parts]), mixtures,
                   [log for p in parts for log in p.logs])


def _fit_batch(features, generator, dtype, *, k_init, k_max, phi, psi, random_split_prob, max_split_rounds,
               min_count, em_iters, tol, dim_threshold, reg_covar, search_samples, refit_iters,
               normalization="median") -> UnitFit:
    """``fit_units`` for the units of ``features`` (n, N', D) in lockstep: the three steps of
    ``select_anchors``, with the same refit on every point between the split rounds and the filter."""
    device = features.device
    em = dict(tol=tol, dim_threshold=dim_threshold, reg_covar=reg_covar)
    Z, center, scale = normalize(features.transpose(0, 1), dtype, normalization)  # (N', n, D)
    n_units, n, dim = Z.shape
    subsampled = n > search_samples
    # the refits on all points polish a mixture found on the subsample: a few iterations do
    full_iters = em_iters if (refit_iters is None or not subsampled) else refit_iters

    S, mix, resp = initial_mixtures(Z, k_init, search_samples, generator, em, em_iters)
    mix, resp, splits = split_gaussians(S, mix, resp, generator, em, k_max=k_max, phi=phi, psi=psi,
                                        random_split_prob=random_split_prob, max_split_rounds=max_split_rounds,
                                        em_iters=em_iters)
    refit_needed = torch.tensor([any(s) for s in splits], device=device)  # split rounds ran single updates
    if subsampled:  # the mixtures found on the subsample, refitted on every point
        _, start = e_step(Z, mix)
        fit = fit_em(Z, start, mix.active, max_iter=full_iters, **em)
        mix, resp = fit.mixtures, fit.resp
        refit_needed[:] = False
    k_before = mix.active.sum(1)
    mix, weight = filter_gaussians(Z, mix, resp, refit_needed, em, min_count=min_count, max_iter=full_iters)

    final = _cleared(mix).widened(k_max)
    k = mix.active.sum(1).tolist()
    left_out = (n - weight.sum(1)).round().long().tolist()
    logs = [{"splits_per_round": splits[u], "k_before_filter": int(k_before[u]), "filtered": int(k_before[u]) - k[u],
             "points_left_out": left_out[u]} for u in range(n_units)]
    return UnitFit(center, scale, final, logs)


def initial_mixtures(Z: torch.Tensor, k_init: int, search_samples: int, generator: torch.Generator, em: dict,
                     em_iters: int):
    """Step 1 for every unit: K0 k-means++ seeds and EM on one seeded subsample of at most
    ``search_samples`` rows shared by the units. Z (N, n, D) -> (S (N, m, D), mixtures, resp (N, m, K0))."""
    S = Z
    n = Z.shape[1]
    if n > search_samples:  # one seeded subsample of rows for every unit
        rows = torch.randperm(n, generator=generator, device=Z.device)[:search_samples].sort().values
        S = Z[:, rows]
    k0 = min(k_init, S.shape[1])
    active = torch.ones(Z.shape[0], k0, dtype=torch.bool, device=Z.device)
    fit = fit_em(S, kmeans_plusplus_resp(S, None, k0, generator), active, max_iter=em_iters, **em)
    return S, fit.mixtures, fit.resp


def split_gaussians(S: torch.Tensor, mix: Mixtures, resp: torch.Tensor, generator: torch.Generator, em: dict, *,
                    k_max: int, phi: float, psi: float, random_split_prob: float, max_split_rounds: int,
                    em_iters: int):
    """Step 2, all units in lockstep; a unit leaves when it reaches ``k_max`` or splits nothing.
    S (N, m, D), resp (N, m, K) -> (mixtures, resp (N, m, K'), splits per round of each unit)."""
    device = S.device
    n_units = S.shape[0]
    splits: List[List[int]] = [[] for _ in range(n_units)]
    searching = torch.ones(n_units, dtype=torch.bool, device=device)
    for _ in range(max_split_rounds):
        k_now = mix.active.sum(1)
        searching &= k_now < k_max
        if not bool(searching.any()):
            break
        width = resp.shape[2]
        density = cluster_densities(S, resp, phi)
        draw = torch.rand(n_units, width, generator=generator, device=device, dtype=torch.float64)
        chosen = ((density > psi) | (draw < random_split_prob)) & mix.active & searching[:, None]
        members = resp > phi  # (N, n_s, K)
        count = members.sum(1)
        eligible = chosen & (count >= 4)  # too few points to fit two Gaussians otherwise
        # densest first, so the cap k_max spends its room on the clusters that need it most
        order = torch.where(eligible, density, torch.full_like(density, -1.0)).argsort(dim=1, descending=True, stable=True)
        ranked = eligible.gather(1, order)
        position = ranked.cumsum(1) - 1
        take = ranked & (position < (k_max - k_now)[:, None])
        split = torch.zeros_like(eligible).scatter(1, order, take)
        slot_of = torch.zeros_like(order).scatter(1, order, position)
        n_split = split.sum(1)
        for u in searching.nonzero()[:, 0].tolist():
            splits[u].append(int(n_split[u]))
        searching &= n_split > 0
        if not bool(searching.any()):
            break
        units, comps = split.nonzero(as_tuple=True)
        slot = slot_of[units, comps]
        children = _children(S, members, units, comps, count[units, comps], generator,
                              dict(max_iter=em_iters, **em))
        post = _child_posteriors(S, children, units, slot, n_units)  # (P, n_s, 2)
        new_width = int((k_now + n_split).max())
        if new_width > width:
            resp = torch.cat([resp, resp.new_zeros(n_units, resp.shape[1], new_width - width)], 2)
            mix = mix.widened(new_width)
        parent = resp[units, :, comps]  # (P, n_s)
        new_cols = k_now[units] + slot
        resp[units, :, comps] = parent * post[..., 0]
        resp[units, :, new_cols] = parent * post[..., 1]
        new_active = mix.active.clone()
        new_active[units, new_cols] = True
        # one EM update of the units that split: parameters from the inherited responsibilities,
        # fresh responsibilities for the next round's densities
        idx = searching.nonzero()[:, 0]
        step = fit_em(S[idx], resp[idx], new_active[idx], max_iter=1, **em)
        mix.put(idx, step.mixtures)
        resp[idx] = step.resp
    return mix, resp, splits


def filter_gaussians(Z: torch.Tensor, mix: Mixtures, resp: torch.Tensor, refit_needed: torch.Tensor, em: dict, *,
                     min_count: float, max_iter: int):
    """Step 3: drop each unit's Gaussians below ``min_count`` and refit, while a unit's refit leaves one
    below the minimum (``refit_needed`` (N,) bool: refit once anyway). Z (N, n, D), resp (N, n, K) ->
    (mixtures, weight (N, n): 1 for the points of each unit's final refit, 0 for those left out)."""
    weight = torch.ones(Z.shape[:2], dtype=Z.dtype, device=Z.device)  # 0: left out of the refits
    refit_needed = refit_needed.clone()
    while True:
        counts = torch.einsum("unk,un->uk", resp, weight).double()
        keep = (counts >= min_count) & mix.active
        largest = torch.where(mix.active, counts, torch.full_like(counts, -1.0)).amax(1, keepdim=True)
        keep = torch.where(keep.any(1, keepdim=True), keep, mix.active & (counts == largest))
        todo = (keep != mix.active).any(1) | refit_needed
        if not bool(todo.any()):
            return mix, weight
        idx = todo.nonzero()[:, 0]
        kept = keep[idx]
        # points mostly explained by dropped Gaussians leave the refit (they would drag a kept one)
        weight[idx] *= ((resp[idx] * kept[:, None]).sum(-1) >= 0.5).to(weight.dtype)
        # the posterior restricted to the kept Gaussians: the last responsibilities, renormalized
        # (HDDC's softmax of the kept log-densities; every point still in has >= 0.5 of mass there)
        start = resp[idx] * kept[:, None]
        start = start / start.sum(-1, keepdim=True).clamp_min(1e-30)
        order = (~kept).to(torch.int8).argsort(dim=1, stable=True)  # kept components to the front, in order
        start = start.gather(2, order[:, None].expand_as(start))
        packed = kept.gather(1, order)
        fit = fit_em(Z[idx], start, packed, weight=weight[idx], max_iter=max_iter, **em)
        mix.put(idx, fit.mixtures)
        resp[idx] = fit.resp
        refit_needed[idx] = False


def _cleared(mix: Mixtures) -> Mixtures:
    """Inactive slots reset to the neutral component of :func:`empty_mixtures`."""
    neutral = empty_mixtures(*mix.means.shape[:2], mix.means.shape[2], mix.means.device)
    out = empty_mixtures(*mix.means.shape[:2], mix.means.shape[2], mix.means.device)
    for name in ("means", "eigenvectors", "eigenvalues", "variances", "dims", "weights"):
        value, blank = getattr(mix, name), getattr(neutral, name)
        mask = mix.active.reshape(*mix.active.shape, *([1] * (value.ndim - 2)))
        setattr(out, name, torch.where(mask, value, blank))
    out.active = mix.active.clone()
    return out
