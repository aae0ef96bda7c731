"""Downstream efficiency and FID (Frechet distance, local-weights-only feature network)."""

import numpy as np
import pytest
import torch

from conftest import AlignedCodes, FactorImageDataset
from ldm_dis.metrics import MetricSkipped, frechet_distance
from ldm_dis.metrics.downstream import downstream, downstream_metric
from ldm_dis.metrics.fid import fid_from_features, fid_metric


def test_downstream_reports_accuracies_and_ratios(small_dataset):
    out = downstream_metric(small_dataset, AlignedCodes(3), np.random.default_rng(0),
                            train_sizes=(30, 200), num_test=100, n_jobs=1)
    assert set(out) == {"acc_30", "acc_200", "ratio_30"}
    assert out["acc_200"] > 0.95
    assert out["ratio_30"] == pytest.approx(out["acc_30"] / out["acc_200"])


def test_downstream_one_class_subset_and_constant_factor():
    factors = np.stack([np.r_[np.zeros(5), np.ones(45)], np.full(50, 3)], axis=1).astype(int)
    codes = factors[:, :1] + 0.01 * np.random.default_rng(0).normal(size=(50, 1))
    out = downstream(codes, factors, codes, factors, train_sizes=(3, 50), n_jobs=1)
    # the first 3 rows hold one class: that class is predicted (5 of 50 right), no crash
    assert out["acc_3"] == pytest.approx(0.1) and out["acc_50"] == 1.0


def test_frechet_distance_by_hand():
    # 1-D: (0 - 2)^2 + 1 + 4 - 2 sqrt(1 * 4) = 5
    assert frechet_distance(np.zeros(1), np.eye(1), np.full(1, 2.0), 4 * np.eye(1)) == pytest.approx(5.0)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(300, 5))
    assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-6)


class _FakeInception(torch.nn.Module):
    """Stands in for the TorchScript Inception file: uint8 (n, 3, H, W) -> flat features."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return x.float().flatten(1)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_fid_skips_without_weights_and_runs_with_a_local_file(tmp_path, monkeypatch):
    ds = FactorImageDataset((3, 4, 2))
    monkeypatch.delenv("LDM_DIS_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(MetricSkipped, match="no Inception weights"):
        fid_metric(ds, None, np.random.default_rng(0))
    not_a_model = tmp_path / "inception.pt"
    not_a_model.write_bytes(b"not torchscript")
    with pytest.raises(MetricSkipped, match="not a TorchScript"):
        fid_metric(ds, None, np.random.default_rng(0), weights=str(not_a_model),
                   generate_fn=lambda n, rng: ds.images_from_factors(ds.sample_factors(n, rng)))
    weights = tmp_path / "fake_inception.pt"
    torch.jit.script(_FakeInception()).save(str(weights))

    def same(n, rng):
        return ds.images_from_factors(ds.sample_factors(n, rng))

    def shifted(n, rng):
        return np.clip(same(n, rng) + 0.5, -1, 1)

    close = fid_metric(ds, None, np.random.default_rng(0), num_points=600, weights=str(weights), generate_fn=same)
    far = fid_metric(ds, None, np.random.default_rng(0), num_points=600, weights=str(weights), generate_fn=shifted)
    assert np.isfinite(close["fid"]) and far["fid"] > 10 * close["fid"]
