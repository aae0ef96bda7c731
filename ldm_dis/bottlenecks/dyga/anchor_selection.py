"""Anchor selection for one latent unit (paper Sec. 3.2.1, Algorithm 2), in three steps.

1. :func:`initial_mixture`: k-means++ seeds K0 Gaussians; HDDC fits them with EM (on a subsample of
   at most ``search_samples`` points; steps 1-2 search, EM on every point then refits what they found).
2. :func:`split_gaussians`: a Gaussian's *cluster* is the points whose responsibility exceeds ``phi``;
   its *density* is the mean L2 distance of the members to their centroid, in normalized feature
   units. A Gaussian whose density exceeds ``psi`` is split, and any Gaussian is split with probability
   ``random_split_prob`` (the paper's "arbitrary" split, to leave poor stationary points). A split fits
   a 2-component HDDC on the cluster's members; the children inherit the parent's responsibilities,
   shared by the child posterior, and one EM update refreshes the mixture. Rounds repeat until no
   Gaussian qualifies, K reaches ``k_max`` or ``max_split_rounds`` rounds have run.
3. :func:`filter_gaussians`: Gaussians whose soft count is below ``min_count`` are dropped; EM refits
   the rest (again if the refit leaves a Gaussian below the minimum) on the points they explain, so
   that the few members of a dropped Gaussian do not drag a kept one toward them.

The anchors are the means of the final mixture. :func:`select_anchors` runs the three steps in order;
all random choices come from its ``seed``.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import numpy as np

from ldm_dis.bottlenecks.dyga.hddc import HDDC


NORMALIZATIONS = ("median", "minmax")


def feature_normalization(features: np.ndarray, method: str = "median") -> Tuple[np.ndarray, float]:
    """Per-unit statistics of the fitted set: center (D,), the coordinate-wise median, and scale, the
    median distance to it.

    One scalar scale keeps the geometry (distances, subspaces) and makes densities comparable across
    units and training time: half the set lies within radius 1, so ``psi = 0.5`` means "a cluster
    spread over more than half the unit's typical radius". Medians, so a few far outliers cannot
    shrink every density below ``psi`` (an RMS or min-max scale would). A degenerate set gets scale 1.

    ``method="minmax"``: the released code's, center = the largest value of the set (over points and
    coordinates) in every coordinate, scale = largest - smallest + 1e-6, so the set lies in [-1, 0].
    """
    features = np.asarray(features, dtype=np.float64)
    if method == "minmax":
        hi, lo = float(features.max()), float(features.min())
        return np.full(features.shape[1], hi), hi - lo + 1e-6
    if method != "median":
        raise ValueError(f"normalization={method!r}: expected one of {list(NORMALIZATIONS)}")
    center = np.median(features, axis=0)
    scale = float(np.median(np.linalg.norm(features - center, axis=1)))
    return center, (scale if scale > 0 else 1.0)


def cluster_densities(X: np.ndarray, resp: np.ndarray, phi: float) -> np.ndarray:
    """Density of each Gaussian's cluster (K,): mean distance of members (resp > phi) to their centroid.

    X (n, D) in normalized units, resp (n, K). A cluster with fewer than 2 members has density 0.
    """
    out = np.zeros(resp.shape[1])
    for k in range(resp.shape[1]):
        members = X[resp[:, k] > phi]
        if len(members) >= 2:
            out[k] = np.linalg.norm(members - members.mean(0), axis=1).mean()
    return out


def _softmax_rows(log_p: np.ndarray) -> np.ndarray:
    log_p = log_p - log_p.max(1, keepdims=True)
    p = np.exp(log_p)
    return p / p.sum(1, keepdims=True)


HDDCFactory = Callable[..., HDDC]  # hddc(k, max_iter=em_iters, init_resp=None) -> an unfitted HDDC seeded by the rng


def select_anchors(
    features: np.ndarray,
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
    normalization: str = "median",
    refit_iters: Optional[int] = None,
    seed: int = 0,
) -> HDDC:
    """Fit the anchors of one unit. features: (n, D). Returns the fitted HDDC in the features' units.

    The fit runs on features normalized by :func:`feature_normalization` (``normalization``; so ``psi``
    has a fixed meaning); the returned mixture is mapped back exactly (HDDC is affine-equivariant).
    The initial fit and the split rounds run on a seeded subsample of ``search_samples`` points (a
    density is a mean distance: 20k points estimate it well), then EM refits the found mixture on
    every point, and the filter counts every point. This keeps 100k points per unit in seconds.
    ``refit_iters`` caps the EM iterations of those refits on every point (None: ``em_iters``): they
    polish a mixture that already converged on the subsample (on one Gaussian blob split into K_max
    pieces, EM creeps on for tens of iterations there, gaining a few hundredths of a nat per point).
    Extra attributes on the result: ``split_log_`` (a dict: splits per round, K before filtering,
    components filtered).
    """
    if not 1 <= k_init <= k_max:
        raise ValueError(f"need 1 <= k_init <= k_max, got k_init={k_init}, k_max={k_max}")
    features = np.asarray(features, dtype=np.float64)
    center, scale = feature_normalization(features, normalization)
    Z = (features - center) / scale
    rng = np.random.default_rng(seed)  # every random choice below, in a fixed order

    def hddc(k: int, max_iter: int = em_iters, init_resp: Optional[np.ndarray] = None) -> HDDC:
        return HDDC(k, max_iter, tol, dim_threshold, reg_covar, random_state=int(rng.integers(2**31)),
                    init_resp=init_resp)

    subsampled = len(Z) > search_samples
    full_iters = em_iters if (refit_iters is None or not subsampled) else refit_iters
    search, model, resp = initial_mixture(Z, k_init, search_samples, rng, hddc)
    model, resp, splits_per_round = split_gaussians(search, model, resp, rng, hddc, k_max=k_max, phi=phi, psi=psi,
                                                    random_split_prob=random_split_prob,
                                                    max_split_rounds=max_split_rounds)
    refit_needed = any(splits_per_round)  # the split rounds ran single EM updates only
    if subsampled:  # the mixture found on the subsample, refitted on every point
        start = model.predict_proba(Z)
        model = hddc(start.shape[1], max_iter=full_iters, init_resp=start)
        resp = model.fit_predict_proba(Z)
        refit_needed = False
    k_before_filter = resp.shape[1]
    model, rows = filter_gaussians(Z, model, resp, hddc, min_count=min_count, max_iter=full_iters,
                                   refit_needed=refit_needed)

    result = model.transformed(scale, center)
    result.split_log_ = {
        "splits_per_round": splits_per_round,
        "k_before_filter": k_before_filter,
        "filtered": k_before_filter - result.n_components_,
        "points_left_out": len(Z) - len(rows),
    }
    return result


def initial_mixture(Z: np.ndarray, k_init: int, search_samples: int, rng: np.random.Generator,
                    hddc: HDDCFactory) -> Tuple[np.ndarray, HDDC, np.ndarray]:
    """Step 1: K0 k-means++ seeds and EM on at most ``search_samples`` points of Z (n, D) (fewer seeds
    than K0 when there are fewer points). Returns (the search points (m, D), the mixture, its
    responsibilities (m, K0))."""
    search = Z
    if len(Z) > search_samples:
        search = Z[np.sort(rng.choice(len(Z), search_samples, replace=False))]
    model = hddc(min(k_init, len(search)))
    return search, model, model.fit_predict_proba(search)


def split_gaussians(X: np.ndarray, model: HDDC, resp: np.ndarray, rng: np.random.Generator, hddc: HDDCFactory, *,
                    k_max: int, phi: float, psi: float, random_split_prob: float,
                    max_split_rounds: int) -> Tuple[HDDC, np.ndarray, List[int]]:
    """Step 2: rounds that split every Gaussian whose cluster density exceeds ``psi`` (and any with
    probability ``random_split_prob``), densest first, until none qualifies, K reaches ``k_max`` or
    ``max_split_rounds`` have run. X (n, D), resp (n, K). Returns (mixture, resp (n, K'), splits per round)."""
    splits_per_round = []
    for _ in range(max_split_rounds):
        k_now = resp.shape[1]
        if k_now >= k_max:
            break
        density = cluster_densities(X, resp, phi)
        chosen = (density > psi) | (rng.random(k_now) < random_split_prob)
        # densest first, so the cap k_max spends its room on the clusters that need it most
        candidates = [k for k in np.argsort(-density) if chosen[k]]
        new_cols, n_split = [], 0
        for k in candidates:
            if k_now + n_split >= k_max:
                break
            members = resp[:, k] > phi
            if members.sum() < 4:  # too few points to fit two Gaussians
                continue
            child = hddc(2).fit(X[members]).predict_proba(X)  # (n, 2) posterior of the children
            parent = resp[:, k].copy()
            resp[:, k] = parent * child[:, 0]
            new_cols.append(parent * child[:, 1])
            n_split += 1
        splits_per_round.append(n_split)
        if n_split == 0:
            break
        resp = np.column_stack([resp] + new_cols)
        # one EM update of the whole mixture: parameters from the inherited responsibilities, then
        # fresh responsibilities for the next round's densities
        model = hddc(resp.shape[1], max_iter=1, init_resp=resp)
        resp = model.fit_predict_proba(X)
    return model, resp, splits_per_round


def filter_gaussians(Z: np.ndarray, model: HDDC, resp: np.ndarray, hddc: HDDCFactory, *, min_count: float,
                     max_iter: int, refit_needed: bool) -> Tuple[HDDC, np.ndarray]:
    """Step 3: drop Gaussians whose soft count is below ``min_count`` and refit the rest with EM (at most
    ``max_iter`` iterations), again while a refit leaves one below the minimum; ``refit_needed`` refits
    once even when none is dropped. Z (n, D), resp (n, K). Returns (mixture, the rows of Z it was fitted on)."""
    rows = np.arange(len(Z))  # the points the mixture is fitted on
    while True:
        counts = resp.sum(0)
        keep = counts >= min_count
        if not keep.any():
            keep = counts == counts.max()  # never drop everything: keep the largest
        if keep.all() and not refit_needed:
            return model, rows
        # Points mostly explained by dropped Gaussians leave the refit: EM would hand them to a kept
        # Gaussian and drag its mean and covariance toward a few outliers.
        explained = resp[:, keep].sum(1) >= 0.5
        rows = rows[explained]
        resp = _softmax_rows(model.weighted_log_prob(Z[rows])[:, keep])
        model = hddc(int(keep.sum()), max_iter=max_iter, init_resp=resp)
        resp = model.fit_predict_proba(Z[rows])
        refit_needed = False  # K strictly decreases on every further pass, so this loop ends


def fit_unit(features: np.ndarray, options: dict, seed: int):
    """Anchors of one unit in normalized units, as the bottleneck stores them.

    features (n, D). Returns (center (D,), scale, mixture) where the mixture (an HDDC) describes
    ``(features - center) / scale``. A top-level function so that worker processes can run it.
    """
    center, scale = feature_normalization(features, options.get("normalization", "median"))
    model = select_anchors(features, seed=seed, **options)
    return center, scale, model.transformed(1.0 / scale, -center / scale)
