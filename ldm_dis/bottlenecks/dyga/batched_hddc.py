"""HDDC fitted by EM for many groups of points at once, in torch, on whatever device the points are on.

The model and the EM of :class:`ldm_dis.bottlenecks.dyga.hddc.HDDC` ([a_ij b_i Q_i d_i] covariances,
Cattell's scree test, an eigenvalue floor relative to the data's spread), written for G groups at once:
the latent units of one fit, or the clusters split in one round. Each group has up to K components,
kept in the slots 0..K_g-1 and marked by ``active``; each point has a weight (0 or 1): 0 leaves it out
of its group (padding, or points a filter dropped).

Precision: the per-point work (distances, projections, scatter sums) runs in the points' dtype (float32
on a GPU, where this file pays off); the per-component work (eigendecomposition, scree test,
log-determinants) runs in float64. In float64 the fit equals ``HDDC``'s step for step (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional, Tuple

import torch

# the same floor as HDDC: rows with a smaller responsibility are left out of a component's scatter
_RESP_FLOOR = 1e-12
_EPS = float(torch.finfo(torch.float64).eps)


def chunk_rows(groups: int, width: int, device: torch.device) -> int:
    """Rows per block so that a (groups, width, rows) temporary stays near 4 MB on a CPU (cache-sized
    blocks run fastest there) and 512 MB on a GPU (few, large kernels)."""
    budget = 2**27 if device.type == "cuda" else 2**20
    return max(1, budget // max(1, groups * width))


@dataclass
class Mixtures:
    """G mixtures of up to K components in D dimensions (float64; ``active`` marks the components).

    means (G, K, D); eigenvectors (G, K, D, D), columns sorted by decreasing eigenvalue; eigenvalues
    (G, K, D), the floored scatter spectrum; variances (G, K, D), the model's spectrum a_1..a_d, b..b;
    dims (G, K) the intrinsic dimensions d; weights (G, K), 0 where inactive; active (G, K) bool.
    """

    means: torch.Tensor
    eigenvectors: torch.Tensor
    eigenvalues: torch.Tensor
    variances: torch.Tensor
    dims: torch.Tensor
    weights: torch.Tensor
    active: torch.Tensor

    def take(self, index: torch.Tensor) -> "Mixtures":
        """The mixtures of groups ``index`` (a copy)."""
        return Mixtures(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def put(self, index: torch.Tensor, other: "Mixtures") -> None:
        """Overwrite groups ``index`` with ``other`` (same K)."""
        for f in fields(self):
            getattr(self, f.name)[index] = getattr(other, f.name)

    def widened(self, k: int) -> "Mixtures":
        """The same mixtures with room for ``k`` >= K components (new slots inactive)."""
        g, old, d = self.means.shape
        if k == old:
            return self
        out = empty_mixtures(g, k, d, self.means.device)
        for f in fields(self):
            getattr(out, f.name)[:, :old] = getattr(self, f.name)
        return out


def empty_mixtures(groups: int, k: int, dim: int, device) -> Mixtures:
    """Inactive components: weight 0, mean 0, unit variances, identity eigenvectors (a finite density)."""
    f64 = dict(dtype=torch.float64, device=device)
    return Mixtures(
        means=torch.zeros(groups, k, dim, **f64),
        eigenvectors=torch.eye(dim, **f64).expand(groups, k, dim, dim).clone(),
        eigenvalues=torch.ones(groups, k, dim, **f64),
        variances=torch.ones(groups, k, dim, **f64),
        dims=torch.zeros(groups, k, dtype=torch.long, device=device),
        weights=torch.zeros(groups, k, **f64),
        active=torch.zeros(groups, k, dtype=torch.bool, device=device),
    )


def scree_dimensions(eigenvalues: torch.Tensor, threshold: float) -> torch.Tensor:
    """Cattell's scree test on spectra (..., D) sorted in decreasing order: the last index j whose gap
    exceeds ``threshold`` x the largest gap; 0 when D == 1 or all eigenvalues are equal. Returns (...)."""
    dim = eigenvalues.shape[-1]
    if dim == 1:
        return torch.zeros(eigenvalues.shape[:-1], dtype=torch.long, device=eigenvalues.device)
    gaps = eigenvalues[..., :-1] - eigenvalues[..., 1:]  # (..., D - 1), non-negative
    largest = gaps.amax(-1, keepdim=True)
    index = torch.arange(1, dim, device=eigenvalues.device)
    d = torch.where(gaps >= threshold * largest, index, 0).amax(-1)
    return torch.where(largest[..., 0] > 0, d, 0)


def spread_floor(X: torch.Tensor, weight: Optional[torch.Tensor], reg_covar: float) -> torch.Tensor:
    """HDDC's eigenvalue floor per group (G,): ``reg_covar`` x the mean per-coordinate variance of the
    group's (weighted) points; ``reg_covar`` itself for constant data."""
    w = torch.ones(X.shape[:2], dtype=X.dtype, device=X.device) if weight is None else weight
    total = w.sum(1, dtype=torch.float64).clamp_min(1e-300)
    mean = torch.einsum("gn,gnd->gd", w, X).double() / total[:, None]
    var = torch.zeros_like(total)
    step = chunk_rows(X.shape[0], X.shape[2], X.device)
    for lo in range(0, X.shape[1], step):
        diff = X[:, lo:lo + step].double() - mean[:, None]
        var += torch.einsum("gn,gnd->g", w[:, lo:lo + step].double(), diff * diff)
    spread = var / total / X.shape[2]
    return reg_covar * torch.where(spread > 0, spread, torch.ones_like(spread))


