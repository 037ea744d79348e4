"""How the runs of one width are trained: all stacked, in stacked chunks, or one by one.

Stacking is not free: it wins big for small widths, where one run leaves the hardware idle, and
loses once a single run fills it. ``plan_chunk_size`` decides per width from a short timed
probe: for each candidate chunk size c it trains a c-run stack for a few steps, takes the set-up
time and the median step time (the first step, which pays first-call costs, left out), and
predicts the width's whole bill; the cheapest wins.
The one-by-one loop is always a candidate, so the choice is never slower than it (up to timing
noise). A family's own optimizer stacks when it has an exact batched form; otherwise its runs train
one by one, with a ``StackingFallbackWarning`` that says why.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Callable, Sequence

import torch

from .family import ModelFamily
from .members import unstackable_reason
from .train import RunResult, TrainConfig, train_group

ChunkCallback = Callable[[int, list[RunResult], int], None]


PROBE_STEPS = 6


class StackingFallbackWarning(UserWarning):
    """A family's runs could not be stacked (vmap refused the model, or its own optimizer has no exact stacked form);
    they train one by one."""


def _candidates(k: int) -> list[int]:
    sizes = {1, k}
    c = 4
    while c < k:
        sizes.add(c)
        c *= 2
    return sorted(sizes)


def _stackable(family: ModelFamily, width: int, members: Sequence[tuple[float, int]]) -> bool:
    """Whether the family's optimizer, built for each of ``members``, stacks; if not, warn why."""
    reason = unstackable_reason(family, width, [lr for lr, _ in members], [seed for _, seed in members])
    if reason is not None:
        warnings.warn(StackingFallbackWarning(f"{family.name}: {reason}: training one by one"))
    return reason is None


def _timed(family: ModelFamily, width: int, members: Sequence[tuple[float, int]], config: TrainConfig, device: torch.device) -> tuple[float, float]:
    """(set-up seconds, median seconds per step) of a short stacked run of ``members``."""
    probe_config = dataclasses.replace(config, steps=PROBE_STEPS, probe_steps=(), probe_every=0, warmup=0)
    clock = [time.perf_counter()]
    train_group(family, width, members, probe_config, device=device, stacked=len(members) > 1, step_clock=clock)
    steps = sorted(b - a for a, b in zip(clock[2:], clock[3:]))  # the first step pays first-call costs
    return clock[1] - clock[0], steps[len(steps) // 2]


def plan_chunk_size(family: ModelFamily, width: int, members: Sequence[tuple[float, int]], config: TrainConfig, device: torch.device) -> int:
    """The chunk size with the lowest predicted wall time for training ``members`` at ``width``.

    Every candidate is timed; a candidate that runs out of device memory ends the search. Runs no longer
    than the probe train one by one untimed: timing the candidates would cost more than any choice saves.
    """
    k = len(members)
    if k == 1 or config.steps <= PROBE_STEPS or not _stackable(family, width, members):
        return 1
    predicted: dict[int, float] = {}
    for c in _candidates(k):
        try:
            setup, per_step = _timed(family, width, members[:c], config, device)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        except Exception as exc:  # noqa: BLE001 - any failure to stack means: train one by one
            if c == 1:
                raise
            warnings.warn(StackingFallbackWarning(f"{family.name}: runs cannot be stacked ({type(exc).__name__}: {exc}); training them one by one"))
            return 1
        predicted[c] = -(-k // c) * (setup + config.steps * per_step)
    return min(predicted, key=predicted.get)


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
        size = len(members) if len(members) > 1 and _stackable(family, width, members) else 1
    elif stacking == "none":
        size = 1
    else:
        raise ValueError(f"stacking must be 'auto', 'all' or 'none', got {stacking!r}")
    for i in range(0, len(members), size):
        chunk = list(members[i : i + size])
        on_chunk(width, train_group(family, width, chunk, config, device=device, stacked=len(chunk) > 1), size)
