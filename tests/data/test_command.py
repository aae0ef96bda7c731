"""``ldm-dis data show / info / prepare``."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ldm_dis.cli import main
from ldm_dis.commands.data import traversal_rows
from ldm_dis.data import build_dataset
from ldm_dis.data.storage import RawArray

from .writers import write_celeba, write_shapes3d


def test_show_writes_samples_and_one_traversal_row_per_factor(tmp_path, capsys):
    out = tmp_path / "s.png"
    assert main(["data", "show", "--dataset", "synth-dsprites", "--resolution", "32", "--out", str(out), "--columns", "8"]) == 0
    assert str(out) in capsys.readouterr().out
    height, width = Image.open(out).size[::-1]
    # 2 sample rows + 5 factor rows of 64-pixel cells (32x32 enlarged twice), plus the title line
    assert 7 * 64 < height < 7 * 64 + 80 and width > 8 * 64


def test_traversal_rows_step_one_factor_each():
    ds = build_dataset({"name": "synth-dsprites", "resolution": 32})
    images, labels = traversal_rows(ds, 8, np.random.default_rng(0))
    assert labels == ["shape (all 3)", "scale (all 6)", "orientation (8 of 40)", "pos_x (8 of 32)", "pos_y (8 of 32)"]
    rows = images.reshape(5, 8, -1)
    shown = [int(np.isfinite(r).all(axis=1).sum()) for r in rows]
    assert shown == [3, 6, 8, 8, 8] and np.isnan(rows[0, 3:]).all()  # blank cells after the last value
    for row, n in zip(rows, shown):  # consecutive cells differ
        assert (np.abs(np.diff(row[:n], axis=0)).max(axis=1) > 0.2).all()


def test_show_for_a_file_and_for_celeba(tmp_path):
    write_shapes3d(tmp_path / "3dshapes.h5")
    assert main(["data", "show", "--dataset", "shapes3d", "--path", str(tmp_path / "3dshapes.h5"), "--out", str(tmp_path / "a.png")]) == 0
    write_celeba(tmp_path / "celeba", n=5)
    assert main(["data", "show", "--dataset", "celeba", "--path", str(tmp_path / "celeba"), "--out", str(tmp_path / "c.png"),
                 "--columns", "3"]) == 0
    assert Image.open(tmp_path / "c.png").size[1] < 3 * 64 + 80  # samples only: no factor grid to traverse


def test_info_prints_names_sizes_length_and_file(tmp_path, capsys):
    write_shapes3d(tmp_path / "3dshapes.h5")
    assert main(["data", "info", "--dataset", "shapes3d", "--path", str(tmp_path / "3dshapes.h5")]) == 0
    out = capsys.readouterr().out
    assert "96 images" in out and "3dshapes.h5" in out and "orientation" in out and "(96, 64, 64, 3)" in out


def test_prepare_converts_h5_to_npy_cache(tmp_path, capsys):
    write_shapes3d(tmp_path / "3dshapes.h5")
    cache = tmp_path / "cache"
    assert main(["data", "prepare", "--dataset", "shapes3d", "--path", str(tmp_path / "3dshapes.h5"), "--cache-dir", str(cache)]) == 0
    assert (cache / "3dshapes.images.npy").is_file() and "wrote" in capsys.readouterr().out
    ds = build_dataset({"name": "shapes3d", "path": str(tmp_path / "3dshapes.h5"), "cache_dir": str(cache)})
    assert isinstance(ds.source, RawArray)
    assert main(["data", "prepare", "--dataset", "shapes3d", "--path", str(tmp_path / "3dshapes.h5"), "--cache-dir", str(cache)]) == 0
    assert "nothing to prepare" in capsys.readouterr().out
