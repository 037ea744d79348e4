"""Fixtures shared by the project's own tests, and the knobs the margin study (benchmarks/margins.py) turns.

Tests whose verdict depends on training make their sessions with ``training_session``. Three environment variables
rerun those verdicts elsewhere without editing a test: ``SCALING_TEST_SEED_OFFSET`` shifts every seed (seed 0
becomes seed k), ``SCALING_TEST_THREADS`` sets torch's thread count (default 1), and ``SCALING_TEST_RECORDS`` names
a directory where each session's records are written when the test session ends, with the seeds and threads used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import pytest
import torch
# bf16 autocast and torch.compile import torch's compiler stack on first use, and its operator libraries register once
# per process: imported inside an in-process pytester run, it would be unloaded after it and fail to load again.
import torch._dynamo  # noqa: F401

from pytest_scaling.session import ScalingSession
from pytest_scaling.tiers import TIERS

SEED_OFFSET = int(os.environ.get("SCALING_TEST_SEED_OFFSET", "0"))
THREADS = int(os.environ.get("SCALING_TEST_THREADS", "1"))
_SESSIONS: list[ScalingSession] = []


def training_session(seeds: Sequence[int] = (0,), cache_dir: Path | None = None, tier: str = "smoke") -> ScalingSession:
    """A session for a verdict that depends on training: its seeds shifted by SCALING_TEST_SEED_OFFSET, its records
    kept for SCALING_TEST_RECORDS."""
    session = ScalingSession(tier=TIERS[tier], device=torch.device("cpu"), seeds=[s + SEED_OFFSET for s in seeds],
                             cache_dir=cache_dir)
    _SESSIONS.append(session)
    return session


@pytest.fixture(scope="session", autouse=True)
def _training_threads() -> Iterator[None]:
    """Train on SCALING_TEST_THREADS threads (default one: on 2 busy cores the GPT coordinate check took 32 s on two
    threads, 3.4 s on one), in the plugin's own runs too (its thread plan keeps OMP_NUM_THREADS), so that a verdict
    does not depend on how busy the machine was; write the training sessions' records at the end when
    SCALING_TEST_RECORDS asks for them."""
    threads, variable = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(THREADS)
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    yield
    torch.set_num_threads(threads)
    if variable is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = variable
    directory = os.environ.get("SCALING_TEST_RECORDS")
    if directory:
        records = [{**record, "seeds": session.seeds} for session in _SESSIONS for record in session.records]
        path = Path(directory) / f"records-{os.getpid()}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"seed_offset": SEED_OFFSET, "threads": THREADS, "records": records}))


@pytest.fixture(scope="module")
def one_thread_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScalingSession]:
    """A cached seed-0 smoke-tier training session for one test module, so checks that share a sweep train it once."""
    scaling = training_session(cache_dir=tmp_path_factory.mktemp("cache"))
    yield scaling
    scaling.close()
