"""Fixtures shared by the project's own tests."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch

from pytest_scaling.session import ScalingSession
from pytest_scaling.tiers import TIERS


@pytest.fixture(scope="module")
def one_thread_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScalingSession]:
    """A cached seed-0 smoke-tier session for one test module, so checks that share a sweep train it once.

    Trains on one thread meanwhile: on 2 busy cores the GPT coordinate check took 32 s on two threads, 3.4 s on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    scaling = ScalingSession(tier=TIERS["smoke"], device=torch.device("cpu"), seeds=[0],
                             cache_dir=tmp_path_factory.mktemp("cache"))
    yield scaling
    scaling.close()
    torch.set_num_threads(threads)
