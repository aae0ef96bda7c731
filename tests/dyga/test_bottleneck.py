"""DyGABottleneck: identity until fitted, all state in fixed-shape buffers that survive state_dict and
safetensors round trips exactly, inspectable fit files, and the same anchors from worker processes."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from ldm_dis.bottlenecks import build_bottleneck
from ldm_dis.bottlenecks.dyga import DyGABottleneck
from ldm_dis.config.schema import BottleneckConfig
from ldm_dis.errors import UserInputError

N_UNITS, DIM = 3, 8


def _unit_features(clusters, n_per_cluster=150):
    """(n, N, D): unit i has i + 2 clusters."""
    units = []
    for i in range(N_UNITS):
        X, _, _ = clusters(i + 2, n_per_cluster * 6 // (i + 2), dim=DIM, intrinsic_dim=2, seed=20 + i)
        units.append(X[:n_per_cluster * 3])
    return np.stack(units, axis=1)


def _fitted(clusters, **cfg):
    bn = DyGABottleneck(N_UNITS, DIM, num_workers=1, **cfg)
    log = bn.fit(_unit_features(clusters))
    return bn, log


def test_identity_before_the_first_fit_and_schedule():
    bn = DyGABottleneck(N_UNITS, DIM, fit_every_epochs=5)
    x = torch.randn(4, N_UNITS, DIM)
    assert not bn.is_fitted and bn.acts_on == "tokens"
    assert torch.equal(bn(x).value, x)
    # epoch = 0-based index of the epoch that just ended: fits after epochs 5, 10, ... (indices 4, 9)
    assert [e for e in range(12) if bn.should_fit(e)] == [4, 9]
    assert [e for e in range(3) if DyGABottleneck(1, 2).should_fit(e)] == [0, 1, 2]


@pytest.mark.parametrize("fitter", ["torch", "numpy"])
def test_fit_fills_fixed_shape_buffers_and_logs_k(clusters, fitter):
    bn = DyGABottleneck(N_UNITS, DIM, num_workers=1, k_max=16, fitter=fitter)
    shapes = {name: b.shape for name, b in bn.named_buffers()}
    dtypes = {name: b.dtype for name, b in bn.named_buffers()}
    features = _unit_features(clusters)
    log = bn.fit(torch.tensor(features) if fitter == "torch" else features)  # arrays or tensors
    assert {name: b.dtype for name, b in bn.named_buffers()} == dtypes
    assert {name: b.shape for name, b in bn.named_buffers()} == shapes
    assert bn.is_fitted and int(bn.num_fits) == 1
    k = bn.num_anchors
    assert [log[f"dyga/K_unit{i:02d}"] for i in range(N_UNITS)] == k.tolist()
    assert torch.all((k >= 2) & (k <= 16))
    for i in range(N_UNITS):  # padding: zero weight; fitted weights sum to 1
        assert torch.all(bn.weights[i, k[i]:] == 0)
        assert float(bn.weights[i].sum()) == pytest.approx(1.0, abs=1e-5)
    x = torch.tensor(_unit_features(clusters)[:5], dtype=torch.float32)
    out = bn(x).value
    assert out.shape == x.shape and not torch.equal(out, x)
    bn.eval()
    assert torch.equal(bn(x).value, bn(x).value)  # eval: deterministic argmax anchor
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert bn(x.bfloat16()).value.dtype == torch.bfloat16


def test_state_dict_and_safetensors_round_trip(clusters, tmp_path):
    bn, _ = _fitted(clusters)
    bn.eval()
    x = torch.tensor(_unit_features(clusters)[:7], dtype=torch.float32)
    expected = bn(x).value

    fresh = DyGABottleneck(N_UNITS, DIM, num_workers=1).eval()
    fresh.load_state_dict(bn.state_dict(), strict=True)
    assert fresh.is_fitted
    assert torch.equal(fresh(x).value, expected)

    save_file(bn.state_dict(), tmp_path / "dyga.safetensors")
    restored = DyGABottleneck(N_UNITS, DIM, num_workers=1).eval()
    restored.load_state_dict(load_file(tmp_path / "dyga.safetensors"), strict=True)
    for name, buf in bn.state_dict().items():
        assert torch.equal(restored.state_dict()[name], buf), name
    assert torch.equal(restored(x).value, expected)


def test_save_fit_writes_inspectable_files(clusters, tmp_path):
    bn, _ = _fitted(clusters)
    bn.save_fit(tmp_path / "dyga" / "fit_epoch0")
    arrays = np.load(tmp_path / "dyga" / "fit_epoch0.npz")
    summary = json.loads((tmp_path / "dyga" / "fit_epoch0.json").read_text())
    k = bn.num_anchors.tolist()
    assert summary["num_anchors"] == k == arrays["num_anchors"].tolist()
    assert [u["K"] for u in summary["units"]] == k
    assert arrays["means"].shape == (N_UNITS, bn.k_max, DIM)
    assert arrays["covariances"].shape == (N_UNITS, bn.k_max, DIM, DIM)
    for i in range(N_UNITS):  # feature units: the same mixture as the buffers describe
        mixture = bn.unit_mixture(i)
        np.testing.assert_allclose(arrays["means"][i, : k[i]], mixture.means_, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(arrays["covariances"][i, : k[i]], mixture.covariances_, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fitter", ["torch", "numpy"])
def test_anchors_sit_on_the_clusters(clusters, fitter):
    bn, _ = _fitted(clusters, random_split_prob=0.0, fitter=fitter)
    for i in range(N_UNITS):
        _, _, centers = clusters(i + 2, 900 // (i + 2), dim=DIM, intrinsic_dim=2, seed=20 + i)
        anchors = bn.unit_mixture(i).means_
        assert np.linalg.norm(centers[:, None] - anchors[None], axis=2).min(1).max() < 1.0


def test_fit_rows_draw_the_only_subsample(clusters):
    """At most max_samples training images per fit, a new draw each epoch; fit itself uses every row."""
    bn = DyGABottleneck(N_UNITS, DIM, max_samples=100, seed=4)
    assert bn.fit_rows(100, epoch=0) is None
    rows = bn.fit_rows(1000, epoch=2)
    np.testing.assert_array_equal(rows, np.sort(np.random.default_rng(6).choice(1000, 100, replace=False)))
    assert not np.array_equal(rows, bn.fit_rows(1000, epoch=3))
    features = _unit_features(clusters)  # 450 rows, more than max_samples
    capped, _ = _fitted(clusters, max_samples=100, fitter="numpy")
    uncapped = DyGABottleneck(N_UNITS, DIM, num_workers=1, fitter="numpy")
    uncapped.fit(features)
    for key, value in uncapped.state_dict().items():
        assert torch.equal(value, capped.state_dict()[key]), key


def test_fitter_choice_is_checked_at_construction():
    with pytest.raises(UserInputError, match="model.bottleneck.dyga.fitter='jax'"):
        DyGABottleneck(N_UNITS, DIM, fitter="jax")


def test_built_from_the_registry():
    cfg = OmegaConf.structured(BottleneckConfig(kind="dyga"))
    bn = build_bottleneck(cfg, num_units=N_UNITS, unit_dim=DIM)
    assert isinstance(bn, DyGABottleneck) and bn.means.shape == (N_UNITS, 32, DIM)


@pytest.mark.slow  # the workers' first start imports torch and scikit-learn: ~25 s on 2 shared cores
def test_worker_processes_give_the_same_anchors(clusters):
    feats = _unit_features(clusters)
    serial = DyGABottleneck(N_UNITS, DIM, num_workers=1, fitter="numpy")
    parallel = DyGABottleneck(N_UNITS, DIM, num_workers=2, fitter="numpy")
    serial.fit(feats)
    parallel.fit(feats)
    for name, buf in serial.state_dict().items():
        assert torch.equal(parallel.state_dict()[name], buf), name


def test_relu_tokens_with_exact_zeros_fit_and_align(clusters):
    """The released extractor's tokens are >= 0 and often exactly 0: a dead unit, a mostly-zero unit and
    zero coordinates fit and align with finite values and gradients."""
    features = np.maximum(_unit_features(clusters), 0).astype(np.float32)
    features[:, 2] = 0.0  # a dead unit: every token is 0
    features[: len(features) * 3 // 4, 1] = 0.0  # most tokens of unit 1 are 0
    assert (features[:, 0] == 0).any()
    bn = DyGABottleneck(N_UNITS, DIM, num_workers=1, k_init=3, k_max=6, em_iters=20)
    bn.fit(features)
    assert bn.num_anchors[2] == 1 and torch.isfinite(bn.means).all() and torch.isfinite(bn.variances).all()
    x = torch.tensor(features[::7][:64], requires_grad=True)
    for training in (True, False):
        bn.train(training)
        out = bn(x).value
        (out * torch.randn_like(out)).sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
        assert torch.equal(out[:, 2], x[:, 2])  # a dead unit's anchor is 0: nothing moves
        x.grad = None


def test_released_alignment_fits_on_min_max_normalized_features(clusters):
    from ldm_dis.bottlenecks.dyga.alignment import released_alignment

    features = _unit_features(clusters).astype(np.float32)
    bn, _ = _fitted(clusters, alignment="released", k_init=3, k_max=6)
    hi, lo = features.max(axis=(0, 2)), features.min(axis=(0, 2))  # per unit, over points and values
    np.testing.assert_allclose(bn.center.numpy(), np.repeat(hi[:, None], DIM, 1), rtol=1e-6)
    np.testing.assert_allclose(bn.scale.numpy(), hi - lo + 1e-6, rtol=1e-6)
    x = torch.tensor(features[:32])
    expect, _ = released_alignment(x, bn.means, bn.variances, bn.eigenvectors, bn.weights, lam=0.1)
    for training in (True, False):  # the released code aligns the same way in training and evaluation
        torch.testing.assert_close(bn.train(training)(x).value, expect)
    with pytest.raises(ValueError, match="alignment='gumbel'"):
        DyGABottleneck(N_UNITS, DIM, alignment="gumbel")
