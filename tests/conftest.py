"""Fixtures shared by the test files (model and data stand-ins live in _factories.py), and the order of files."""
import os
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each pytest-xdist worker (setup.cfg runs one per core, at most 4) computes on one thread, and so do the
    # kernels and servers it starts (nbval, Voila): more threads than cores spin and run far slower.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# pytest-xdist hands out whole files in collection order (setup.cfg turns off its reordering by test count): the
# files that take minutes (pytest --durations) go first, heaviest first, so that no worker is left alone with one of
# them at the end while the others idle.  The front ends (every example notebook, twice) are split into two files
# of about equal time, one for each worker.
HEAVY_FIRST = ("tests/browser/test_frontends_part1.py", "tests/browser/test_frontends_part2.py",
               "tests/test_inversion.py", "tests/test_model_quality.py",
               "tests/browser/test_talk_app.py", "tests/browser/test_paint_app.py",
               "tests/browser/test_classifier_widgets.py", "tests/browser/test_feature_widgets.py",
               "tests/test_inception.py", "tests/browser/test_word_widgets.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}

    def key(item):
        path = Path(str(item.fspath)).resolve()
        try:
            return rank.get(path.relative_to(config.rootpath.resolve()).as_posix(), len(rank))
        except ValueError:
            return len(rank)

    items.sort(key=key)  # stable: within a file, and among the other files, the order stays


@pytest.fixture
def one_thread():
    """Small problems run on one torch thread (several threads on a busy machine spin and run far slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