def m_step(X: torch.Tensor, resp: torch.Tensor, active: torch.Tensor, weight: Optional[torch.Tensor],
           floor: torch.Tensor, dim_threshold: float) -> Mixtures:
    """Weights, means and structured covariances from responsibilities.

    X (G, n, D); resp (G, n, K), 0 at inactive components; active (G, K); weight (G, n) or None;
    floor (G,) eigenvalue floors. Inactive components get zero weight (their other fields are finite).
    """
    g, n, dim = X.shape
    k = resp.shape[2]
    r = resp if weight is None else resp * weight[..., None]
    counts = r.sum(1, dtype=torch.float64) + 10 * _EPS  # HDDC's eps keeps empty components finite
    counts = torch.where(active, counts, torch.zeros_like(counts))
    weights = counts / counts.sum(1, keepdim=True)
    safe = torch.where(active, counts, torch.ones_like(counts))
    means = torch.einsum("gnk,gnd->gkd", r, X).double() / safe[..., None]
    mu = means.to(X.dtype)
    # weighted scatter around each component's own mean, block by block of rows: sqrt-free form
    # y_w^T y with y = x - mu_k and y_w = r * y (exact centering, no cancellation in float32)
    scatter = torch.zeros(g, k, dim, dim, dtype=torch.float64, device=X.device)
    step = chunk_rows(g, k * dim, X.device)
    for lo in range(0, n, step):
        rc = r[:, lo:lo + step]
        rc = torch.where(rc > _RESP_FLOOR, rc, torch.zeros_like(rc))
        y = X[:, None, lo:lo + step] - mu[:, :, None]  # (G, K, c, D)
        yw = y * rc.transpose(1, 2)[..., None]
        scatter += (yw.transpose(-1, -2) @ y).double()
    scatter = scatter / safe[..., None, None]
    scatter = 0.5 * (scatter + scatter.transpose(-1, -2))
    evals, evecs = torch.linalg.eigh(scatter)  # ascending
    evals = evals.flip(-1).clamp_min(floor[:, None, None])
    evecs = evecs.flip(-1)
    dims = scree_dimensions(evals, dim_threshold)
    trailing = torch.arange(dim, device=X.device) >= dims[..., None]  # (G, K, D)
    noise = (evals * trailing).sum(-1) / trailing.sum(-1)  # b: mean of the trailing eigenvalues
    variances = torch.where(trailing, noise[..., None], evals)
    return Mixtures(means, evecs, evals, variances, dims, weights, active.clone())


