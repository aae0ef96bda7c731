"""FID: Frechet distance between Gaussian fits of Inception features of real and generated images.

The Inception network is never downloaded: the user points at a local TorchScript file (the
``inception-2015-12-05.pt`` feature detector used by StyleGAN2-ADA / clean-fid: uint8 images
(n, 3, H, W) in [0, 255] -> (n, 2048) pool features with ``return_features=True``), through the
``weights`` argument or the ``LDM_DIS_INCEPTION_WEIGHTS`` environment variable. Without it, or
without a generator of images, the metric is skipped with a message saying what is missing. For an LDM
run, ``ldm-dis evaluate --checkpoint`` passes one: DDIM samples of the EMA U-Net conditioned on the units
of dataset images (``ldm_dis.training.export.load_evaluation_source``).
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Optional

import numpy as np
from scipy import linalg

from ldm_dis.metrics.sampling import ENCODE_BATCH, RepresentationFn
from ldm_dis.metrics.skipped import MetricSkipped

WEIGHTS_ENV = "LDM_DIS_INCEPTION_WEIGHTS"


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) for means (p,) and covariances (p, p)."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular products are handled below
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # singular product (fewer samples than features): regularize both, as pytorch-fid does
        offset = np.eye(len(mu1)) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)  # imaginary parts are rounding noise of sqrtm
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID of two feature sets (n1, p) and (n2, p)."""
    return frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))


class InceptionFeatures:
    """Images (n, C, H, W) float in [-1, 1] -> Inception pool features (n, 2048), from a local file."""

    def __init__(self, weights: str):
        import torch

        if not os.path.isfile(weights):
            raise MetricSkipped(f"FID skipped: Inception weights file {weights!r} does not exist")
        try:
            with warnings.catch_warnings():
                # the published detector is TorchScript; torch's deprecation notice is not the user's concern
                warnings.simplefilter("ignore", DeprecationWarning)
                self.net = torch.jit.load(weights, map_location="cpu").eval()
        except Exception as exc:  # any load failure means the file is not what we can use
            raise MetricSkipped(
                f"FID skipped: {weights!r} is not a TorchScript Inception feature detector ({exc})"
            ) from exc

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.asarray(images, dtype=np.float32))
        if x.shape[1] == 1:  # grayscale datasets (dSprites) as three equal channels
            x = x.repeat(1, 3, 1, 1)
        x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        with torch.no_grad():
            return self.net(x, return_features=True).double().numpy()


def fid_metric(
    dataset,
    representation_fn: Optional[RepresentationFn],
    rng: np.random.Generator,
    num_points: int = 10_000,
    weights: Optional[str] = None,
    generate_fn: Optional[Callable[[int, np.random.Generator], np.ndarray]] = None,
) -> dict:
    """FID between ``num_points`` dataset images and as many from ``generate_fn(n, rng)``.

    representation_fn is unused (FID scores images, not codes); it is accepted so every metric has
    the same signature. Raises MetricSkipped when the weights or the generator are missing.
    """
    weights = weights or os.environ.get(WEIGHTS_ENV)
    if not weights:
        raise MetricSkipped(
            f"FID skipped: no Inception weights (set {WEIGHTS_ENV} to a local TorchScript "
            "inception-2015-12-05.pt; nothing is downloaded)"
        )
    if not hasattr(dataset, "images_from_factors"):
        raise MetricSkipped("FID skipped: the source has codes only, no images")
    if generate_fn is None:
        raise MetricSkipped("FID skipped: no image generator was given (FID scores generated images; "
                            "`ldm-dis evaluate --checkpoint` of an LDM run gives one)")
    features = InceptionFeatures(weights)
    real, fake = [], []
    for start in range(0, num_points, ENCODE_BATCH):
        n = min(ENCODE_BATCH, num_points - start)
        real.append(features(dataset.images_from_factors(dataset.sample_factors(n, rng))))
        fake.append(features(generate_fn(n, rng)))
    return {"fid": fid_from_features(np.concatenate(real), np.concatenate(fake))}
