"""``synth-dsprites``: a procedural stand-in for dSprites, rendered from the factor values.

Same factor names and sizes as dSprites (shape 3, scale 6, orientation 40, pos_x 32, pos_y 32), one
channel, a white sprite on black. The real dSprites square and ellipse are rotation-symmetric (90 and
180 degrees), so several of its 40 orientations give identical images. Here every shape is made
asymmetric on purpose so that all 40 orientations differ: the square has one corner cut off, the
ellipse is egg-shaped, the heart is already asymmetric. Edges are anti-aliased from signed distances;
rendering is vectorized over the batch (numpy).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ldm_dis.data.base import GroundTruthDataset

FACTOR_NAMES = ["shape", "scale", "orientation", "pos_x", "pos_y"]
FACTOR_SIZES = [3, 6, 40, 32, 32]
SHAPES = ["square", "ellipse", "heart"]

_HALF_SIZE = 0.3  # half-size at scale 1 in image units ([-1, 1] across)
_POS_RANGE = 0.6  # sprite centres span [-0.6, 0.6]
_MAX_RADIUS = 1.42  # farthest inside point of any shape from its centre, in units of the half-size


class SyntheticDSprites(GroundTruthDataset):
    """1 channel; any resolution (64 default, 32 for CPU runs)."""

    name = "synth-dsprites"

    def __init__(self, resolution: Optional[int] = None, subset: Optional[int] = None) -> None:
        super().__init__(FACTOR_NAMES, FACTOR_SIZES, num_channels=1, resolution=resolution, subset=subset,
                         native_resolution=resolution or 64)  # rendered at any size: never a resize
        r = self.resolution
        t = ((np.arange(r, dtype=np.float32) + 0.5) / r) * 2.0 - 1.0  # pixel centres
        self._x = t[None, None, :]  # (1, 1, R) left -> right
        self._y = -t[None, :, None]  # (1, R, 1) bottom -> top (y up, so the heart points down as in dSprites)
        self._px = np.float32(2.0 / r)

    def images_at(self, indices: np.ndarray) -> np.ndarray:
        return self.render(self.factors_of(indices))

    def images_from_factors(self, factors: np.ndarray) -> np.ndarray:
        return self.render(np.atleast_2d(np.asarray(factors, dtype=np.int64)))

    def render(self, factors: np.ndarray) -> np.ndarray:
        """Factor values int ``(n, 5)`` -> float32 ``(n, 1, R, R)`` in [-1, 1].

        A sprite covers at most a disc of radius ``_MAX_RADIUS``: only the square of pixels around it is
        computed (a fifth of the image at 64x64) and pasted into a black canvas; the result is the same
        as computing every pixel (the window grows to the whole image when the sprite could fill it)."""
        f = np.asarray(factors, dtype=np.int64)
        if f.ndim != 2 or f.shape[1] != 5 or (f < 0).any() or (f >= np.array(FACTOR_SIZES)).any():
            raise ValueError(f"factors must be (n, 5) within sizes {FACTOR_SIZES}; got shape {f.shape}")
        n, r = len(f), self.resolution
        col = lambda v: np.asarray(v, dtype=np.float32)[:, None, None]  # noqa: E731  (n,) -> (n, 1, 1)
        scale = col(_HALF_SIZE * (0.5 + 0.1 * f[:, 1]))  # dSprites scales 0.5 .. 1.0
        angle = col(f[:, 2] * (2.0 * np.pi / 40.0))
        cx = col((f[:, 3] / 31.0 * 2.0 - 1.0) * _POS_RANGE)
        cy = col((1.0 - f[:, 4] / 31.0 * 2.0) * _POS_RANGE)  # pos_y 0 at the top, as in dSprites
        size = min(r, int(np.ceil(2 * _MAX_RADIUS * _HALF_SIZE / self._px)) + 4)
        # first row / column of each item's window (y is up, rows go down)
        col0 = np.clip(np.floor((cx[:, 0, 0] + 1.0) / self._px - size / 2).astype(np.int64), 0, r - size)
        row0 = np.clip(np.floor((1.0 - cy[:, 0, 0]) / self._px - size / 2).astype(np.int64), 0, r - size)
        offsets = np.arange(size)
        x = self._x[0, 0][col0[:, None] + offsets][:, None, :]  # (n, 1, size)
        y = self._y[0, :, 0][row0[:, None] + offsets][:, :, None]  # (n, size, 1)
        # pixel -> sprite frame: translate, rotate by -angle, divide by scale (distances scale back below)
        dx, dy = x - cx, y - cy
        c, s = np.cos(angle), np.sin(angle)
        u = (c * dx + s * dy) / scale
        v = (c * dy - s * dx) / scale
        sd = np.empty(u.shape, dtype=np.float32)  # signed distance, positive inside, in sprite units
        for shape_id, dist in enumerate((_cut_square, _egg, _heart)):
            sel = np.nonzero(f[:, 0] == shape_id)[0]
            if len(sel):
                sd[sel] = dist(u[sel], v[sel])
        patch = np.clip(sd * scale / self._px + 0.5, 0.0, 1.0) * 2.0 - 1.0
        if size == r:
            return patch[:, None].astype(np.float32, copy=False)
        out = np.full((n, 1, r, r), -1.0, dtype=np.float32)
        for i in range(n):  # a slice copy per item: cheaper than one fancy-indexed scatter
            out[i, 0, row0[i] : row0[i] + size, col0[i] : col0[i] + size] = patch[i]
        return out


def _cut_square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unit half-size square with its upper-right corner cut off (no rotational symmetry)."""
    box = 1.0 - np.maximum(np.abs(u), np.abs(v))
    cut = (1.1 - (u + v)) * np.float32(1 / np.sqrt(2))  # half-plane u + v < 1.1 removes a third of the diagonal
    return np.minimum(box, cut)


def _egg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """An egg: an ellipse (1.0 x 0.55) whose half-height grows from the left end to the right end."""
    half_h = 0.55 * (1.0 + 0.45 * np.clip(u, -1.0, 1.0))
    return (1.0 - np.sqrt(u**2 + (v / half_h) ** 2)) * np.minimum(half_h, 1.0)


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inigo Quilez's exact heart distance, scaled to about unit half-size (0.62 sprite units per heart unit)."""
    p_x = np.abs(u) * 0.62
    p_y = v * 0.62 + 0.5  # the heart spans y in [0, 1.05]: centre it
    upper = np.sqrt((p_x - 0.25) ** 2 + (p_y - 0.75) ** 2) - 0.35355339  # sqrt(2) / 4 (a Python float keeps float32)
    m = np.maximum(p_x + p_y, 0.0) * 0.5
    lower = np.sqrt(np.minimum(p_x**2 + (p_y - 1.0) ** 2, (p_x - m) ** 2 + (p_y - m) ** 2)) * np.sign(p_x - p_y)
    upper_part = (p_x + p_y > 1.0).astype(np.float32)  # a blend is faster than np.where on float32
    return -(lower + upper_part * (upper - lower)) / 0.62
