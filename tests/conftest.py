"""Shared test settings. Fixture builders live in the ``tests.fixtures`` package."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small inputs: one intra-op thread is faster and avoids spin-waiting on 2 shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
