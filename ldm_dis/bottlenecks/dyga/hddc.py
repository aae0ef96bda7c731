"""High-dimensional data clustering (HDDC): a Gaussian mixture with subspace-structured covariances.

Bouveyron, Girard and Schmid (2007), model [a_ij b_i Q_i d_i]. Component i has the covariance

    Sigma_i = Q_i diag(a_i1, ..., a_id_i, b_i, ..., b_i) Q_i^T

where Q_i (D, D) holds the eigenvectors of the component's weighted scatter matrix, the d_i leading
eigenvalues a_ij are kept as they are and the D - d_i trailing ones are tied to their mean b_i. The
intrinsic dimension d_i is chosen by Cattell's scree test. The log-density then needs only the d_i
leading eigenvectors:

    ||x - mu||^2_{Sigma^-1} = ||x - mu||^2 / b + sum_{j <= d} (1/a_j - 1/b) (q_j^T (x - mu))^2

so the E-step costs O(d_i * D) per point and component instead of O(D^2).

An estimator in the scikit-learn style: numpy in, numpy out, no torch. Regularization is relative to
the data's scale, so fitting ``X`` and ``s * X + c`` gives exactly transformed parameters.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Optional

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.cluster import kmeans_plusplus
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6: the same check as a method
    def validate_data(estimator, X, **kwargs):
        return estimator._validate_data(X, **kwargs)

# Rows with a smaller responsibility are left out of a component's scatter: together they weigh at
# most 1e-12 * n against its count N_k >= min_count (1e-7 for 1M points and N_k = 10), and skipping
# them makes the M-step cost about n * D^2 in total instead of K * n * D^2 for separated clusters.
_RESP_FLOOR = 1e-12
_CHUNK = 8192  # rows per E-step block: keeps the (rows, sum d_k) temporary near 64 MB at most


def scree_dimension(eigenvalues: np.ndarray, threshold: float) -> int:
    """Cattell's scree test: the last index j whose eigenvalue gap exceeds ``threshold`` x the largest gap.

    eigenvalues: (D,) sorted in decreasing order. Returns d in [0, D - 1] (0 only when D == 1 or all
    eigenvalues are equal), so at least one eigenvalue is left to estimate the noise variance b.
    """
    gaps = -np.diff(eigenvalues)  # (D - 1,), non-negative
    if gaps.size == 0 or gaps.max() <= 0:
        return 0
    above = np.flatnonzero(gaps >= threshold * gaps.max())
    return int(above[-1] + 1)


class HDDC(DensityMixin, BaseEstimator):
    """Gaussian mixture with [a_ij b_i Q_i d_i] covariances, fitted by EM.

    Parameters (checked by ``fit``; a bad one raises an error naming it)
    ----------
    n_components: K, the number of Gaussians, >= 1.
    max_iter: EM iterations at most, >= 1.
    tol: stop when the mean log-likelihood per point improves by less than this (>= 0).
    dim_threshold: Cattell scree-test threshold in [0, 1] (HDclassif's default 0.2).
    reg_covar: eigenvalue floor (>= 0), relative to the data's mean per-coordinate variance.
    random_state: seed (or RandomState) of the k-means++ initialization.
    init_resp: initial responsibilities (n, K) of the points ``fit`` is given, replacing k-means++: EM
        starts with an M-step on them (used to continue after a split or a filter). None: k-means++.

    Learned attributes (K components, D features)
    ---------------------------------------------
    means_ (K, D); weights_ (K,) summing to 1;
    eigenvectors_ (K, D, D): columns q_ij sorted by decreasing eigenvalue;
    eigenvalues_ (K, D): the scatter matrix's spectrum (for the scree plot);
    variances_ (K, D): the model's spectrum, a_i1..a_id_i then b_i repeated;
    noise_variances_ (K,): b_i; intrinsic_dims_ (K,): d_i;
    reg_floor_: the eigenvalue floor in the data's units (reg_covar x their mean variance);
    n_iter_, converged_, lower_bound_ (mean log-likelihood per point of the last iteration).
    Every method but ``fit`` raises ``NotFittedError`` before the first fit.
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "dim_threshold": [Interval(Real, 0, 1, closed="both")],
        "reg_covar": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "init_resp": ["array-like", None],
    }

    def __init__(
        self,
        n_components: int = 8,
        max_iter: int = 100,
        tol: float = 1e-3,
        dim_threshold: float = 0.2,
        reg_covar: float = 1e-6,
        random_state=None,
        init_resp: Optional[np.ndarray] = None,
    ):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.dim_threshold = dim_threshold
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.init_resp = init_resp

    # ------------------------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y=None) -> "HDDC":
        """Fit on X (n, D), from ``init_resp`` when it is set, else from k-means++ seeds."""
        self.fit_predict_proba(X)
        return self

    def fit_predict_proba(self, X: np.ndarray, y=None) -> np.ndarray:
        """``fit``, then the responsibilities (n, K) of X under the fitted mixture (no extra E-step)."""
        self._validate_params()
        X = validate_data(self, X, dtype=np.float64, order="C")  # 2-D, finite, dense; sets n_features_in_
        n, dim = X.shape
        # Relative floor: the scale of X decides what "a tiny eigenvalue" is (equivariance); constant
        # data (a collapsed unit early in training) get an absolute floor instead.
        spread = float(X.var(axis=0).mean())
        self.reg_floor_ = self.reg_covar * (spread if spread > 0 else 1.0)
        if self.init_resp is None:
            resp = self._initial_resp(X)
        else:
            resp = np.asarray(self.init_resp, dtype=np.float64)
            if resp.shape != (n, self.n_components):
                raise ValueError(f"init_resp has shape {resp.shape}; fit was given {n} points and "
                                 f"n_components={self.n_components}, so ({n}, {self.n_components}) was expected")

        self.converged_ = False
        lower_bound = -np.inf
        for it in range(1, self.max_iter + 1):
            self._m_step(X, resp)
            log_norm, resp = self._e_step(X)
            previous, lower_bound = lower_bound, float(log_norm.mean())
            if abs(lower_bound - previous) < self.tol:
                self.converged_ = True
                break
        self.n_iter_ = it
        self.lower_bound_ = lower_bound
        return resp

    def _initial_resp(self, X: np.ndarray) -> np.ndarray:
        """Hard responsibilities of the nearest k-means++ seed, (n, K)."""
        n = X.shape[0]
        k = self.n_components
        if n < k:
            raise ValueError(f"HDDC needs at least n_components={k} points, got {n}")
        seeds, _ = kmeans_plusplus(X, k, random_state=check_random_state(self.random_state))
        # squared distances via the expansion: one (n, D) x (D, K) product
        d2 = (X * X).sum(1)[:, None] - 2.0 * X @ seeds.T + (seeds * seeds).sum(1)[None, :]
        resp = np.zeros((n, k))
        resp[np.arange(n), d2.argmin(1)] = 1.0
        return resp

    def _m_step(self, X: np.ndarray, resp: np.ndarray) -> None:
        """Weights, means and the structured covariances from responsibilities (n, K)."""
        n, dim = X.shape
        k = resp.shape[1]
        counts = resp.sum(0) + 10 * np.finfo(float).eps  # (K,); eps keeps empty components finite
        self.weights_ = counts / counts.sum()
        self.means_ = (resp.T @ X) / counts[:, None]
        self.eigenvalues_ = np.empty((k, dim))
        self.eigenvectors_ = np.empty((k, dim, dim))
        self.variances_ = np.empty((k, dim))
        self.noise_variances_ = np.empty(k)
        self.intrinsic_dims_ = np.empty(k, dtype=np.int64)
        for c, r in enumerate(resp.T.copy()):  # contiguous columns
            rows = np.flatnonzero(r > _RESP_FLOOR)
            # sqrt-weighted centered rows: y^T y is the weighted scatter (a symmetric rank-k update)
            y = (X[rows] - self.means_[c]) * np.sqrt(r[rows])[:, None]
            scatter = (y.T @ y) / counts[c]
            evals, evecs = np.linalg.eigh(scatter)  # ascending
            evals = np.maximum(evals[::-1], self.reg_floor_)
            self.eigenvalues_[c] = evals
            self.eigenvectors_[c] = evecs[:, ::-1]
            d = scree_dimension(evals, self.dim_threshold)
            b = evals[d:].mean()
            self.intrinsic_dims_[c] = d
            self.noise_variances_[c] = b
            self.variances_[c, :d] = evals[:d]
            self.variances_[c, d:] = b

    def _e_step(self, X: np.ndarray):
        """Returns log p(x) (n,) and responsibilities (n, K)."""
        weighted = self._weighted_log_prob(X)
        top = weighted.max(1, keepdims=True)
        resp = np.exp(weighted - top)
        total = resp.sum(1, keepdims=True)
        resp /= total
        return np.log(total[:, 0]) + top[:, 0], resp

    # --------------------------------------------------------------------------------- inference
    def _checked(self, X) -> np.ndarray:
        """X (n, D) as float64 after the fitted check: the public methods' inputs."""
        check_is_fitted(self, "means_")
        return validate_data(self, X, dtype=np.float64, reset=False)

    def weighted_log_prob(self, X: np.ndarray) -> np.ndarray:
        """log pi_k + log N(x | mu_k, Sigma_k) for X (n, D); returns (n, K)."""
        return self._weighted_log_prob(self._checked(X))

    def _weighted_log_prob(self, X: np.ndarray) -> np.ndarray:
        n, dim = X.shape
        k = self.means_.shape[0]
        dims = self.intrinsic_dims_
        # ||x - mu||^2_{Sigma^-1} = ||x - mu||^2 / b - sum_{j <= d} (1/b - 1/a_j) (q_j^T (x - mu))^2.
        # Leading eigenvectors scaled by sqrt(1/b - 1/a_j) (a_j >= b), with the mean's
        # projection as an extra row, so that one product of [x, 1] gives every component's
        # weighted, centered projections: (n, D + 1) x (D + 1, sum d_k), the O(d * D) part.
        blocks = []
        for c in range(k):
            basis = self.eigenvectors_[c, :, : dims[c]]
            gain = 1.0 / self.noise_variances_[c] - 1.0 / self.variances_[c, : dims[c]]
            w = basis * np.sqrt(np.maximum(gain, 0.0))  # clip rounding below 0 when a_j == b
            blocks.append(np.vstack([w, -(self.means_[c] @ w)[None, :]]))
        weights = np.concatenate(blocks, axis=1)  # (D + 1, sum d_k)
        has_subspace = dims > 0
        starts = np.concatenate([[0], np.cumsum(dims)[:-1]])[has_subspace]
        mu_sq = (self.means_ * self.means_).sum(1)
        log_det = np.log(self.variances_).sum(1)  # (K,)
        const = np.log(self.weights_) - 0.5 * (dim * np.log(2 * np.pi) + log_det)
        out = np.empty((n, k))
        for lo in range(0, n, _CHUNK):  # row chunks bound the (rows, sum d_k) temporary
            x = X[lo : lo + _CHUNK]
            # ||x - mu||^2 by expansion, clipped at 0 against rounding
            dist2 = (x * x).sum(1)[:, None] - 2.0 * (x @ self.means_.T) + mu_sq[None, :]
            maha = np.maximum(dist2, 0.0) / self.noise_variances_[None, :]
            if has_subspace.any():
                proj = x @ weights[:-1] + weights[-1]
                # sum of squares per component: column segments of lengths d_k (> 0 here)
                maha[:, has_subspace] -= np.add.reduceat(proj * proj, starts, axis=1)
            out[lo : lo + _CHUNK] = const - 0.5 * np.maximum(maha, 0.0)
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Responsibilities (n, K)."""
        return self._e_step(self._checked(X))[1]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most responsible component (n,)."""
        return self.weighted_log_prob(X).argmax(1)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """log p(x) under the mixture (n,)."""
        return self._e_step(self._checked(X))[0]

    def score(self, X: np.ndarray, y=None) -> float:
        """Mean log-likelihood per point."""
        return float(self.score_samples(X).mean())

    def transformed(self, scale: float, shift: np.ndarray) -> "HDDC":
        """The same mixture for the data ``scale * X + shift`` (a copy; eigenvectors are unchanged).

        Exact because the model is equivariant under isotropic affine maps (the regularization is
        relative); used to move a mixture between raw and normalized feature units."""
        check_is_fitted(self, "means_")
        out = HDDC(**{**self.get_params(), "n_components": self.n_components_, "init_resp": None})
        out.__dict__.update({k: v for k, v in self.__dict__.items() if k.endswith("_")})
        out.means_ = scale * self.means_ + np.asarray(shift, dtype=np.float64)
        for name in ("eigenvalues_", "variances_", "noise_variances_", "reg_floor_"):
            if not hasattr(self, name):  # a mixture rebuilt from stored buffers keeps no floor
                continue
            setattr(out, name, scale**2 * getattr(self, name))
        if hasattr(self, "lower_bound_"):
            out.lower_bound_ = self.lower_bound_ - self.means_.shape[1] * np.log(abs(scale))
        return out

    @property
    def n_components_(self) -> int:
        """K of the fitted mixture (``n_components``, or the columns of ``init_resp``)."""
        check_is_fitted(self, "means_")
        return int(self.means_.shape[0])

    @property
    def covariances_(self) -> np.ndarray:
        """The full structured covariances (K, D, D), for inspection and comparison."""
        check_is_fitted(self, "means_")
        q = self.eigenvectors_
        return np.einsum("kij,kj,klj->kil", q, self.variances_, q)
