"""FactorVAE score: vote rule pinned by hand, known-answer codes, degenerate codes, the reference."""

import numpy as np
import pytest

import dislib_reference as reference
from conftest import AlignedCodes, FactorImageDataset
from ldm_dis.metrics.factorvae import factorvae, factorvae_from_batches, factorvae_metric, factorvae_votes

SIZES = dict(num_variance_estimate=1000, num_train=300, num_eval=200)


def test_votes_take_argmin_of_normalized_variance_over_active_dims():
    # batch 0 fixes factor 1: dim 2 has the smallest variance, but it is inactive -> dim 0 wins
    batch = np.array([[[0.0, 5.0, 1.0], [0.2, -5.0, 1.0], [0.4, 0.0, 1.0]]])
    votes = factorvae_votes(batch, np.array([1]), np.array([1.0, 1.0, 1.0]), np.array([True, True, False]), 2)
    np.testing.assert_array_equal(votes, [[0, 0, 0], [1, 0, 0]])
    # normalization: dim 1's raw variance is larger but its global variance is far larger still
    votes = factorvae_votes(batch, np.array([0]), np.array([1.0, 1e6, 1.0]), np.array([True, True, False]), 2)
    np.testing.assert_array_equal(votes, [[0, 1, 0], [0, 0, 0]])


def test_majority_vote_accuracy_by_hand():
    # 4 training batches: dim 0 voted twice for factor 0 and once for factor 1; dim 1 once for factor 1
    d = np.array([[1.0, 0.0], [-1.0, 0.0]])  # a batch whose dim 1 is constant -> vote for dim 1
    e = d[:, ::-1]  # a batch whose dim 0 is constant -> vote for dim 0
    train = np.stack([e, e, e, d])
    out = factorvae_from_batches(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 3.0]]), train, np.array([0, 0, 1, 1]),
                                 train, np.array([0, 0, 1, 1]), num_factors=2)
    # classifier: dim 0 -> factor 0 (2 votes vs 1), dim 1 -> factor 1; 3 of 4 votes agree
    assert out["train_accuracy"] == pytest.approx(0.75)
    assert out["eval_accuracy"] == pytest.approx(0.75)


def test_aligned_codes_score_one_and_rotation_lower(shapes_like):
    aligned = factorvae_metric(shapes_like, AlignedCodes(6), np.random.default_rng(0), **SIZES)
    rotated = factorvae_metric(shapes_like, AlignedCodes(6, rotate=True), np.random.default_rng(0), **SIZES)
    assert aligned["train_accuracy"] == 1.0 and aligned["eval_accuracy"] == 1.0
    assert rotated["eval_accuracy"] < 0.9


def test_constant_and_duplicated_codes_do_not_crash(small_dataset):
    rng = np.random.default_rng(0)
    const = factorvae_metric(small_dataset, lambda im: np.ones((len(im), 4)), rng, **SIZES)
    assert const == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}
    dup = factorvae_metric(small_dataset, lambda im: np.repeat(AlignedCodes(3)(im), 2, axis=1), rng, **SIZES)
    assert dup["eval_accuracy"] == 1.0 and dup["num_active_dims"] == 6.0


def test_pruned_dims_never_vote(small_dataset):
    # dim 0 carries factor 0 at std < 0.05: pruned, so factor 0's batches vote elsewhere
    def rep(images):
        z = AlignedCodes(3, noise=0.0)(images)
        return np.concatenate([0.01 * z[:, :1], z[:, 1:], np.random.default_rng(0).normal(size=(len(z), 1))], 1)

    out = factorvae_metric(small_dataset, rep, np.random.default_rng(1), **SIZES)
    assert out["num_active_dims"] == 3.0


def test_single_valued_factor_is_never_fixed():
    ds = FactorImageDataset((4, 1, 3))
    out = factorvae_metric(ds, AlignedCodes(3), np.random.default_rng(0), **SIZES)
    assert out["eval_accuracy"] == 1.0


def test_codes_table_gives_same_answer_as_dataset(shapes_like):
    grid = np.stack(np.unravel_index(np.arange(4 * 5 * 3), (4, 5, 3)), axis=1)
    ds = FactorImageDataset((4, 5, 3))
    codes = AlignedCodes(3)(ds.images_from_factors(grid))
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    from_table = factorvae(codes, grid, rng_a, **SIZES)
    from_dataset = factorvae_metric(ds, AlignedCodes(3), rng_b, **SIZES)
    assert from_table == from_dataset  # a full grid is sampled exactly like the dataset


def test_agrees_with_reference_within_sampling_noise(shapes_like):
    rep = AlignedCodes(6, rotate=True)
    ours = factorvae_metric(shapes_like, rep, np.random.default_rng(0), **SIZES)
    theirs = reference.factor_vae(shapes_like, rep, np.random.RandomState(0), **SIZES)
    # 200 evaluation votes: binomial standard error about 0.03
    assert ours["eval_accuracy"] == pytest.approx(theirs["eval_accuracy"], abs=0.1)
