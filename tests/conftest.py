"""Shared test fixtures: where the reference data lives, a small synthetic dataset."""
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHARED = os.environ.get('UNILIFT_SHARED', os.path.join(ROOT, '..', 'shared'))
REFERENCE = os.path.join(SHARED, 'reference')


@pytest.fixture(autouse=True, scope='session')
def single_thread():
    """One torch thread for the whole suite: the models under test are small, and two busy
    threads on two shared cores are slower than one."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def reference_dir():
    """../shared/reference (override with UNILIFT_SHARED)."""
    if not os.path.isdir(REFERENCE):
        pytest.fail(f'reference data not found at {REFERENCE}; set UNILIFT_SHARED')
    return REFERENCE


def load_fixture(name):
    """A model fixture of ../shared/reference/models (it holds numpy objects: full unpickling)."""
    import torch
    return torch.load(os.path.join(REFERENCE, 'models', name), weights_only=False)
