"""Training order is a function of (seed, step): resumable mid-epoch, a permutation per pass, split by rank."""

import itertools

import pytest

from ldm_dis.errors import UserInputError
from ldm_dis.training.data_order import StepBatchSampler


def take(sampler, n):
    return [list(b) for b in itertools.islice(iter(sampler), n)]


def test_each_pass_is_a_permutation_and_passes_differ():
    batches = take(StepBatchSampler(10, 3, seed=0), 6)  # 3 steps per pass, last image of each pass dropped
    first, second = sum(batches[:3], []), sum(batches[3:], [])
    assert len(set(first)) == 9 and len(set(second)) == 9
    assert first != second


def test_starting_at_a_step_gives_what_an_uninterrupted_run_sees():
    straight = take(StepBatchSampler(10, 3, seed=7), 8)
    assert take(StepBatchSampler(10, 3, seed=7, start_step=5), 3) == straight[5:]
    assert take(StepBatchSampler(10, 3, seed=8), 8) != straight


def test_processes_split_each_global_batch():
    whole = take(StepBatchSampler(12, 4, seed=1), 5)
    parts = [take(StepBatchSampler(12, 4, seed=1, process_index=r, num_processes=2), 5) for r in range(2)]
    assert [a + b for a, b in zip(*parts)] == whole


def test_bad_batch_sizes_are_explained():
    with pytest.raises(UserInputError, match="divisible by the number of processes"):
        StepBatchSampler(12, 5, seed=0, num_processes=2)
    with pytest.raises(UserInputError, match="larger than the dataset"):
        StepBatchSampler(3, 4, seed=0)
