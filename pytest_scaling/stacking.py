"""How the runs of one width are trained: all stacked, in stacked chunks, or one by one.

Stacking is not free: it wins big for small widths, where one run leaves the hardware idle, and
loses once a single run fills it. ``plan_width`` decides per width from a short timed
probe: for each candidate chunk size c it trains a c-run stack for a few steps, takes the set-up
time and the median step time (the first step, which pays first-call costs, left out), and
predicts the width's whole bill; the cheapest wins.
The one-by-one loop is always a candidate, so the choice is never slower than it (up to timing
noise). Where the best stack's predicted bill is long enough for a compilation to pay (``COMPILE_WORTH_TRYING_S``,
per device type), the same stack with its step compiled (``torch.compile``; CUDA graphs on CUDA) is timed too, its
first step (the compilation) counted as set-up, and it wins only if its whole bill is lower. A family's own
optimizer stacks when it has an exact batched form; otherwise its runs train one by one, with a
``StackingFallbackWarning`` that says why.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Callable, Sequence

import torch

from .family import ModelFamily
from .fingerprint import FingerprintError
from .members import unstackable_reason
from .train import RunResult, TrainConfig, check_stacking, train_group

ChunkCallback = Callable[[int, list[RunResult], int], None]


PROBE_STEPS = 6
#: Per device type, the shortest predicted bill (seconds) for which a compiled step is timed at all. On a CPU,
#: compiling a 2-layer GPT's stacked step took 15-16 s for 16% and 7% off its eager step (widths 64 and 256, one
#: thread): it pays back only over 94-230 s, so a shorter bill is not worth the probe. On CUDA the step is bound by
#: host work that CUDA graphs remove; the bound is a first guess until a device check measures the compilation there.
COMPILE_WORTH_TRYING_S = {"cpu": 240.0, "cuda": 60.0}


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one width's runs train: in stacks of ``size`` (1: one by one), the stacked step compiled or not."""

    size: int
    compiled: bool = False


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


#: Step timings measured in this process (``time_steps``), by family, width, probe config, stack size, device and
#: compilation. A step's time does not depend on its LRs or seeds, so the cost plan's timings serve the sweeps that
#: follow it, and one sweep's serve the next at the same width.
_TIMED: dict[tuple[object, ...], tuple[float, float]] = {}


def time_steps(family: ModelFamily, width: int, members: Sequence[tuple[float, int]], config: TrainConfig,
               device: torch.device, compiled: bool = False) -> tuple[float, float]:
    """(set-up seconds, median seconds per step) of a short stacked run of ``members``, measured once per process for
    its family, width, config and stack size. The first step pays first-call costs and is left out of the median;
    compiled, it is the compilation and counts as set-up. The process's first timing is taken twice: the first run
    pays torch's one-time start-up (1.3 s on the 2-core machine), which no later run does."""
    probe_config = dataclasses.replace(config, steps=PROBE_STEPS, probe_steps=(), probe_every=0, warmup=0)
    key = (_family_key(family), width, repr(probe_config), len(members), str(device), compiled)
    if key not in _TIMED:
        for _ in range(1 if _TIMED else 2):
            clock = [time.perf_counter()]
            train_group(family, width, members, probe_config, device=device, stacked=len(members) > 1,
                        compiled=compiled, step_clock=clock)
        steps = sorted(b - a for a, b in zip(clock[2:], clock[3:]))
        per_step = steps[len(steps) // 2]
        _TIMED[key] = (clock[2] - clock[0] - per_step if compiled else clock[1] - clock[0]), per_step
    return _TIMED[key]


def _family_key(family: ModelFamily) -> object:
    """The family's identity for timings: its name and fingerprint, or the object where it has none."""
    try:
        return family.name, family.fingerprint()
    except FingerprintError:
        return family


def _compiled_bill(family: ModelFamily, width: int, members: Sequence[tuple[float, int]], config: TrainConfig,
                   device: torch.device, size: int) -> float | None:
    """The predicted bill of stacks of ``size`` with the step compiled; None (with a warning) where it cannot compile."""
    try:
        setup, per_step = time_steps(family, width, members[:size], config, device, compiled=True)
    except Exception as exc:  # noqa: BLE001 - a model the compiler cannot take trains eagerly
        warnings.warn(StackingFallbackWarning(f"{family.name}: the stacked step does not compile ({type(exc).__name__}: "
                                              f"{str(exc).splitlines()[0] if str(exc) else ''}); training it eagerly"))
        return None
    return -(-len(members) // size) * (setup + config.steps * per_step)


def plan_width(family: ModelFamily, width: int, members: Sequence[tuple[float, int]], config: TrainConfig,
               device: torch.device) -> Plan:
    """The plan with the lowest predicted wall time for training ``members`` at ``width``.

    Every chunk size is timed; a candidate that runs out of device memory ends the search. Runs no longer
    than the probe train one by one untimed: timing the candidates would cost more than any choice saves.
    """
    k = len(members)
    if k == 1 or config.steps <= PROBE_STEPS or not _stackable(family, width, members):
        return Plan(1)
    predicted: dict[int, float] = {}
    for c in _candidates(k):
        try:
            setup, per_step = time_steps(family, width, members[:c], config, device)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        except Exception as exc:  # noqa: BLE001 - any failure to stack means: train one by one
            if c == 1:
                raise
            warnings.warn(StackingFallbackWarning(f"{family.name}: runs cannot be stacked ({type(exc).__name__}: {exc}); training them one by one"))
            return Plan(1)
        predicted[c] = -(-k // c) * (setup + config.steps * per_step)
    best = min(predicted, key=predicted.get)
    if best > 1 and predicted[best] >= COMPILE_WORTH_TRYING_S.get(device.type, COMPILE_WORTH_TRYING_S["cpu"]):
        compiled = _compiled_bill(family, width, members, config, device, best)
        if compiled is not None and compiled < predicted[best]:
            return Plan(best, compiled=True)
    return Plan(best)


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
    """Train the runs ``(lr, seed)`` of one width, calling ``on_chunk(width, results, chunk_size)`` per chunk.
    ``stacking``: "auto" (the timed plan), "all" (one stack), "compiled" (one stack, its step compiled) or "none"."""
    if stacking == "auto":
        plan = plan_width(family, width, members, config, device)
    elif stacking in ("all", "compiled"):
        stack = len(members) > 1 and _stackable(family, width, members)
        plan = Plan(len(members), compiled=stacking == "compiled") if stack else Plan(1)
    else:
        check_stacking(stacking)
        plan = Plan(1)
    for i in range(0, len(members), plan.size):
        chunk = list(members[i : i + plan.size])
        stacked = len(chunk) > 1
        results = train_group(family, width, chunk, config, device=device, stacked=stacked,
                              compiled=plan.compiled and stacked)
        on_chunk(width, results, plan.size)