def _log_prob_blocks(X: torch.Tensor, mix: Mixtures):
    """Yields (lo, hi, weighted log-densities (G, hi - lo, K)) block by block of rows of X (G, n, D)."""
    g, n, dim = X.shape
    k = mix.means.shape[1]
    basis = mix.eigenvectors * mix.variances.rsqrt()[..., None, :]  # (G, K, D, D): columns q_j / sqrt(v_j)
    offset = torch.einsum("gkd,gkde->gke", mix.means, basis).to(X.dtype)  # A_k mu_k
    flat = basis.permute(0, 2, 1, 3).reshape(g, dim, k * dim).to(X.dtype)  # x @ flat = every A_k x
    log_w = torch.where(mix.active, mix.weights.clamp_min(1e-300).log(), torch.full_like(mix.weights, -math.inf))
    const = (log_w - 0.5 * (dim * math.log(2 * math.pi) + mix.variances.log().sum(-1))).to(X.dtype)
    step = chunk_rows(g, k * dim, X.device)
    for lo in range(0, n, step):
        proj = (X[:, lo:lo + step] @ flat).view(g, -1, k, dim).sub_(offset[:, None])
        yield lo, lo + proj.shape[1], const[:, None] - 0.5 * proj.square_().sum(-1)


def weighted_log_prob(X: torch.Tensor, mix: Mixtures) -> torch.Tensor:
    """log pi_k + log N(x | mu_k, Sigma_k) for X (G, n, D); returns (G, n, K) in X's dtype, -inf at
    inactive components.

    Written in each component's full eigenbasis, whitened: ||A_k x - A_k mu_k||^2 with
    A_k = diag(var_k)^-1/2 Q_k^T, one product of the points with all K bases at once. The trailing
    coordinates share b, so this is exactly HDDC's O(d D) formula, and in float32 it keeps the precision
    that the expanded ||x - mu||^2 / b would lose for tight clusters far from the origin.
    """
    out = torch.empty(*X.shape[:2], mix.means.shape[1], dtype=X.dtype, device=X.device)
    for lo, hi, block in _log_prob_blocks(X, mix):
        out[:, lo:hi] = block
    return out


def e_step(X: torch.Tensor, mix: Mixtures) -> Tuple[torch.Tensor, torch.Tensor]:
    """log p(x) (G, n) and responsibilities (G, n, K), 0 at inactive components."""
    log_norm = torch.empty(X.shape[:2], dtype=X.dtype, device=X.device)
    resp = torch.empty(*X.shape[:2], mix.means.shape[1], dtype=X.dtype, device=X.device)
    for lo, hi, block in _log_prob_blocks(X, mix):  # normalized block by block, while in cache
        top = block.amax(-1, keepdim=True)
        e = (block - top).exp_()
        total = e.sum(-1, keepdim=True)
        resp[:, lo:hi] = e.div_(total)
        log_norm[:, lo:hi] = (total.log_() + top)[..., 0]
    return log_norm, resp


