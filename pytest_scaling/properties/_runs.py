"""What a check reads from its runs: a guard on their probes, and their losses as a record holds them."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from ..train import RunResult


def _first_bad_step(run: RunResult, kind: str) -> int | None:
    """The first step at which the run diverged or a ``kind`` probe read inf/NaN; None if there is none."""
    bad = [step for i, step in enumerate(run.probe_step_list)
           if any(i < len(values) and not math.isfinite(values[i]) for values in run.probes.get(kind, {}).values())]
    if run.diverged:
        bad.append(len(run.losses) - 1)
    return min(bad, default=None)


def require_finite_probes(runs: Iterable[RunResult], kind: str, check: str) -> None:
    """A coordinate check compares every run's ``kind`` probes at every step; a run that diverged or whose activations
    overflowed fails it by name, in one line, instead of a shape or log error further on."""
    for run in runs:
        step = _first_bad_step(run, kind)
        if step is not None:
            raise AssertionError(f"{check} failed: the run at width {run.width}, LR {run.lr:g}, seed {run.seed} diverged "
                                 f"or overflowed at step {step}, so its activations cannot be compared; "
                                 "lower the check's LR or look for the instability")


def json_losses(table: np.ndarray) -> list:
    """A loss table as JSON-able lists, non-finite (diverged) entries as None."""
    return np.where(np.isfinite(table), table, None).tolist()
