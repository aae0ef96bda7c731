"""Precomputed codes with their factor values, usable wherever a dataset + representation_fn is.

Built from an ``.npz`` export (``codes`` (n, d) or (n, N, D), ``factors`` (n, F) int, optional
``factor_names``), or from a dataset and its representation (:meth:`CodeTable.from_source`). Sampling
metrics draw factor values and look up the rows that have them:
- a full row-major export (every combination present) is sampled exactly like the dataset, with the
  same random draws: a metric run on the table of a model and one run on the model itself read the
  same codes; FactorVAE's fixed-factor batches are built as from the dataset;
- a partial export (a random sample of images) is sampled by rows: ``sample_factors`` draws
  existing rows uniformly, and a FactorVAE batch draws its rows among those that share the fixed
  factor's value.
Vector units stay vectors, so each metric reduces its own sample as it would from the dataset
(``unit_pca="sample"``); :meth:`CodeTable.reduced` fits the per-unit PCA once on the whole table
instead (``unit_pca="all"``, the released code's evaluation). When several rows share one
combination, the first is used.

What each metric does with a table: DCI, MIG, SAP, modularity/explicitness, InfoMEC, TAD and
downstream draw their points as above and read the rows' codes (a full table reproduces the
protocol; a partial one samples its rows with replacement); FactorVAE builds its fixed-factor batches
as above; FID needs images and a generator and is skipped.
"""

from __future__ import annotations

import copy
from typing import Optional, Sequence

import numpy as np

from ldm_dis.errors import UserInputError
from ldm_dis.metrics.sampling import encode_factors, hold_first_row_value
from ldm_dis.metrics.units import scalar_codes


class CodeTable:
    """Codes (n, d) or (n, N, D) indexed by factor values (n, F); factor values are relabeled to 0..k-1.

    ``protocol``: evaluation choices stored with an exported file (``unit_pca``, ``infomec_active``), {} if none.
    """

    def __init__(self, codes: np.ndarray, factors: np.ndarray, factor_names: Optional[Sequence[str]] = None):
        codes, factors = np.asarray(codes), np.asarray(factors)
        if codes.ndim not in (2, 3) or factors.ndim != 2 or len(codes) != len(factors):
            raise UserInputError(
                f"codes must be (n, d) or (n, N, D) and factors (n, F) with the same n; "
                f"got codes {codes.shape} and factors {factors.shape}"
            )
        self.codes = codes
        self.protocol: dict = {}
        self.factor_values = [np.unique(factors[:, j]) for j in range(factors.shape[1])]
        self.factors = np.stack(
            [np.searchsorted(vals, factors[:, j]) for j, vals in enumerate(self.factor_values)], axis=1
        ).astype(np.int64)
        self.factor_sizes = [len(v) for v in self.factor_values]
        names = list(factor_names) if factor_names is not None else [f"factor_{j}" for j in range(factors.shape[1])]
        if len(names) != factors.shape[1]:
            raise UserInputError(f"{len(names)} factor_names for {factors.shape[1]} factor columns")
        self.factor_names = [str(n) for n in names]
        keys = np.ravel_multi_index(self.factors.T, self.factor_sizes)
        self._keys, self._rows = np.unique(keys, return_index=True)  # sorted keys, first row of each
        self.complete = len(self._keys) == int(np.prod(self.factor_sizes))

    def __len__(self) -> int:
        return len(self.codes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, F) int64 factor values: uniform on the grid when complete (the very draws of
        ``GroundTruthDataset.sample_factors``), else of uniform rows."""
        if self.complete:
            return rng.integers(0, self.factor_sizes, size=(int(n), len(self.factor_sizes)), dtype=np.int64)
        return self.factors[rng.integers(len(self.factors), size=n)]

    def reduced(self) -> "CodeTable":
        """The table with vector units reduced to scalars (n, N) by one per-unit PCA fitted on every row."""
        if self.codes.ndim == 2:
            return self
        out = copy.copy(self)
        (out.codes,) = scalar_codes(self.codes)
        return out

    def codes_from_factors(self, factors: np.ndarray) -> np.ndarray:
        """factors (n, F) -> codes (n, d) of the rows with exactly these values."""
        keys = np.ravel_multi_index(np.asarray(factors, dtype=np.int64).T, self.factor_sizes)
        pos = np.clip(np.searchsorted(self._keys, keys), 0, len(self._keys) - 1)
        missing = self._keys[pos] != keys
        if missing.any():
            raise ValueError(f"{int(missing.sum())} requested factor combinations are not in the codes table")
        return self.codes[self._rows[pos]]

    def sample_fixed_factor_batches(self, fixed: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Factor values (V, batch_size, F) of batches that share the value of factor ``fixed[v]``."""
        if self.complete:  # every combination exists: exactly the dataset's protocol
            factors = self.sample_factors(len(fixed) * batch_size, rng).reshape(len(fixed), batch_size, -1)
            return hold_first_row_value(factors, fixed)
        out = np.empty((len(fixed), batch_size, self.factors.shape[1]), dtype=np.int64)
        anchors = rng.integers(len(self.factors), size=len(fixed))
        for v, (k, anchor) in enumerate(zip(fixed, anchors)):
            # rows sharing the anchor's value of factor k; cached per (k, value) would trade memory for little
            same = np.flatnonzero(self.factors[:, k] == self.factors[anchor, k])
            out[v] = self.factors[same[rng.integers(len(same), size=batch_size)]]
        return out

    @classmethod
    def from_source(cls, dataset, representation_fn, batch_size: int = 256) -> "CodeTable":
        """Encode the ``len(dataset)`` first images in dataset order, ``batch_size`` at a time (as
        ``ldm-dis export`` does, so the codes are those of its file)."""
        factors = np.stack(np.unravel_index(np.arange(len(dataset)), dataset.factor_sizes), axis=1).astype(np.int64)
        codes = encode_factors(dataset, representation_fn, factors, batch_size, desc="encoding the dataset")
        return cls(codes, factors, dataset.factor_names)

    @classmethod
    def from_npz(cls, path: str) -> "CodeTable":
        """Load ``codes``, ``factors`` and optional ``factor_names`` from an ``.npz`` file."""
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserInputError(f"cannot read codes file {path!r}: {exc}") from exc
        missing = [k for k in ("codes", "factors") if k not in data.files]
        if missing:
            raise UserInputError(
                f"codes file {path!r} lacks {missing}; expected keys codes (n, d) or (n, N, D), "
                f"factors (n, F) int and optionally factor_names; found {sorted(data.files)}"
            )
        names = data["factor_names"].tolist() if "factor_names" in data.files else None
        table = cls(data["codes"], data["factors"], names)
        table.protocol = {k: str(data[k]) for k in ("unit_pca", "infomec_active") if k in data.files}
        return table
