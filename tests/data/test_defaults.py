"""Data defaults that do not surprise: the native resolution, factor names read from the file, and a
``data.subset`` drawn at random across every factor."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ldm_dis.data import DatasetError, build_dataset

from .writers import as_model, grid


def _arrays_file(tmp_path, size=16, names=None, suffix="npz"):
    sizes = [2, 3, 4]
    images = np.random.default_rng(0).integers(0, 256, (24, size, size, 3), dtype=np.uint8)
    path = tmp_path / f"mine.{suffix}"
    extra = {} if names is None else {"factor_names": np.asarray(names, dtype=str)}
    if suffix == "npz":
        np.savez(path, images=images, labels=grid(sizes), **extra)
    else:
        with h5py.File(path, "w") as fh:
            fh["images"], fh["labels"] = images, grid(sizes)
            if names is not None:
                fh["factor_names"] = np.asarray(names, dtype="S")  # bytes, as h5py stores fixed strings
    return path, images


def test_resolution_defaults_to_the_stored_size_and_a_resize_is_said_once(tmp_path, capsys):
    path, images = _arrays_file(tmp_path, size=16)
    ds = build_dataset({"name": "arrays", "path": str(path), "labels_key": "labels"})
    assert ds.resolution == ds.native_resolution == 16
    np.testing.assert_array_equal(ds.images_at(np.arange(24)), as_model(images))
    assert "resized" not in capsys.readouterr().out
    small = build_dataset({"name": "arrays", "path": str(path), "labels_key": "labels", "resolution": 8})
    assert small.resolution == 8 and small.images_at(np.arange(2)).shape == (2, 3, 8, 8)
    said = capsys.readouterr().out
    assert said.count("resized from 16x16 to 8x8") == 1
    small.images_at(np.arange(24))  # reading says nothing more
    assert capsys.readouterr().out == ""


def test_synthetic_datasets_render_at_64_by_default_and_at_any_size_without_a_resize(capsys):
    assert build_dataset({"name": "synth-shapes3d"}).resolution == 64
    assert build_dataset({"name": "synth-dsprites", "resolution": 32}).resolution == 32
    assert "resized" not in capsys.readouterr().out


@pytest.mark.parametrize("suffix", ["npz", "h5"])
def test_arrays_reads_factor_names_from_the_file(tmp_path, suffix):
    path, _ = _arrays_file(tmp_path, names=["shape", "scale", "angle"], suffix=suffix)
    ds = build_dataset({"name": "arrays", "path": str(path), "labels_key": "labels"})
    assert ds.factor_names == ["shape", "scale", "angle"]
    given = build_dataset({"name": "arrays", "path": str(path), "labels_key": "labels", "factor_names": ["a", "b", "c"]})
    assert given.factor_names == ["a", "b", "c"]  # the config wins over the file


def test_factor_names_of_the_wrong_length_in_the_file_are_a_clear_error(tmp_path):
    path, _ = _arrays_file(tmp_path, names=["shape", "scale"])
    with pytest.raises(DatasetError, match="3 data.factor_names"):
        build_dataset({"name": "arrays", "path": str(path), "labels_key": "labels"})


def test_an_exported_codes_file_feeds_the_arrays_loader_its_names(tmp_path):
    """What `ldm-dis export` writes (codes, factors, factor_names) next to images is read back by name."""
    from ldm_dis.training.export import write_representation

    sizes = [2, 3]
    factors = grid(sizes)
    out = write_representation(tmp_path / "codes.npz", np.zeros((6, 2)), factors, ["colour", "size"])
    with np.load(out) as npz:
        np.savez(tmp_path / "with_images.npz", images=np.zeros((6, 8, 8), np.uint8), labels=npz["factors"],
                 factor_names=npz["factor_names"])
    ds = build_dataset({"name": "arrays", "path": str(tmp_path / "with_images.npz"), "labels_key": "labels"})
    assert ds.factor_names == ["colour", "size"] and ds.factor_sizes == sizes


def test_subset_is_a_seeded_random_draw_across_all_factors():
    ds = build_dataset({"name": "synth-shapes3d", "resolution": 16, "subset": 300})
    again = build_dataset({"name": "synth-shapes3d", "resolution": 16, "subset": 300})
    assert len(ds) == 300 and ds.num_images == 480_000
    rows = ds.grid_indices(np.arange(300))
    np.testing.assert_array_equal(rows, again.grid_indices(np.arange(300)))  # the same images in every run
    assert len(np.unique(rows)) == 300 and np.all(np.diff(rows) > 0)
    factors = np.stack([ds[i][1].numpy() for i in range(300)])
    np.testing.assert_array_equal(factors, ds.factors_of(rows))
    # the first 300 rows of the row-major grid hold floor, wall and object hue and scale at 0; a draw
    # across the grid sees (nearly) every value of every factor
    for k, size in enumerate(ds.factor_sizes):
        assert len(np.unique(factors[:, k])) >= size - 1, ds.factor_names[k]
    # the metrics still draw from the whole grid: any factor tuple has its image
    outside = ds.factors_of(np.setdiff1d(np.arange(1000), rows)[:3])
    assert ds.images_from_factors(outside).shape == (3, 3, 16, 16)
    assert "random subset of 480000" in ds.describe()


def test_pictures_draw_their_images_from_the_subset():
    from ldm_dis.sampling.components import dataset_images

    ds = build_dataset({"name": "synth-shapes3d", "resolution": 16, "subset": 50})
    images, factors = dataset_images(ds, 10, seed=0)
    allowed = {tuple(f) for f in ds.factors_of(ds.grid_indices(np.arange(50)))}
    assert all(tuple(f) in allowed for f in factors)
    np.testing.assert_array_equal(images.numpy(), ds.images_from_factors(factors))
