"""Each real-dataset loader on small files written in exactly the real format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldm_dis.data import DATASETS, build_dataset, mpi3d_factor_sizes
from ldm_dis.data.storage import H5Array, RawArray, cache_path, open_array, write_npy_cache

from .writers import as_model, grid, write_cars3d, write_celeba, write_dsprites, write_mpi3d, write_shapes3d


def check_grid_dataset(ds, expected_row_major: np.ndarray):
    """images_from_factors, images_at and __getitem__ agree with the expected images (row-major order)."""
    f = grid(ds.factor_sizes)
    pick = np.random.default_rng(0).permutation(len(f))[:20]
    np.testing.assert_array_equal(ds.images_from_factors(f[pick]), expected_row_major[pick])
    np.testing.assert_array_equal(ds.images_at(np.arange(len(f))), expected_row_major)
    image, factors = ds[int(pick[0])]
    np.testing.assert_array_equal(image.numpy(), expected_row_major[pick[0]])
    np.testing.assert_array_equal(factors.numpy(), f[pick[0]])


@pytest.mark.parametrize("shuffle", [False, True])
def test_shapes3d_h5(tmp_path, shuffle):
    raw = write_shapes3d(tmp_path / "3dshapes.h5", shuffle=shuffle)
    ds = build_dataset({"name": "shapes3d", "path": str(tmp_path / "3dshapes.h5")})
    assert ds.factor_names == ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    assert ds.factor_sizes == [2, 2, 2, 2, 2, 3] and len(ds) == 96 and ds.num_channels == 3
    assert isinstance(ds.source, H5Array)
    check_grid_dataset(ds, as_model(raw))  # shuffled rows are put back in factor order from the labels


def test_h5_and_raw_files_work_in_a_dataloader_with_two_workers(tmp_path):
    write_shapes3d(tmp_path / "3dshapes.h5")
    raw = write_mpi3d(tmp_path / "mpi3d_toy.npz", n=48)
    for cfg in ({"name": "shapes3d", "path": str(tmp_path / "3dshapes.h5")},
                {"name": "mpi3d", "path": str(tmp_path / "mpi3d_toy.npz"), "factor_sizes": [2, 2, 1, 1, 1, 3, 4]}):
        ds = build_dataset(cfg)
        ds[0]  # opens the file in this process first: workers must open their own handle
        loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2, shuffle=True,
                                             generator=torch.Generator().manual_seed(0))
        seen = {int(i): img for images, factors in loader for img, i in zip(images.numpy(), ds.index_of(factors.numpy()))}
        assert sorted(seen) == list(range(len(ds)))
        for i in (0, 7, len(ds) - 1):
            np.testing.assert_array_equal(seen[i], ds.images_at(np.array([i]))[0])
    np.testing.assert_array_equal(seen[5], as_model(raw)[5])


def test_resolution_resizes(tmp_path):
    write_shapes3d(tmp_path / "3dshapes.h5")
    ds = build_dataset({"name": "shapes3d", "path": str(tmp_path / "3dshapes.h5"), "resolution": 32})
    x = ds.images_at(np.arange(4))
    assert x.shape == (4, 3, 32, 32) and x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    full = build_dataset({"name": "shapes3d", "path": str(tmp_path / "3dshapes.h5")}).images_at(np.arange(4))
    # antialiased downsampling of a random image: each pixel near the mean of its 2x2 block
    np.testing.assert_allclose(x.mean(), full.mean(), atol=0.02)


def test_mpi3d_factor_sizes_from_the_image_count():
    assert mpi3d_factor_sizes(1_036_800) == [6, 6, 2, 3, 3, 40, 40]
    assert mpi3d_factor_sizes(460_800) == [4, 4, 2, 3, 3, 40, 40]
    assert mpi3d_factor_sizes(1000) is None
    assert int(np.prod(mpi3d_factor_sizes(1_036_800))) == 1_036_800


def test_mpi3d_uncompressed_npz_is_read_in_place(tmp_path):
    raw = write_mpi3d(tmp_path / "mpi3d_toy.npz", n=48)
    ds = build_dataset({"name": "mpi3d", "path": str(tmp_path / "mpi3d_toy.npz"), "factor_sizes": [2, 2, 1, 1, 1, 3, 4]})
    assert ds.factor_names[0] == "object_color" and ds.factor_sizes == [2, 2, 1, 1, 1, 3, 4]
    assert isinstance(ds.source, RawArray) and ds.source.path == tmp_path / "mpi3d_toy.npz"
    assert not cache_path(tmp_path / "mpi3d_toy.npz", "images").exists()
    check_grid_dataset(ds, as_model(raw))


def test_mpi3d_compressed_npz_goes_through_a_cache_once(tmp_path, capsys):
    raw = write_mpi3d(tmp_path / "mpi3d_real.npz", n=48, compressed=True)
    cfg = {"name": "mpi3d", "path": str(tmp_path / "mpi3d_real.npz"), "factor_sizes": [2, 2, 1, 1, 1, 3, 4],
           "cache_dir": str(tmp_path / "cache")}
    ds = build_dataset(cfg)
    assert ds.source.path == tmp_path / "cache" / "mpi3d_real.images.npy"
    assert "uncompressed copy" in capsys.readouterr().err
    check_grid_dataset(ds, as_model(raw))
    build_dataset(cfg)  # the second time the cache is simply used
    assert capsys.readouterr().err == ""


def test_dsprites_release_format(tmp_path):
    path = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    raw = write_dsprites(path)
    ds = build_dataset({"name": "dsprites", "path": str(path), "cache_dir": str(tmp_path)})
    assert ds.factor_names == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    assert ds.factor_sizes == [3, 2, 2, 2, 2] and ds.num_channels == 1
    expected = as_model(raw, max_value=1.0)
    assert set(np.unique(expected)) == {-1.0, 1.0}
    check_grid_dataset(ds, expected)


def test_cars3d_mat_folder(tmp_path):
    ims = write_cars3d(tmp_path / "cars", num_cars=2)
    ds = build_dataset({"name": "cars3d", "path": str(tmp_path / "cars"), "resolution": 128})
    assert ds.factor_names == ["elevation", "azimuth", "object"] and ds.factor_sizes == [4, 24, 2]
    for e, a, o in ((0, 0, 0), (3, 5, 1), (2, 23, 0)):  # im axes: H, W, RGB, azimuth, elevation
        np.testing.assert_array_equal(ds.images_from_factors(np.array([[e, a, o]]))[0], as_model(ims[o][None, ..., a, e])[0])
    (tmp_path / "cars" / "car_001_mesh.mat").unlink()  # one car is enough to check the resizing
    small = build_dataset({"name": "cars3d", "path": str(tmp_path / "cars"), "resolution": 64})
    assert small.factor_sizes == [4, 24, 1] and small[0][0].shape == (3, 64, 64)
    # 128 -> 64 averages 2x2 blocks (then rounds to uint8 once, at load)
    block_mean = ds.images_at(np.array([10]))[0].reshape(3, 64, 2, 64, 2).mean(axis=(2, 4))  # (0, 5, 0) of 2 cars
    np.testing.assert_allclose(small.images_at(np.array([5]))[0], block_mean, atol=1 / 127.5 + 1e-6)


def test_celeba_attributes(tmp_path):
    attrs = write_celeba(tmp_path / "celeba", n=4)
    ds = build_dataset({"name": "celeba", "path": str(tmp_path / "celeba")})
    assert len(ds) == 4 and ds.factor_sizes == [2] * 40 and ds.factor_names[0] == "Attr_0"
    image, factors = ds[2]
    assert image.shape == (3, 64, 64) and -1 <= image.min() < image.max() <= 1
    np.testing.assert_array_equal(factors.numpy(), (attrs[2] > 0).astype(np.int64))
    assert ds.images_at(np.array([0, 3])).shape == (2, 3, 64, 64)
    for call in (lambda: ds.images_from_factors(factors.numpy()[None]), lambda: ds.sample_factors(2, np.random.default_rng(0))):
        with pytest.raises(TypeError, match="not an enumerable factor grid"):
            call()
    # the image folder itself is accepted too
    assert len(build_dataset({"name": "celeba", "path": str(tmp_path / "celeba" / "img_align_celeba")})) == 4


def test_arrays_with_labels_in_npz_and_h5(tmp_path):
    import h5py

    sizes = [3, 2, 4]
    labels = grid(sizes) * np.array([0.5, 10.0, -1.0])  # arbitrary label values, classes by sorted value
    perm = np.random.default_rng(5).permutation(len(labels))
    images = np.random.default_rng(6).random((len(labels), 1, 16, 16)).astype(np.float32)  # channels first, float
    np.savez(tmp_path / "mine.npz", x=images[perm], y=labels[perm])
    with h5py.File(tmp_path / "mine.h5", "w") as fh:
        fh["x"], fh["y"] = images[perm], labels[perm]
    for file in ("mine.npz", "mine.h5"):
        ds = build_dataset({"name": "arrays", "path": str(tmp_path / file), "images_key": "x", "labels_key": "y", "resolution": 16})
        assert ds.factor_sizes == sizes and ds.num_channels == 1 and ds.factor_names == ["factor_0", "factor_1", "factor_2"]
        # the third label is negated: its classes run backwards
        expected = images[np.ravel_multi_index((grid(sizes)[:, 0], grid(sizes)[:, 1], 3 - grid(sizes)[:, 2]), sizes)] * 2 - 1
        np.testing.assert_allclose(ds.images_at(np.arange(len(labels))), expected, atol=1e-6)


def test_arrays_npy_with_factor_sizes(tmp_path):
    raw = np.random.default_rng(7).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "grid.npy", raw)
    ds = build_dataset({"name": "arrays", "path": str(tmp_path / "grid.npy"), "factor_sizes": [2, 3, 4],
                        "factor_names": ["a", "b", "c"], "resolution": 32})
    assert ds.factor_names == ["a", "b", "c"] and len(ds) == 24
    check_grid_dataset(ds, as_model(raw))


def test_prepare_writes_a_cache_that_the_loader_then_uses(tmp_path):
    raw = write_shapes3d(tmp_path / "3dshapes.h5")
    source = open_array(tmp_path / "3dshapes.h5", "images", "shapes3d")
    out = write_npy_cache(source, cache_path(source.path, "images"), chunk_rows=7)
    np.testing.assert_array_equal(np.load(out), raw)
    ds = build_dataset({"name": "shapes3d", "path": str(tmp_path / "3dshapes.h5")})
    assert isinstance(ds.source, RawArray) and ds.source.path == out
    check_grid_dataset(ds, as_model(raw))


def test_registry_lists_every_format():
    assert set(DATASETS) == {"shapes3d", "mpi3d", "cars3d", "dsprites", "celeba", "arrays", "synth-shapes3d", "synth-dsprites"}
