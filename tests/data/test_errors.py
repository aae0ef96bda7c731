"""Bad input gives one DatasetError naming the file, what was expected, what was found and the source."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ldm_dis.cli import main
from ldm_dis.data import DatasetError, build_dataset
from ldm_dis.errors import UserInputError

from .writers import write_cars3d, write_celeba, write_dsprites, write_mpi3d, write_shapes3d

SOURCE = {"shapes3d": "3d-shapes", "mpi3d": "rr-learning/disentanglement_dataset", "dsprites": "deepmind/dsprites-dataset",
          "cars3d": "Deep Visual Analogy-Making", "celeba": "mmlab.ie.cuhk.edu.hk/projects/CelebA.html"}


def fails(cfg, *fragments) -> str:
    """Building ``cfg`` raises a DatasetError (a UserInputError) whose message has every fragment."""
    with pytest.raises(DatasetError) as info:
        build_dataset(cfg)
    msg = str(info.value)
    assert isinstance(info.value, UserInputError)
    assert "expected" in msg and "found" in msg, msg
    if cfg["name"] in SOURCE:
        assert SOURCE[cfg["name"]] in msg, msg
    for fragment in fragments:
        assert str(fragment) in msg, msg
    return msg


@pytest.mark.parametrize("name, file", [("shapes3d", "3dshapes.h5"), ("mpi3d", "mpi3d_toy.npz"), ("dsprites", "dsprites.npz"),
                                        ("cars3d", "cars"), ("celeba", "celeba")])
def test_missing_file(tmp_path, name, file):
    fails({"name": name, "path": str(tmp_path / file)}, tmp_path / file, "no such")


def test_missing_path_setting():
    fails({"name": "shapes3d"}, "data.path", "3dshapes.h5")


def test_unknown_dataset_name():
    with pytest.raises(DatasetError, match="synth-shapes3d"):
        build_dataset({"name": "shapes4d"})


def test_shapes3d_without_labels(tmp_path):
    with h5py.File(tmp_path / "3dshapes.h5", "w") as fh:
        fh["images"] = np.zeros((4, 64, 64, 3), np.uint8)
    fails({"name": "shapes3d", "path": str(tmp_path / "3dshapes.h5")}, "'labels'", "keys ['images']")


def test_shapes3d_float_images(tmp_path):
    write_shapes3d(tmp_path / "3dshapes.h5", images=np.zeros((96, 64, 64, 3), np.float32))
    fails({"name": "shapes3d", "path": str(tmp_path / "3dshapes.h5")}, "uint8", "float32")


def test_shapes3d_labels_that_are_no_grid(tmp_path):
    labels = np.random.default_rng(0).random((96, 6))
    write_shapes3d(tmp_path / "3dshapes.h5", labels=labels)
    fails({"name": "shapes3d", "path": str(tmp_path / "3dshapes.h5")}, "every combination", "96 rows")


def test_truncated_h5(tmp_path):
    write_shapes3d(tmp_path / "3dshapes.h5")
    data = (tmp_path / "3dshapes.h5").read_bytes()
    (tmp_path / "3dshapes.h5").write_bytes(data[: len(data) // 3])
    fails({"name": "shapes3d", "path": str(tmp_path / "3dshapes.h5")}, "truncated")


def test_mpi3d_wrong_key(tmp_path):
    write_mpi3d(tmp_path / "mpi3d_toy.npz", key="imgs")
    fails({"name": "mpi3d", "path": str(tmp_path / "mpi3d_toy.npz")}, "'images'", "arrays ['imgs']")


def test_mpi3d_wrong_shape(tmp_path):
    write_mpi3d(tmp_path / "mpi3d_toy.npz", images=np.zeros((48, 64, 64), np.uint8))
    fails({"name": "mpi3d", "path": str(tmp_path / "mpi3d_toy.npz")}, "(N, H, W, C)", "(48, 64, 64)")


def test_mpi3d_unknown_image_count(tmp_path):
    write_mpi3d(tmp_path / "mpi3d_toy.npz", n=48)
    fails({"name": "mpi3d", "path": str(tmp_path / "mpi3d_toy.npz")}, "1,036,800", "48 images")
    fails({"name": "mpi3d", "path": str(tmp_path / "mpi3d_toy.npz"), "factor_sizes": [2, 2, 2, 1, 1, 3, 4]}, "[2, 2, 2, 1, 1, 3, 4]")


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_npz(tmp_path, keep):
    """Cut in the data (zip directory gone) or just before the end."""
    write_mpi3d(tmp_path / "mpi3d_toy.npz", n=48)
    data = (tmp_path / "mpi3d_toy.npz").read_bytes()
    (tmp_path / "mpi3d_toy.npz").write_bytes(data[: int(len(data) * keep)])
    fails({"name": "mpi3d", "path": str(tmp_path / "mpi3d_toy.npz"), "factor_sizes": [2, 2, 1, 1, 1, 3, 4]}, "mpi3d_toy.npz")


def test_truncated_npy(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((24, 32, 32, 3), np.uint8))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[:-100])
    fails({"name": "arrays", "path": str(tmp_path / "x.npy"), "factor_sizes": [24]}, "x.npy", "truncated")


def test_dsprites_missing_classes_and_wrong_images(tmp_path):
    np.savez(tmp_path / "d.npz", imgs=np.zeros((4, 64, 64), np.uint8))
    fails({"name": "dsprites", "path": str(tmp_path / "d.npz")}, "'latents_classes'", "arrays ['imgs']")
    write_dsprites(tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as npz:
        parts = {k: npz[k] for k in ("imgs", "latents_classes", "latents_values")}
    parts["imgs"] = np.zeros((48, 64, 64, 3), np.uint8)
    np.savez(tmp_path / "bad.npz", **parts)
    fails({"name": "dsprites", "path": str(tmp_path / "bad.npz"), "cache_dir": str(tmp_path)}, "(N, H, W)", "(48, 64, 64, 3)")


def test_cars3d_wrong_shape_and_dtype(tmp_path):
    write_cars3d(tmp_path / "a", num_cars=1, shape=(32, 32, 3, 24, 3))
    fails({"name": "cars3d", "path": str(tmp_path / "a")}, "car_000_mesh.mat", "(128, 128, 3, 24, 4)", "(32, 32, 3, 24, 3)")
    write_cars3d(tmp_path / "b", num_cars=1, shape=(16, 16, 3, 24, 4), dtype=np.float64)
    fails({"name": "cars3d", "path": str(tmp_path / "b")}, "uint8", "float64")
    (tmp_path / "c").mkdir()
    fails({"name": "cars3d", "path": str(tmp_path / "c")}, "no .mat file")


def test_cars3d_truncated_mat(tmp_path):
    write_cars3d(tmp_path / "cars", num_cars=1, shape=(16, 16, 3, 24, 4))
    mat = tmp_path / "cars" / "car_000_mesh.mat"
    mat.write_bytes(mat.read_bytes()[:5000])
    fails({"name": "cars3d", "path": str(tmp_path / "cars")}, "car_000_mesh.mat", "truncated")


def test_celeba_bad_attribute_file(tmp_path):
    write_celeba(tmp_path / "celeba", n=3)
    attr = tmp_path / "celeba" / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    attr.write_text("\n".join(lines[:-1]) + "\n")  # truncated: a line missing
    fails({"name": "celeba", "path": str(tmp_path / "celeba")}, "list_attr_celeba.txt", "3 image lines", "found 2")
    attr.write_text("\n".join([lines[0], " ".join(lines[1].split()[:39])] + lines[2:]) + "\n")
    fails({"name": "celeba", "path": str(tmp_path / "celeba")}, "40 attribute names", "found 39")


def test_arrays_needs_labels_or_sizes(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros((6, 8, 8, 3), np.uint8))
    fails({"name": "arrays", "path": str(tmp_path / "x.npz")}, "labels_key or data.factor_sizes")
    fails({"name": "arrays", "path": str(tmp_path / "x.npz"), "factor_sizes": [4, 2]}, "8 images", "6 images")


def test_cli_prints_the_message_without_traceback(tmp_path, capsys):
    rc = main(["data", "info", "--dataset", "mpi3d", "--path", str(tmp_path / "nope.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "nope.npz" in err and "rr-learning" in err


def test_unwritable_cache_folder_for_a_compressed_file(tmp_path):
    write_mpi3d(tmp_path / "mpi3d_real.npz", n=48, compressed=True)
    (tmp_path / "a_file").write_text("")  # a folder inside a file cannot be created, even by root
    fails({"name": "mpi3d", "path": str(tmp_path / "mpi3d_real.npz"), "factor_sizes": [2, 2, 1, 1, 1, 3, 4],
           "cache_dir": str(tmp_path / "a_file" / "cache")}, "writable cache location", "data.cache_dir")


def test_cache_that_does_not_fit_on_disk(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    write_mpi3d(tmp_path / "mpi3d_real.npz", n=48, compressed=True)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    fails({"name": "mpi3d", "path": str(tmp_path / "mpi3d_real.npz"), "factor_sizes": [2, 2, 1, 1, 1, 3, 4]},
          "writable cache location", "GiB free")


@pytest.mark.parametrize("poison, found", [
    (lambda x: x.__setitem__((5, 0, 3, 3), np.nan), "1 images with NaN and 0 with inf values (the first is row 5)"),
    (lambda x: x.__setitem__((2, 0, 0, 0), np.inf), "0 images with NaN and 1 with inf values (the first is row 2)"),
    (lambda x: x.__imul__(255.0), "0..255 floats: divide by 255"),
    (lambda x: x.__isub__(0.5), "values from -0.4997 to 0.4972"),
])
def test_float_images_must_be_finite_and_in_0_1(tmp_path, poison, found):
    images = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    poison(images)
    for file in ("x.npz", "x.h5"):
        if file.endswith(".npz"):
            np.savez(tmp_path / file, images=images)
        else:
            with h5py.File(tmp_path / file, "w") as fh:
                fh["images"] = images
        cfg = {"name": "arrays", "path": str(tmp_path / file), "factor_sizes": [6], "resolution": 8}
        fails(cfg, tmp_path / file, "finite floats in [0, 1]", found)


def test_float_images_are_scanned_in_pieces(tmp_path):
    from ldm_dis.data.storage import open_array
    from ldm_dis.data.stored import check_float_images

    images = np.zeros((10, 4, 4), np.float64)
    images[9, 1, 1] = np.nan  # in the last piece of 3 rows
    np.save(tmp_path / "x.npy", images)
    with pytest.raises(DatasetError, match="the first is row 9"):
        check_float_images(open_array(tmp_path / "x.npy", "", "arrays"), "arrays", chunk_bytes=3 * 16 * 8)
