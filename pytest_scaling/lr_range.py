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
from .tiers import LRRangeGrid, log10_grid
from .train import TrainConfig

#: The anchor lattice, in octaves: anchors are 2^(k / ANCHOR_STEPS_PER_OCTAVE).
ANCHOR_STEPS_PER_OCTAVE = 2
#: Bounds of the search: no grid is placed below 10^MIN_LOG10 or above 10^MAX_LOG10.
MIN_LOG10, MAX_LOG10 = -7.0, 1.5


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


def measure(scaling: Any, family: ModelFamily, grid: LRRangeGrid) -> LRBracket:
    """Run the range step on ``family`` through ``scaling``'s sweep (cached like every run) and find its anchor."""
    lo, hi, widened = grid.lo, grid.hi, 0
    config = TrainConfig(steps=grid.steps, batch_size=grid.batch_size)
    while True:
        lrs = log10_grid(lo, hi, grid.per_decade)
        result = scaling.sweep(family, widths=(family.base_width,), lrs=lrs, seeds=scaling.seeds[:1], config=config)
        losses, initial = result.loss_table()[0, :, 0], float(result.initial_losses()[0, 0])
        best = int(np.argmin(np.where(np.isfinite(losses) & (losses < initial), losses, initial)))
        stable = np.isfinite(losses) & (losses < initial)
        if best == 0 and widened < 2 * grid.max_widen and lo - 1 >= MIN_LOG10:
            lo, widened = lo - 1, widened + 1
        elif best == len(lrs) - 1 and stable[-1] and widened < 2 * grid.max_widen and hi + 1 <= MAX_LOG10:
            hi, widened = hi + 1, widened + 1
        else:
            break
    note = ""
    if not stable.any():
        note = "no LR of the search trained below the initial loss"
    elif best in (0, len(lrs) - 1):
        note = f"the curve's minimum is at the {'lower' if best == 0 else 'upper'} end of the search ({lrs[best]:.3g})"
    optimum = metrics.optimal_lr(lrs, losses, initial_loss=initial)
    anchor = snap(optimum.lr if optimum.lr is not None else lrs[best])
    top = max((lr for lr, ok in zip(lrs, stable) if ok), default=None)
    return LRBracket(family=family.name, width=family.base_width, lrs=frozen(lrs), losses=frozen(losses),
                     initial_loss=initial, anchor=anchor, top_stable=top, widened=widened, note=note)
