import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny tensors: one thread avoids contention on shared 2-core machines (and keeps timings stable)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
