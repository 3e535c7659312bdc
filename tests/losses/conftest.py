"""Loss tests run on tiny tensors: single-threaded, since a second intra-op thread only waits on a shared 2-core CPU."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
