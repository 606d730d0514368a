"""Shared test settings."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # fixture-builder modules beside the tests


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small inputs: one intra-op thread is faster and avoids spin-waiting on 2 shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
