"""Shared fixtures of the evaluation tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for the module's tests, restored afterwards. Opt in with
    ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    # tiny CPU workloads: intra-op threading only adds contention on a shared machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
