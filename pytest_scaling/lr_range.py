"""The LR-range step: where a family's loss-vs-LR curve lies, so that each property's LR grid is placed relative to it.

Absolute LR grids suit only the families they were tuned on: a family whose optimum sits 100x elsewhere reads
"optimum on the grid edge". The range step trains the family at its base width for a few steps of Adam at a
constant LR over a coarse log grid, widening it a decade at a time until both flanks of the curve are seen (or
the top LR diverges), and takes the curve's vertex as the family's *anchor* LR. Grids given as
:class:`pytest_scaling.tiers.RelativeLRs` are anchor × 2^k. The anchor is snapped to a half-octave lattice, so a tiny numerical
difference between machines cannot move a grid, and sweeps of one family share their runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import metrics
from ._result import Result, frozen
from .family import ModelFamily
from .grids import LRRangeGrid, log10_grid
from .train import TrainConfig

#: The anchor lattice, in octaves: anchors are 2^(k / ANCHOR_STEPS_PER_OCTAVE).
ANCHOR_STEPS_PER_OCTAVE = 2
#: Bounds of the search: no grid is placed below 10^MIN_LOG10 or above 10^MAX_LOG10.
MIN_LOG10, MAX_LOG10 = -10.0, 1.0


@dataclass(frozen=True, eq=False)
class LRBracket(Result):
    """The range step's outcome: the curve it measured, the anchor, and the largest LR that did not diverge."""

    family: str
    width: int
    lrs: np.ndarray
    losses: np.ndarray  # final loss per LR; +inf where the run diverged
    initial_loss: float
    anchor: float
    top_stable: float | None  # the largest LR whose loss ended below the initial loss
    widened: int  # decades added to the first grid
    note: str  # "" when both flanks were seen; else why the anchor is an edge of the search

    def to_record(self) -> dict[str, Any]:
        """The bracket as JSON-able report data."""
        return {"width": self.width, "anchor": self.anchor, "top_stable": self.top_stable,
                "lrs": self.lrs.tolist(), "losses": [v if math.isfinite(v) else None for v in self.losses.tolist()],
                "initial_loss": self.initial_loss, "note": self.note}


def snap(lr: float) -> float:
    """``lr`` rounded to the anchor lattice (half octaves)."""
    return 2.0 ** (round(math.log2(lr) * ANCHOR_STEPS_PER_OCTAVE) / ANCHOR_STEPS_PER_OCTAVE)


#: In the range step a run whose loss went above this multiple of its initial loss diverged, even if it came back down:
#: past the stable LRs losses spike and then wobble near the initial loss, and one such wobble can end a little
#: below it, which must not read as a minimum of the curve.
SPIKE = 2.0


def _sweep_curve(scaling: Any, family: ModelFamily, width: int, lrs: tuple[float, ...],
                 config: TrainConfig) -> tuple[np.ndarray, float]:
    """Final losses at ``lrs`` (at ``width``, the session's first seed; +inf for a run that spiked past ``SPIKE`` times
    its initial loss) and the initial loss."""
    result = scaling.sweep(family, widths=(width,), lrs=lrs, seeds=scaling.seeds[:1], config=config)
    initial = float(result.initial_losses()[0, 0])
    spiked = [max(result.run(width, lr, scaling.seeds[0]).losses) > SPIKE * initial for lr in lrs]
    return np.where(spiked, np.inf, result.loss_table()[0, :, 0]), initial


def _best(losses: np.ndarray, initial: float) -> int:
    """The grid index of the lowest loss, a run that diverged or did not go below the initial loss counting as that."""
    return int(np.argmin(np.where(np.isfinite(losses) & (losses < initial), losses, initial)))


def measure(scaling: Any, family: ModelFamily, grid: LRRangeGrid, width: int) -> LRBracket:
    """Run the range step on ``family`` at ``width`` (where the grids it anchors are placed: ``placement.place``)
    through ``scaling``'s sweep (cached like every run) and find its anchor.

    A coarse scan, one LR a decade over 10^lo..10^hi, widened a decade at a time while its best LR is at an edge (the
    top edge only while it still trains); then ``per_decade`` LRs a decade within a decade of the best, whose vertex
    is the anchor. The coarse scan sees the whole curve first, so an LR where training barely moves and the loss
    wobbles near its initial value is not taken for a minimum, as long as the scan reaches the LRs that do train; the
    tiers scan 10^-7 .. 1, which covers optima a thousandfold below or above the usual 10^-3 .. 10^-1."""
    lo, hi, widened = grid.lo, grid.hi, 0
    config = TrainConfig(steps=grid.steps, batch_size=grid.batch_size)
    while True:
        coarse = log10_grid(lo, hi, 1)
        losses, initial = _sweep_curve(scaling, family, width, coarse, config)
        best, trains = _best(losses, initial), np.isfinite(losses) & (losses < initial)
        if best == 0 and widened < 2 * grid.max_widen and lo - 1 >= MIN_LOG10:
            lo, widened = lo - 1, widened + 1
        elif best == len(coarse) - 1 and trains[-1] and widened < 2 * grid.max_widen and hi + 1 <= MAX_LOG10:
            hi, widened = hi + 1, widened + 1
        else:
            break
    centre = math.log10(coarse[best])
    fine = log10_grid(max(lo, centre - 1), min(hi, centre + 1), grid.per_decade)
    lrs = tuple(sorted(set(coarse) | set(fine)))
    losses, initial = _sweep_curve(scaling, family, width, lrs, config)
    best, stable = _best(losses, initial), np.isfinite(losses) & (losses < initial)
    note = ""
    if not stable.any():
        note = "no LR of the search trained below the initial loss"
    elif best in (0, len(lrs) - 1):
        note = f"the curve's minimum is at the {'lower' if best == 0 else 'upper'} end of the search ({lrs[best]:.3g})"
    near = [i for i, lr in enumerate(lrs) if lr in fine]  # the vertex is taken on the evenly spaced fine grid
    optimum = metrics.optimal_lr([lrs[i] for i in near], losses[near], initial_loss=initial)
    anchor = snap(optimum.lr if optimum.lr is not None else lrs[best])
    top = max((lr for lr, ok in zip(lrs, stable) if ok), default=None)
    return LRBracket(family=family.name, width=width, lrs=frozen(lrs), losses=frozen(losses),
                     initial_loss=initial, anchor=anchor, top_stable=top, widened=widened, note=note)
