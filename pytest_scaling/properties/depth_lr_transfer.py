"""LR transfer across depth (Depth-μP): the loss-vs-LR curve must not move along the LR axis as depth grows, so an LR
tuned shallow holds deep."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import metrics
from ..assertions import assert_depth_lr_transfer
from ..family import ModelFamily
from ..grids import DepthTransferGrid, RelativeLRs, RelativeWidths
from ..property import Property
from ..report import drawing
from ..report.table import number
from ..sweep import SweepRequest
from ..train import TrainConfig
from ._arguments import grid_or_tier, require_check_arguments
from ._depth import DepthFamilies, by_depth, sweeps_by_depth
from ._fixes import DEPTH_FIXES
from ._runs import json_losses

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Calibrated on two families (benchmarks/RESULTS.md, "Calibration"): the curve's shift per doubling of depth reads
#: -0.025..+0.07 on the reference GPT (10 seeds) and -0.07..+0.10 on the zoo's clean GPT (3 seed pairs); without depth
#: scaling -0.2..-0.28 (1/√L branches alone, reference GPT) and -0.37 (the zoo's unscaled residuals). The gpu tier
#: runs the cpu tier's grid over its 3 seeds, since no wider one has been calibrated on a GPU yet.
_CPU = DepthTransferGrid(depths=(2, 8), widths=RelativeWidths((0.5, 1)), lrs=RelativeLRs(-4, 2), steps=40, batch_size=32,
                         max_abs_slope=0.15)
GRIDS: dict[str, DepthTransferGrid] = {"cpu": _CPU, "gpu": _CPU}


def _requests(scaling: Any, families: list[ModelFamily], grid: DepthTransferGrid) -> list[SweepRequest]:
    """Per depth, the (placed) transfer grid's runs: constant-LR Adam."""
    config = TrainConfig(steps=grid.steps, batch_size=grid.batch_size)
    return [SweepRequest(family, tuple(grid.widths), tuple(grid.lrs), tuple(scaling.first_seeds(grid.seeds)), config)
            for family in families]


def depth_lr_transfer(scaling: Any, build_family: DepthFamilies,
                       grid: DepthTransferGrid | None = None) -> metrics.CurveShiftResult:
    """The loss-vs-LR curve must stay put along the LR axis as depth grows: an LR tuned shallow then holds deep.

    Measured as the curve's shift from the shallowest depth's (both flanks, not the often flat top), per seed, at
    every width; the widest is asserted. With 1/√L branches alone the curve moves to lower LRs (the blocks' Θ(η)
    updates add up to Θ(η√L)); Depth-μP's block LR × L^-1/2 holds it.
    """
    require_check_arguments(PROPERTY.name, grid, DepthTransferGrid)
    name, families, grid, placed = by_depth(scaling, PROPERTY.name, build_family, grid_or_tier(scaling, PROPERTY, grid))
    results = [request.run(scaling) for request in _requests(scaling, families, grid)]
    tables = np.stack([result.loss_table() for result in results])  # [depth, width, lr, seed]
    initial = np.stack([result.initial_losses() for result in results])  # [depth, width, seed]
    shifts = [metrics.lr_curve_shift(grid.depths, grid.lrs, tables[:, w], initial_loss=initial[:, w])
              for w in range(len(grid.widths))]
    PROPERTY.record(scaling, name, seed_values=shifts[-1].seed_slopes.tolist(),
                    recipe=results[0].recipe, **placed,
                    families=[f.name for f in families], value=shifts[-1].slope, threshold=grid.max_abs_slope,
                    depths=list(grid.depths), widths=list(grid.widths), lrs=list(grid.lrs),
                    shift=[s.mean_shift.tolist() for s in shifts], slopes=[s.slope for s in shifts],
                    losses=json_losses(tables.mean(axis=-1)))
    return assert_depth_lr_transfer(shifts[-1], width=grid.widths[-1], max_abs_slope=grid.max_abs_slope)


def _plot_depth_transfer(axes: Axes, record: dict[str, Any]) -> None:
    """At the widest width, the seed-mean loss-vs-LR curve of each depth: under Depth-μP they lie on each other."""
    data = record["data"]
    drawing.loss_curves(axes, data["depths"], data["lrs"], [by_width[-1] for by_width in data["losses"]],
                      title=f"width {data['widths'][-1]}: loss vs LR by depth (shift slope {number(record['value'])})",
                      size_name="depth")


PROPERTY = Property(
    "depth_lr_transfer", "the loss-vs-LR curve does not move along the LR axis as depth grows", "higher_abs",
    check=depth_lr_transfer, grids=GRIDS, sweeps=sweeps_by_depth("depth_lr_transfer", _requests), needs_depth=True, interventions=DEPTH_FIXES,
    figure=((_plot_depth_transfer, ("depths", "widths", "lrs", "losses")),),
    measures="the loss-vs-LR curve per depth, at the widest width",
    fails_when=lambda g: f"|slope of its shift on log2 depth| > {g.max_abs_slope:g}",
)
