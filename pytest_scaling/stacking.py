"""How the runs of one width are trained: all stacked, in stacked chunks, or one by one.

Stacking is not free: it wins big for small widths, where one run leaves the hardware idle, and
loses once a single run fills it. ``plan_chunk_size`` decides per width from a short timed
probe: for each candidate chunk size c it times one step and three steps of a c-run stack, splits
that into set-up and per-step cost, and predicts the width's whole bill; the cheapest wins.
The one-by-one loop is always a candidate, so the choice is never slower than it (up to timing
noise).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Callable, Sequence

import torch

from .family import ModelFamily
from .train import RunResult, TrainConfig, train_group

ChunkCallback = Callable[[int, list[RunResult], int], None]


class StackingFallbackWarning(UserWarning):
    """A family's model could not be stacked (vmap refused it); its runs train one by one."""


def _candidates(k: int) -> list[int]:
    sizes = {1, k}
    c = 4
    while c < k:
        sizes.add(c)
        c *= 2
    return sorted(sizes)


def _timed(family: ModelFamily, width: int, members: Sequence[tuple[float, int]], config: TrainConfig, device: torch.device, steps: int) -> float:
    probe_config = dataclasses.replace(config, steps=steps, probe_steps=(), probe_every=0, warmup=0)
    start = time.perf_counter()
    train_group(family, width, members, probe_config, device=device, stacked=len(members) > 1)
    return time.perf_counter() - start


def plan_chunk_size(family: ModelFamily, width: int, members: Sequence[tuple[float, int]], config: TrainConfig, device: torch.device) -> int:
    """The chunk size with the lowest predicted wall time for training ``members`` at ``width``.

    Candidates are tried from small to large and the search stops at the first that predicts
    worse than the one before (per-run cost is convex in the chunk size in practice), which
    keeps the probe to a few percent of a real sweep.
    """
    k = len(members)
    if k == 1 or family.optimizer is not None:
        return 1
    best, best_time = 1, math.inf
    for c in _candidates(k):
        try:
            one = _timed(family, width, members[:c], config, device, steps=1)  # also pays first-call costs
            three = _timed(family, width, members[:c], config, device, steps=3)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        except Exception as exc:  # noqa: BLE001 - any failure to stack means: train one by one
            if c == 1:
                raise
            warnings.warn(StackingFallbackWarning(f"{family.name}: runs cannot be stacked ({type(exc).__name__}: {exc}); training them one by one"))
            return 1
        per_step = max(three - one, 0.0) / 2
        setup = max(one - per_step, 0.0)
        predicted = -(-k // c) * (setup + config.steps * per_step)
        if predicted >= best_time:
            break
        best, best_time = c, predicted
    return best


def train_width(
    family: ModelFamily,
    width: int,
    members: Sequence[tuple[float, int]],
    config: TrainConfig,
    *,
    device: torch.device,
    stacking: str = "auto",
    on_chunk: ChunkCallback,
) -> None:
    """Train the runs ``(lr, seed)`` of one width, calling ``on_chunk(width, results, chunk_size)`` per chunk."""
    if stacking == "auto":
        size = plan_chunk_size(family, width, members, config, device)
    elif stacking == "all":
        size = len(members) if family.optimizer is None else 1
    elif stacking == "none":
        size = 1
    else:
        raise ValueError(f"stacking must be 'auto', 'all' or 'none', got {stacking!r}")
    for i in range(0, len(members), size):
        chunk = list(members[i : i + size])
        on_chunk(width, train_group(family, width, chunk, config, device=device, stacked=len(chunk) > 1), size)
