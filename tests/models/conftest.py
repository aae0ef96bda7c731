"""Tiny networks run fastest single-threaded, above all on a shared 2-core machine where two busy-waiting
threads per process oversubscribe the cores (measured 10x slower). Restored after each test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
