"""``synth-shapes3d``: a procedural stand-in for 3D Shapes, rendered from the factor values.

Same factor names and sizes as Shapes3D (floor_hue 10, wall_hue 10, object_hue 10, scale 8, shape 4,
orientation 15). The scene is a room corner seen from slightly above: two walls meeting at a vertical
edge, a floor below the horizon, and one object standing in the middle (cube, cylinder, sphere, or a
capsule lying on the floor). ``orientation`` turns the camera around the object between -30 and +30
degrees: the room corner slides sideways, the horizon tilts, the cube shows other faces and the capsule
points elsewhere. Rendering is orthographic with analytic coverage (anti-aliased edges), in numpy.
Geometry and shading depend only on (scale, shape, orientation): the per-pixel weights of the wall,
floor and object colours of those 480 views are computed once per process (6 MB at 32x32, 24 MB at
64x64, 94 MB at 128x128); a batch is then one lookup and one product with its three hues (256 images
at 32x32 in about 1.5 ms of CPU, see docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ldm_dis.data.base import GroundTruthDataset

FACTOR_NAMES = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
FACTOR_SIZES = [10, 10, 10, 8, 4, 15]
SHAPES = ["cube", "cylinder", "sphere", "capsule"]

_ELEV_SIN, _ELEV_COS = 0.45, 0.893  # camera elevation of about 27 degrees
_BASE_Y = 0.62  # screen y (down, in [-1, 1]) where the object's base centre touches the floor
# light direction in view space (right, up, toward the viewer)
_LIGHT = (np.array([0.55, 0.65, 0.52]) / np.linalg.norm([0.55, 0.65, 0.52])).astype(np.float32)


def hue_to_rgb(h: np.ndarray, saturation: float) -> np.ndarray:
    """Hue ``(n,)`` in [0, 1) at full value -> RGB ``(n, 3)`` in [0, 1] (HSV; value scales it linearly)."""
    k = (np.array([5.0, 3.0, 1.0], dtype=np.float32) + np.asarray(h, dtype=np.float32)[:, None] * 6.0) % 6.0
    return 1.0 - saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


class SyntheticShapes3D(GroundTruthDataset):
    """3 channels; any resolution (64 default, 32 for CPU runs); nothing is stored, every image is rendered."""

    name = "synth-shapes3d"

    def __init__(self, resolution: Optional[int] = None, subset: Optional[int] = None) -> None:
        super().__init__(FACTOR_NAMES, FACTOR_SIZES, num_channels=3, resolution=resolution, subset=subset,
                         native_resolution=resolution or 64)  # rendered at any size: never a resize
        r = self.resolution
        t = ((np.arange(r, dtype=np.float32) + 0.5) / r) * 2.0 - 1.0  # pixel centres in [-1, 1]
        self._x = t[None, None, :]  # (1, 1, R) left -> right
        self._y = t[None, :, None]  # (1, R, 1) top -> bottom
        self._px = 2.0 / r  # one pixel in scene units
        self._maps = None  # colour weights, built on first use in each process

    def __getstate__(self):
        # DataLoader workers rebuild the maps themselves instead of receiving them pickled
        return {**self.__dict__, "_maps": None}

    def images_at(self, indices: np.ndarray) -> np.ndarray:
        return self.render(self.factors_of(indices))

    def images_from_factors(self, factors: np.ndarray) -> np.ndarray:
        return self.render(np.atleast_2d(np.asarray(factors, dtype=np.int64)))

    # -------------------------------------------------------------------------------------- render
    def _cover(self, d: np.ndarray) -> np.ndarray:
        """Signed distance (positive inside, scene units) -> pixel coverage in [0, 1]."""
        return np.clip(d / self._px + 0.5, 0.0, 1.0)

    def render(self, factors: np.ndarray) -> np.ndarray:
        """Factor values int ``(n, 6)`` -> float32 ``(n, 3, R, R)`` in [-1, 1]."""
        f = np.asarray(factors, dtype=np.int64)
        if f.ndim != 2 or f.shape[1] != 6 or (f < 0).any() or (f >= np.array(FACTOR_SIZES)).any():
            raise ValueError(f"factors must be (n, 6) within sizes {FACTOR_SIZES}; got shape {f.shape}")
        if self._maps is None:
            self._maps = self._render_maps()
        n, r = len(f), self.resolution
        # Geometry and shading depend only on (scale, shape, orientation): per pixel, the weights of the
        # wall, floor and object colours are looked up; the hues colour them in one batched product.
        weights = self._maps[f[:, 3], f[:, 4], f[:, 5]].reshape(n, 3, r * r)
        colours = np.stack(
            [hue_to_rgb(f[:, 1] / 10.0, 0.7), hue_to_rgb(f[:, 0] / 10.0, 0.7), hue_to_rgb(f[:, 2] / 10.0, 0.8)], axis=2
        )  # (n, 3 channels, 3 layers)
        img = np.einsum("nck,nkp->ncp", colours * np.float32(2.0), weights).reshape(n, 3, r, r)
        img -= np.float32(1.0)
        return img

    def _render_maps(self) -> np.ndarray:
        """Colour weights computed once per process (a few ms; 6 MB at 32x32, 24 MB at 64x64).

        -> (8 scales, 4 shapes, 15 orientations, 3, R, R): per pixel, the weight of the wall, floor and
        object colour (coverage times brightness)."""
        col = lambda v: np.asarray(v, dtype=np.float32).reshape(-1, 1, 1)  # noqa: E731  (n,) -> (n, 1, 1)
        x, y = self._x, self._y
        a = col(np.linspace(-1.0, 1.0, FACTOR_SIZES[5]))  # orientation in [-1, 1] <-> -30..30 degrees
        # Room: the corner's x follows the camera angle; each wall's floor line falls away from the corner,
        # more steeply on the wall seen at a grazing angle (both slopes positive: max picks the right line).
        corner_x = 0.55 * a
        horizon = 0.02 + np.maximum((0.24 - 0.16 * a) * (corner_x - x), (0.24 + 0.16 * a) * (x - corner_x))
        below = y - horizon  # (15, R, R)
        floor = self._cover(below)
        wall_shade = 0.74 + 0.22 * self._cover(x - corner_x)  # left wall in shadow
        floor_shade = 0.55 + 0.4 * np.clip(below / (1.0 - horizon + 1e-6), 0.0, 1.0)  # nearer is brighter
        background = np.stack([wall_shade * (1.0 - floor), floor_shade * floor], axis=1).astype(np.float32)

        scale, shape, orient = (g.ravel() for g in np.indices(FACTOR_SIZES[3:]))
        size = 0.36 * (0.7 + 0.6 * scale / 7.0)  # half-width in scene units, scale 0.7 .. 1.3
        turn = np.deg2rad(30.0) * a[orient, 0, 0]  # camera angle in radians
        r = self.resolution
        alpha = np.zeros((len(scale), r, r), dtype=np.float32)
        shading = np.ones((len(scale), r, r), dtype=np.float32)
        for shape_id, draw in enumerate((self._cube, self._cylinder, self._sphere, self._capsule)):
            sel = np.nonzero(shape == shape_id)[0]
            alpha[sel], shading[sel] = draw(col(size[sel]), col(turn[sel]))
        keep = (1.0 - alpha)[:, None]  # (480, 1, R, R): the background shows where the object does not
        weights = np.concatenate([background[orient] * keep, (alpha * shading)[:, None]], axis=1)
        return weights.astype(np.float32).reshape(tuple(FACTOR_SIZES[3:]) + (3, r, r))

    @staticmethod
    def _lambert(nx, ny, nz) -> np.ndarray:
        """View-space normal (right, up, to viewer) -> brightness in [0.3, 1]."""
        return 0.3 + 0.7 * np.clip(nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2], 0.0, 1.0)

    def _prism(self, z_back, z_front, inside_x, height, side_shade):
        """A vertical prism standing on the floor, given for each pixel column the depth interval of its
        cross-section (``z_back`` .. ``z_front``, toward the viewer positive) and the distance of the column
        to the cross-section's outline (``inside_x``) -> (coverage, shading)."""
        x_dist, y = inside_x, self._y
        top_far = _BASE_Y - height * _ELEV_COS + z_back * _ELEV_SIN
        top_near = _BASE_Y - height * _ELEV_COS + z_front * _ELEV_SIN
        bottom = _BASE_Y + z_front * _ELEV_SIN
        alpha = self._cover(np.minimum(x_dist, np.minimum(y - top_far, bottom - y)))
        on_top = self._cover(top_near - y)
        top_shade = self._lambert(0.0, _ELEV_COS, _ELEV_SIN)
        return alpha, top_shade * on_top + side_shade * (1.0 - on_top)

    def _cube(self, w, turn):
        h = 0.8 * w  # half side
        c, s = np.cos(turn + np.pi / 4), np.sin(turn + np.pi / 4)  # 45 degrees: a corner faces the camera
        x = self._x
        fx, fz = h * (c - s), h * (c + s)  # front corner (X, Z)
        lx, lz = -h * (c + s), h * (c - s)  # left corner
        rx, rz = h * (c + s), h * (s - c)  # right corner
        bx, bz = -fx, -fz  # back corner
        line = lambda x0, z0, x1, z1: z0 + (z1 - z0) * (x - x0) / (x1 - x0)  # noqa: E731
        # the outline is convex: its front edge is the lower, its back edge the upper of two lines
        front = np.minimum(line(lx, lz, fx, fz), line(fx, fz, rx, rz))
        back = np.maximum(line(lx, lz, bx, bz), line(bx, bz, rx, rz))
        # face normals in the ground plane: left face (-s, c), right face (c, s); to view space (x, 0, z)
        right = self._cover(x - fx)
        side = self._lambert(-s, 0.0, c * _ELEV_COS) * (1.0 - right) + self._lambert(c, 0.0, s * _ELEV_COS) * right
        return self._prism(back, front, np.minimum(x - lx, rx - x), 2 * h, side)

    def _cylinder(self, w, turn):
        rad = 0.8 * w
        x = self._x
        z = np.sqrt(np.clip(rad**2 - x**2, 0.0, None))
        side = self._lambert(x / rad, 0.0, z / rad * _ELEV_COS)
        return self._prism(-z, z, rad - np.abs(x), 2.1 * rad, side)

    def _sphere(self, w, turn):
        rad = w
        dx, dy = self._x, self._y - (_BASE_Y - rad * _ELEV_COS)
        d2 = (dx**2 + dy**2) / rad**2
        alpha = self._cover(rad - np.sqrt(dx**2 + dy**2))
        return alpha, self._lambert(dx / rad, -dy / rad, np.sqrt(np.clip(1.0 - d2, 0.0, None)))

    def _capsule(self, w, turn):
        """A pill lying on the floor; its axis turns with the camera, so its outline shows the angle."""
        rad, half = 0.6 * w, 1.05 * w
        ang = turn + np.pi / 6  # never end-on or symmetric within -30..30 degrees
        ux, uy = np.cos(ang) * half, np.sin(ang) * half * _ELEV_SIN  # projected half-axis
        dx, dy = self._x, self._y - (_BASE_Y - rad * _ELEV_COS)
        t = np.clip((dx * ux + dy * uy) / (ux**2 + uy**2), -1.0, 1.0)
        ex, ey = dx - t * ux, dy - t * uy  # offset from the nearest axis point
        dist = np.sqrt(ex**2 + ey**2)
        nz = np.sqrt(np.clip(1.0 - (dist / rad) ** 2, 0.0, None))
        return self._cover(rad - dist), self._lambert(ex / rad, -ey / rad, nz)
