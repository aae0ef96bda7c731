"""Nothing read from a dataset file runs code: dSprites' pickled ``metadata`` member is never unpickled."""

from __future__ import annotations

import numpy as np
import pytest

from ldm_dis.cli import main
from ldm_dis.data import DatasetError, build_dataset

from .writers import write_dsprites


class WritesMarker:
    """Pickled as ``open(marker, "w")``: unpickling it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_dsprites_metadata_pickle_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "dsprites.npz"
    write_dsprites(path, metadata=WritesMarker(marker))
    with np.load(path, allow_pickle=True) as npz:  # the file really carries a live payload
        npz["metadata"]
    assert marker.exists()
    marker.unlink()

    ds = build_dataset({"name": "dsprites", "path": str(path), "cache_dir": str(tmp_path)})
    assert ds.factor_sizes == [3, 2, 2, 2, 2] and len(ds) == 48
    ds.images_at(np.arange(4))
    assert main(["data", "info", "--dataset", "dsprites", "--path", str(path), "--cache-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert not marker.exists()


def test_dsprites_label_array_of_objects_is_refused_not_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    write_dsprites(tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as npz:
        parts = {k: npz[k] for k in ("imgs", "latents_values")}
    parts["latents_classes"] = np.array(WritesMarker(marker), dtype=object)
    np.savez(tmp_path / "bad.npz", **parts)
    with pytest.raises(DatasetError, match="latents_classes.*Python objects"):
        build_dataset({"name": "dsprites", "path": str(tmp_path / "bad.npz"), "cache_dir": str(tmp_path)})
    assert not marker.exists()


def test_dsprites_classes_outside_the_release_sizes(tmp_path):
    write_dsprites(tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as npz:
        parts = {k: npz[k] for k in ("imgs", "latents_classes", "latents_values")}
    parts["latents_classes"][:, 1] += 2  # shapes 2..4: the release has 3 shapes
    np.savez(tmp_path / "bad.npz", **parts)
    with pytest.raises(DatasetError, match=r"shape \(column 1\) in 0\.\.2.*values 2\.\.4"):
        build_dataset({"name": "dsprites", "path": str(tmp_path / "bad.npz"), "cache_dir": str(tmp_path)})
