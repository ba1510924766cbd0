"""Fixtures shared by the test files (model and data stand-ins live in _factories.py)."""
import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each pytest-xdist worker (setup.cfg runs one per core, at most 4) computes on one thread, and so do the
    # kernels and servers it starts (nbval, Voila): more threads than cores spin and run far slower.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """Small problems run on one torch thread (several threads on a busy machine spin and run far slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
