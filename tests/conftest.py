"""Shared test settings. Fixture builders live in the ``tests.fixtures`` package.

PyTorch is an optional extra: a test module that needs it starts with
``torch = pytest.importorskip("torch", reason=NEEDS_TORCH)``, so a plain ``pip install -e '.[dev]'``
runs every other test and reports those modules as skipped with that reason. PyAV (the [video] extra)
likewise: ``pytest.importorskip("av", reason=NEEDS_AV)`` or a ``skipif`` with ``NEEDS_AV``. ``.ci/run``
fails its second leg, which installs both extras, if any test still skips with either reason.
"""

import sys

import pytest


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small inputs: one intra-op thread is faster and avoids spin-waiting on 2 shared cores."""
    torch = sys.modules.get("torch")  # imported by the tests that need it; absent without the extra
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