def mean_log_likelihood(log_norm: torch.Tensor, weight: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean log p(x) per point of each group (G,), float64; weighted when ``weight`` is given."""
    if weight is None:
        return log_norm.sum(1, dtype=torch.float64) / log_norm.shape[1]
    w = weight.double()
    return (log_norm.double() * w).sum(1) / w.sum(1).clamp_min(1e-300)


def kmeans_plusplus_resp(X: torch.Tensor, weight: Optional[torch.Tensor], k: int,
                         generator: torch.Generator) -> torch.Tensor:
    """Hard responsibilities (G, n, k) of the nearest of k seeds drawn by greedy k-means++ (scikit-learn's
    variant: 2 + log k candidates per seed, the one that lowers the potential most is kept).

    X (G, n, D); weight (G, n) marks the points each group may draw (None: all).
    """
    g, n, _ = X.shape
    w = torch.ones(g, n, dtype=X.dtype, device=X.device) if weight is None else weight.to(X.dtype)
    sq = (X * X).sum(-1)  # (G, n)

    def dist2(seeds):  # (G, T, D) -> squared distances (G, T, n), by expansion (seeding needs no more)
        return (sq[:, None] - 2 * seeds @ X.transpose(1, 2) + (seeds * seeds).sum(-1)[..., None]).clamp_min(0)

    def draw(p, count):  # p (G, n) >= 0; rows without mass draw among their points
        p = torch.where(p.sum(1, keepdim=True) > 0, p, w)
        return torch.multinomial(p, count, replacement=True, generator=generator)

    rows = torch.arange(g, device=X.device)[:, None]
    first = draw(w, 1)  # (G, 1)
    seeds = [X[rows, first]]  # (G, 1, D)
    closest = dist2(seeds[0])[:, 0]
    trials = 2 + int(math.log(k))
    for _ in range(1, k):
        candidates = draw(w * closest, trials)  # (G, T)
        d2 = torch.minimum(closest[:, None], dist2(X[rows, candidates]))  # (G, T, n)
        best = (d2 * w[:, None]).sum(-1).argmin(1)  # (G,)
        closest = d2[rows[:, 0], best]
        seeds.append(X[rows, candidates[rows[:, 0], best][:, None]])
    nearest = dist2(torch.cat(seeds, 1)).argmin(1)  # (G, n)
    return torch.nn.functional.one_hot(nearest, k).to(X.dtype)


@dataclass
class EMResult:
    mixtures: Mixtures
    resp: torch.Tensor  # (G, n, K): responsibilities under ``mixtures`` (no extra E-step needed)
    lower_bound: torch.Tensor  # (G,) mean log-likelihood per point of the last iteration
    n_iter: torch.Tensor  # (G,)
    converged: torch.Tensor  # (G,) bool


def fit_em(X: torch.Tensor, resp: torch.Tensor, active: torch.Tensor, *, weight: Optional[torch.Tensor] = None,
           max_iter: int = 100, tol: float = 1e-3, dim_threshold: float = 0.2,
           reg_covar: float = 1e-6) -> EMResult:
    """EM from initial responsibilities, as ``HDDC(init_resp=resp).fit(X)`` for every group.

    X (G, n, D); resp (G, n, K); active (G, K); weight (G, n) or None. Each group stops on its own when
    its mean log-likelihood improves by less than ``tol``; the others go on (up to ``max_iter``).
    """
    g = X.shape[0]
    floor = spread_floor(X, weight, reg_covar)
    resp = resp.clone()
    running = torch.ones(g, dtype=torch.bool, device=X.device)
    lower = torch.full((g,), -math.inf, dtype=torch.float64, device=X.device)
    n_iter = torch.zeros(g, dtype=torch.long, device=X.device)
    mix = None
    for it in range(1, max(max_iter, 1) + 1):
        idx = running.nonzero()[:, 0]
        every = len(idx) == g

        def sub(t):
            return t if (t is None or every) else t[idx]

        m = m_step(sub(X), sub(resp), sub(active), sub(weight), sub(floor), dim_threshold)
        log_norm, r = e_step(sub(X), m)
        bound = mean_log_likelihood(log_norm, sub(weight))
        if mix is None:
            mix = m
        else:
            mix.put(idx, m)
        resp[idx] = r
        done = (bound - lower[idx]).abs() < tol
        lower[idx] = bound
        n_iter[idx] = it
        running[idx[done]] = False
        if not bool(running.any()):
            break
    return EMResult(mix, resp, lower, n_iter, ~running)
