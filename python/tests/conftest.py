import gc
import os

import pytest


def _ours():
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith(("shmpy-", "psm_"))}
    except FileNotFoundError:
        return set()


@pytest.fixture(autouse=True, scope="module")
def no_leak():
    """Every module leaves /dev/shm as it found it (after collection)."""
    before = _ours()
    yield
    gc.collect()
    left = _ours() - before
    assert not left, f"left in /dev/shm: {sorted(left)}"
