"""Training tests train on one thread, as `make models` does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small nets gain little from a second thread on a quiet machine, and on a busy one two threads spend
    their time waiting for each other: the image fixture trained in 56 s on one thread at load 26, and
    had not finished in 300 s on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
