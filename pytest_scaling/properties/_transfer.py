"""The width-transfer sweep shared by ``lr_curve_transfer`` and ``wider_is_better``: one grid per tier, so that a cached
session trains it once for both, and the sweep that places it on a family and trains it with constant-LR Adam."""

from __future__ import annotations

from typing import Any

from ..family import ModelFamily
from ..grids import RelativeLRs, RelativeWidths, TransferGrid
from ..placement import place
from ..property import Property
from ..sweep import SweepRequest, SweepResult
from ..train import TrainConfig
from ._arguments import grid_or_tier, require_check_arguments

#: Placed on the family's base width, not its unit width (``placement.place``): a clean user-style GPT written at base
#: 64 (qk-LayerNorm, zero readout, z-loss 1e-4, sequences of 64) read a shift of −0.12 per doubling at widths 64-256
#: and −0.23 ± 0.02 at 32-128, within noise of the bound; its optimum falls 0.30 octave from 32 to 64, 0.15 from 64
#: to 128 (docs/design.md, "Cost"; benchmarks/RESULTS.md, "The suite within its budget").
_CPU = TransferGrid(widths=RelativeWidths((1, 2, 4)), lrs=RelativeLRs(-5, 2), steps=100, batch_size=32,
                    max_abs_slope=0.25, seeds=2)
#: The smoke tier cannot resolve a transfer slope; the gpu tier runs the cpu tier's grid over its 3 seeds, since no
#: wider one has been calibrated on a GPU yet.
CURVE_TRANSFER_GRIDS: dict[str, TransferGrid] = {"cpu": _CPU, "gpu": _CPU}


def _request(scaling: Any, family: ModelFamily, grid: TransferGrid) -> SweepRequest:
    """The runs of a placed transfer grid: constant-LR Adam."""
    return SweepRequest(family, tuple(grid.widths or family.widths), tuple(grid.lrs), tuple(scaling.first_seeds(grid.seeds)),
                        TrainConfig(steps=grid.steps, batch_size=grid.batch_size))


def transfer_sweeps(scaling: Any, family: ModelFamily, grid: TransferGrid) -> list[SweepRequest]:
    """What a transfer grid asks for on ``family`` (the cost plan's view of ``transfer_sweep``)."""
    return [_request(scaling, family, place(scaling, family, grid, below_base=False)[0])]


def transfer_sweep(scaling: Any, family: ModelFamily, grid: TransferGrid | None,
                   prop: Property) -> tuple[SweepResult, TransferGrid, dict[str, Any]]:
    """The sweep of a transfer grid (the tier's for ``prop`` unless one is given), placed on ``family``: its runs, the
    placed grid and the placement. A tier without the grid skips."""
    require_check_arguments(prop.name, grid, TransferGrid, family=family)
    grid, placed = place(scaling, family, grid_or_tier(scaling, prop, grid), below_base=False)
    return _request(scaling, family, grid).run(scaling), grid, placed
