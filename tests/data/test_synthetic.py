"""The procedural datasets: the interface, determinism, every factor visible, distinct images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldm_dis.data import DATASETS, build_dataset

SYNTH = ["synth-shapes3d", "synth-dsprites"]


@pytest.fixture(scope="module", params=SYNTH)
def ds32(request):
    return build_dataset({"name": request.param, "resolution": 32})


def test_names_and_sizes_match_the_real_datasets():
    s3d = DATASETS["synth-shapes3d"](resolution=32)
    assert s3d.factor_names == ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    assert s3d.factor_sizes == [10, 10, 10, 8, 4, 15] and len(s3d) == 480_000 and s3d.num_channels == 3
    dsp = DATASETS["synth-dsprites"](resolution=32)
    assert dsp.factor_names == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    assert dsp.factor_sizes == [3, 6, 40, 32, 32] and len(dsp) == 737_280 and dsp.num_channels == 1


def test_getitem_matches_images_from_factors(ds32):
    i = 123_457
    image, factors = ds32[i]
    assert image.dtype == torch.float32 and image.shape == (ds32.num_channels, 32, 32)
    assert factors.dtype == torch.int64 and factors.shape == (ds32.num_factors,)
    assert image.min() >= -1.0 and image.max() <= 1.0 and image.max() > image.min()
    assert int(ds32.index_of(factors.numpy())) == i
    np.testing.assert_array_equal(ds32.images_from_factors(factors.numpy()[None])[0], image.numpy())
    batch = ds32.__getitems__([i, 0, len(ds32) - 1])
    np.testing.assert_array_equal(batch[0][0].numpy(), image.numpy())
    with pytest.raises(IndexError):
        ds32[len(ds32)]


def test_index_and_factors_round_trip(ds32):
    rng = np.random.default_rng(0)
    f = ds32.sample_factors(500, rng)
    assert f.dtype == np.int64 and f.shape == (500, ds32.num_factors)
    assert (f >= 0).all() and (f < np.array(ds32.factor_sizes)).all()
    assert all(len(np.unique(f[:, k])) == min(s, 500) for k, s in enumerate(ds32.factor_sizes) if s <= 40)
    np.testing.assert_array_equal(ds32.factors_of(ds32.index_of(f)), f)
    # row-major: the last factor varies fastest
    np.testing.assert_array_equal(ds32.factors_of(np.array([1]))[0], [0] * (ds32.num_factors - 1) + [1])


def test_rendering_is_deterministic_and_resolution_is_honoured():
    for name in SYNTH:
        f = build_dataset({"name": name, "resolution": 32}).sample_factors(8, np.random.default_rng(1))
        a = build_dataset({"name": name, "resolution": 32}).images_from_factors(f)
        b = build_dataset({"name": name, "resolution": 32}).images_from_factors(f)
        np.testing.assert_array_equal(a, b)
        assert build_dataset({"name": name, "resolution": 48}).images_from_factors(f).shape[-2:] == (48, 48)


@pytest.mark.parametrize("resolution", [32, 64])
def test_every_factor_step_changes_the_image_clearly(resolution):
    """For random base tuples, moving one factor by one step changes some pixel by > 0.2 (of 2) and the
    mean by > 1e-3: no step is invisible, whichever the other factors."""
    for name in SYNTH:
        ds = build_dataset({"name": name, "resolution": resolution})
        for base in ds.sample_factors(12, np.random.default_rng(2)):
            for k, size in enumerate(ds.factor_sizes):
                f = np.repeat(base[None], size, axis=0)
                f[:, k] = np.arange(size)
                d = np.abs(np.diff(ds.images_from_factors(f), axis=0)).reshape(size - 1, -1)
                assert d.max(axis=1).min() > 0.2, (name, ds.factor_names[k], base)
                assert d.mean(axis=1).min() > 1e-3, (name, ds.factor_names[k], base)


def test_all_orientations_are_distinct_for_every_shape():
    """No rotational symmetry: all orientation pairs differ (dSprites' own square and ellipse would fail)."""
    for name, shape_k, orient_k in (("synth-shapes3d", 4, 5), ("synth-dsprites", 0, 2)):
        ds = build_dataset({"name": name, "resolution": 32})
        rng = np.random.default_rng(3)
        for shape in range(ds.factor_sizes[shape_k]):
            base = ds.sample_factors(1, rng)[0]
            base[shape_k] = shape
            f = np.repeat(base[None], ds.factor_sizes[orient_k], axis=0)
            f[:, orient_k] = np.arange(ds.factor_sizes[orient_k])
            x = ds.images_from_factors(f).reshape(len(f), -1)
            dist = np.abs(x[:, None] - x[None]).max(axis=2) + np.eye(len(f)) * 9
            assert dist.min() > 0.2, (name, shape, np.unravel_index(dist.argmin(), dist.shape))


def test_distinct_factor_tuples_give_distinct_images():
    for name in SYNTH:
        ds = build_dataset({"name": name, "resolution": 32})
        idx = np.unique(np.random.default_rng(4).integers(0, len(ds), 4000))
        images = ds.images_at(idx)
        as_bytes = np.round((images + 1.0) * 127.5).astype(np.uint8).reshape(len(idx), -1)
        assert len({row.tobytes() for row in as_bytes}) == len(idx), name


def test_factors_act_where_they_should():
    """Independence in the picture: hues of floor and wall only recolour their own region, and a hue
    change keeps the geometry (the set of pixels that change is the same for any pair of hues)."""
    ds = build_dataset({"name": "synth-shapes3d", "resolution": 32})
    f = np.array([[0, 0, 0, 4, 0, 7]] * 3)
    f[1, 0] = 5  # floor hue
    f[2, 1] = 5  # wall hue
    x = ds.images_from_factors(f)
    floor_px = np.abs(x[1] - x[0]).max(axis=0) > 1e-3
    wall_px = np.abs(x[2] - x[0]).max(axis=0) > 1e-3
    assert floor_px[-1].all() and not floor_px[0].any()  # bottom row is floor, top row is wall
    assert wall_px[0].all() and not wall_px[-1].any()
    assert (floor_px & wall_px).sum() < 2 * 32  # they overlap only on the anti-aliased horizon


def test_works_in_a_dataloader_with_two_workers():
    ds = build_dataset({"name": "synth-shapes3d", "resolution": 32, "subset": 64})
    loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=2, shuffle=False)
    images, factors = zip(*loader)
    images, factors = torch.cat(images), torch.cat(factors)
    assert images.shape == (64, 3, 32, 32) and factors.shape == (64, 6)
    rows = ds.grid_indices(np.arange(64))  # data.subset: 64 images drawn across the whole grid
    np.testing.assert_array_equal(images.numpy(), ds.images_at(rows))
    np.testing.assert_array_equal(factors.numpy(), ds.factors_of(rows))


@pytest.mark.parametrize("resolution", [32, 64])
def test_dsprites_window_rendering_equals_full_rendering(resolution, monkeypatch):
    """Only the pixels around each sprite are computed; every pixel outside must be exactly background
    (the full rendering: a sprite radius so large that the window is the whole image)."""
    from ldm_dis.data import synthetic_dsprites

    ds = build_dataset({"name": "synth-dsprites", "resolution": resolution})
    f = ds.sample_factors(400, np.random.default_rng(5))
    f[:10, 1], f[:10, 3:] = 5, [[0, 0], [31, 31], [0, 31], [31, 0], [0, 16], [16, 0], [31, 16], [16, 31], [15, 15], [31, 31]]
    windowed = ds.render(f)
    monkeypatch.setattr(synthetic_dsprites, "_MAX_RADIUS", 1e6)
    np.testing.assert_array_equal(windowed, ds.render(f))
