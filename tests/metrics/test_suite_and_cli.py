"""evaluate(), the registry, codes tables, vector units, and the `ldm-dis evaluate` command."""

import json

import numpy as np
import pytest

from conftest import AlignedCodes, FactorImageDataset
from ldm_dis.cli import main
from ldm_dis.errors import UserInputError
from ldm_dis.metrics import METRICS, CodeTable, UnitPCA, evaluate
from ldm_dis.metrics.suite import FAST_PROTOCOL

TINY = {"factorvae": {"num_variance_estimate": 500, "num_train": 100, "num_eval": 100},
        "mig": {"num_train": 500}, "infomec": {"num_points": 400}}


def test_registry_names_match_config_names():
    assert list(METRICS) == ["factorvae", "dci", "mig", "sap", "modularity", "infomec", "tad", "downstream", "fid"]
    assert set(FAST_PROTOCOL) == set(METRICS)


def test_same_seed_same_numbers_and_metric_order_does_not_matter(small_dataset):
    rep = AlignedCodes(3, rotate=True)
    a = evaluate(small_dataset, rep, ["mig", "factorvae"], seed=4, n_jobs=1, protocol=TINY)
    b = evaluate(small_dataset, rep, ["factorvae", "mig"], seed=4, n_jobs=1, protocol=TINY)
    c = evaluate(small_dataset, rep, ["mig"], seed=5, n_jobs=1, protocol=TINY)
    assert a["scores"] == b["scores"]
    assert a["scores"]["mig"] != c["scores"]["mig"]
    assert a["preset"] == "standard"


def test_unknown_names_fail_with_nearest(small_dataset):
    with pytest.raises(UserInputError, match="did you mean 'infomec'"):
        evaluate(small_dataset, AlignedCodes(3), ["infomc"], seed=0)
    with pytest.raises(UserInputError, match="did you mean 'num_train'"):
        evaluate(small_dataset, AlignedCodes(3), ["mig"], seed=0, protocol={"mig": {"num_trian": 5}})


def test_fid_is_skipped_with_a_reason(small_dataset, monkeypatch):
    monkeypatch.delenv("LDM_DIS_INCEPTION_WEIGHTS", raising=False)
    out = evaluate(small_dataset, AlignedCodes(3), ["fid"], seed=0)
    assert "Inception weights" in out["skipped"]["fid"] and out["scores"] == {}


def test_unit_pca_recovers_each_units_direction_with_fixed_sign():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(500, 2))  # one scalar per unit
    dirs = np.linalg.qr(rng.normal(size=(8, 8)))[0][:2]  # (N=2, D=8) unit directions
    codes = t[:, :, None] * dirs[None] * 3 + 0.01 * rng.normal(size=(500, 2, 8))
    scores = UnitPCA().fit(codes).transform(codes)
    for i in range(2):
        assert abs(np.corrcoef(scores[:, i], t[:, i])[0, 1]) > 0.999
    again = UnitPCA().fit(-codes[::-1]).components_  # sign pinned: largest entry positive
    assert np.all(np.abs(again).argmax(1) == np.abs(UnitPCA().fit(codes).components_).argmax(1))
    assert np.all(again[np.arange(2), np.abs(again).argmax(1)] > 0)


def test_vector_units_are_reduced_before_scalar_metrics(small_dataset):
    def vector_rep(images):  # (n, 3 units, 4 values): each unit a rank-1 embedding of one factor
        z = AlignedCodes(3)(images)
        return z[:, :, None] * np.array([1.0, -2.0, 0.5, 0.0])

    out = evaluate(small_dataset, vector_rep, ["factorvae", "mig"], seed=0, n_jobs=1, protocol=TINY)
    assert out["scores"]["factorvae"]["eval_accuracy"] == 1.0
    assert out["scores"]["mig"]["discrete_mig"] > 0.8


def test_code_table_lookup_and_partial_tables():
    ds = FactorImageDataset((3, 4, 2))
    grid = np.stack(np.unravel_index(np.arange(24), (3, 4, 2)), axis=1)
    codes = AlignedCodes(3)(ds.images_from_factors(grid))
    table = CodeTable(codes[::-1], grid[::-1] + 10)  # any row order, any factor values
    assert table.complete and table.factor_sizes == [3, 4, 2]
    np.testing.assert_array_equal(table.codes_from_factors(grid[:5]), codes[:5])
    partial = CodeTable(codes[:12], grid[:12])
    assert not partial.complete
    batches = partial.sample_fixed_factor_batches(np.array([2, 1, 2]), 16, np.random.default_rng(0))
    rows = np.arange(3)
    assert np.all(batches[rows, :, [2, 1, 2]] == batches[rows, :1, [2, 1, 2]])
    with pytest.raises(ValueError, match="not in the codes table"):
        partial.codes_from_factors(grid[12:13])


def test_cli_evaluate_codes_writes_json_and_heatmaps(tmp_path, capsys):
    ds = FactorImageDataset((3, 4, 2), factor_names=["colour", "size", "shape"])
    grid = np.stack(np.unravel_index(np.arange(24), (3, 4, 2)), axis=1)
    codes_file = tmp_path / "codes.npz"
    np.savez(codes_file, codes=AlignedCodes(3)(ds.images_from_factors(grid)), factors=grid,
             factor_names=np.array(ds.factor_names))
    out = tmp_path / "eval"
    rc = main(["evaluate", "--codes", str(codes_file), "--metrics", "infomec", "dci", "mig", "--fast",
               "--jobs", "1", "--set", "dci.num_train=150", "--set", "dci.num_test=50", "--set", "infomec.num_points=500", "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["preset"] == "fast" and result["factor_names"] == ["colour", "size", "shape"]
    assert result["scores"]["dci"]["disentanglement"] > 0.9
    assert (out / "nmi.png").stat().st_size > 0 and (out / "dci_importance.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "preset: fast" in out and "{" not in out  # tables, not Python dicts
    assert "num_train 150 (--set)" in out  # the sample sizes used, overrides marked
    assert any(line.split()[:2] == ["dci", "disentanglement"] for line in out.splitlines())


def test_cli_evaluate_needs_exactly_one_source(tmp_path, capsys):
    assert main(["evaluate", "--metrics", "mig"]) == 2
    assert "a RUN folder, or --codes" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--codes", str(tmp_path / "c.npz")]) == 2


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, codes=np.zeros((4, 2)))
    assert main(["evaluate", "--codes", str(bad), "--metrics", "mig"]) == 2
    assert "lacks ['factors']" in capsys.readouterr().err


def test_cli_evaluate_checkpoint_uses_load_evaluation_source(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    import ldm_dis.training.export as export
    from ldm_dis.config.schema import Config

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    seen = []

    def fake_load(checkpoint, data_path=None):
        seen.append(checkpoint)
        return export.EvaluationSource(OmegaConf.structured(Config), FactorImageDataset((3, 4, 2)), AlignedCodes(3), None, run_dir)

    monkeypatch.setattr(export, "load_evaluation_source", fake_load)
    assert main(["evaluate", str(run_dir), "--metrics", "mig", "--jobs", "1",
                 "--set", "mig.num_train=300"]) == 0
    result = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert seen == [run_dir] and result["scores"]["mig"]["discrete_mig"] > 0.8
    assert result["preset"] == "standard" and result["protocol_overrides"] == {"mig": {"num_train": 300}}
