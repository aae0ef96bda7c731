"""Drawing factors, rendering and encoding them in batches: the only place metrics touch a dataset.

A "source" is a ground-truth dataset (``factor_names``, ``factor_sizes``, ``sample_factors(n, rng)``,
``images_from_factors(factors)``) plus a ``representation_fn`` (images (n, C, H, W) -> codes (n, d) or
(n, N, D)). A :class:`~ldm_dis.metrics.code_table.CodeTable` (codes exported to an ``.npz``) is a
source too: it answers ``codes_from_factors`` directly and takes ``representation_fn=None``.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from tqdm.auto import tqdm

RepresentationFn = Callable[[np.ndarray], np.ndarray]

# images rendered and encoded per call of representation_fn
ENCODE_BATCH = 256


def encode_factors(
    dataset,
    representation_fn: Optional[RepresentationFn],
    factors: np.ndarray,
    batch_size: int = ENCODE_BATCH,
    desc: str = "encoding",
) -> np.ndarray:
    """Codes of the observations with the given factor values.

    factors: (n, F) int. Returns (n, d) or (n, N, D) as the representation gives them.
    Images are rendered and encoded ``batch_size`` at a time so memory stays bounded.
    """
    factors = np.asarray(factors, dtype=np.int64)
    if representation_fn is None:
        return dataset.codes_from_factors(factors)
    chunks = []
    starts = range(0, len(factors), batch_size)
    # disable=None: a bar on a terminal, silence in tests and logs
    for start in tqdm(starts, desc=desc, disable=None, leave=False):
        images = dataset.images_from_factors(factors[start : start + batch_size])
        chunks.append(np.asarray(representation_fn(images)))
    if not chunks:
        raise ValueError("encode_factors needs at least one factor row")
    return np.concatenate(chunks, axis=0)


def sample_codes(
    dataset,
    representation_fn: Optional[RepresentationFn],
    num_points: int,
    rng: np.random.Generator,
    batch_size: int = ENCODE_BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``num_points`` factor combinations and encode them.

    Returns (codes (n, d) or (n, N, D), factors (n, F) int64).
    """
    factors = np.asarray(dataset.sample_factors(num_points, rng), dtype=np.int64)
    return encode_factors(dataset, representation_fn, factors, batch_size), factors


def fixed_factor_batches(
    dataset, num_batches: int, batch_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Factor values of ``num_batches`` batches, each with one random factor held at one value.

    Only factors with more than one value are chosen (fixing a constant factor tells nothing).
    Returns (factors (num_batches, batch_size, F) int64, fixed factor index (num_batches,)).
    A source may provide ``sample_fixed_factor_batches`` (a code table that lacks some
    combinations draws its rows among those that exist); otherwise the first row's value is copied
    to the whole batch, as disentanglement_lib does.
    """
    sizes = np.asarray(dataset.factor_sizes)
    choices = np.flatnonzero(sizes > 1)
    if len(choices) == 0:
        raise ValueError("every factor has a single value: nothing to fix")
    fixed = choices[rng.integers(len(choices), size=num_batches)]
    if hasattr(dataset, "sample_fixed_factor_batches"):
        return dataset.sample_fixed_factor_batches(fixed, batch_size, rng), fixed
    factors = np.asarray(dataset.sample_factors(num_batches * batch_size, rng), dtype=np.int64)
    return hold_first_row_value(factors.reshape(num_batches, batch_size, -1), fixed), fixed


def hold_first_row_value(factors: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """factors (V, B, F), fixed (V,): copy each batch's first-row value of its fixed factor to all rows."""
    rows = np.arange(len(fixed))
    factors[rows, :, fixed] = factors[rows, 0, fixed][:, None]
    return factors
