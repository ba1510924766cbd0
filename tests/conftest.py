"""Fixtures shared by the test files (model and data stand-ins live in _factories.py)."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Small problems run on one torch thread (several threads on a busy machine spin and run far slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
