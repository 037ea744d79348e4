"""Depth coordinate check (Depth-μP): the residual stream the readout reads must keep its size as depth grows at init,
and not grow with depth in the first Adam steps (docs/design.md, "Depth coordinate check")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import metrics
from .._result import jsonable
from ..assertions import assert_depth_coord_check
from ..family import ModelFamily
from ..grids import DepthCoordGrid, RelativeLRs, RelativeWidths
from ..probes import is_norm
from ..property import Property
from ..report import drawing
from ..report.table import number
from ..sweep import SweepRequest
from ..train import TrainConfig
from ._arguments import grid_or_tier, require_check_arguments
from ._depth import DepthFamilies, by_depth, sweeps_by_depth
from ._fixes import DEPTH_FIXES
from ._runs import require_finite_probes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Calibrated on two families: the residual stream's slope on log depth reads 0.06-0.10 on the reference GPT and
#: 0.09-0.18 on the zoo's clean GPT (seed pairs); 1/√L branches alone 0.53-0.57, plain residuals 1.3-1.5.
GRIDS: dict[str, DepthCoordGrid] = {
    "cpu": DepthCoordGrid(depths=(2, 4, 8, 16), widths=RelativeWidths((1, 2)), lr=RelativeLRs(1, 1), steps=4,
                          batch_size=32, max_abs_slope=0.3),
    "gpu": DepthCoordGrid(depths=(2, 4, 8, 16, 32), widths=RelativeWidths((2, 4)), lr=RelativeLRs(1, 1), steps=5,
                          batch_size=64, max_abs_slope=0.3),
}


def _top_norm(family: ModelFamily, width: int) -> str:
    """The model's last registered normalisation layer: in a pre-LN network, the final norm before the readout."""
    model, _ = family.instantiate(width, 0)
    norms = [name for name, module in model.named_modules() if is_norm(module)]
    if not norms:
        raise ValueError(f"family {family.name!r} has no normalisation layer (a module whose class name contains "
                          "'Norm': LayerNorm, RMSNorm, GroupNorm or the model's own): the depth coordinate check reads "
                          "the residual stream at the input of the last one")
    return norms[-1]


def _requests(scaling: Any, families: list[ModelFamily], grid: DepthCoordGrid) -> list[SweepRequest]:
    """Per depth, one run per width at the grid's (placed) LR on the session's seeds, the residual stream probed at
    steps 0..steps."""
    config = TrainConfig(steps=grid.steps + 1, batch_size=grid.batch_size, probe_steps=tuple(range(grid.steps + 1)),
                         probe_kinds=("norm_input",))
    return [SweepRequest(family, tuple(grid.widths), (grid.lr,), tuple(scaling.first_seeds(None)), config)
            for family in families]


def depth_coord_check(scaling: Any, build_family: DepthFamilies,
                       grid: DepthCoordGrid | None = None) -> metrics.CoordCheckResult:
    """The residual stream the readout reads must keep its size as depth grows at init, and not grow with depth in the
    first Adam steps (``assert_depth_coord_check`` says why shrinking after init is not counted).

    Depth-μP's coordinate check: L residual branches add up, so without 1/√L branch multipliers the stream grows
    like √L at init, and without the blocks' LR scaled by L^-1/2 their updates grow it like √L in training. Sizes
    are averaged geometrically over the session's seeds, and every width of the grid is asserted.
    """
    require_check_arguments(PROPERTY.name, grid, DepthCoordGrid)
    name, families, grid, placed = by_depth(scaling, PROPERTY.name, build_family, grid_or_tier(scaling, PROPERTY, grid))
    norms = [_top_norm(family, grid.widths[0]) for family in families]
    results = [request.run(scaling) for request in _requests(scaling, families, grid)]
    require_finite_probes((run for result in results for run in result.runs.values()), "norm_input",
                           "depth coordinate check")
    per_seed = [  # [seed][width, step, depth]
        np.array([[result.run(width, grid.lr, seed).probes["norm_input"][norm] for result, norm in zip(results, norms)]
                  for width in grid.widths]).transpose(0, 2, 1)
        for seed in results[0].seeds]
    sizes = metrics.seed_geometric_mean(per_seed)
    layers = [f"width {w}: {norms[-1]} input" for w in grid.widths]
    slopes = metrics.coord_slopes(grid.depths, sizes, layers=layers, steps=range(grid.steps + 1))
    seed_values = [metrics.depth_coord_excess(metrics.coord_slopes(grid.depths, seed_sizes, layers=layers))[0]
                    for seed_sizes in per_seed]
    PROPERTY.record(scaling, name, seed_values=seed_values, recipe=results[0].recipe, **placed,
                    families=[f.name for f in families], value=metrics.depth_coord_excess(slopes)[0],
                    threshold=grid.max_abs_slope, depths=list(grid.depths), widths=list(grid.widths),
                    seeds=list(results[0].seeds), slopes=jsonable(slopes.slopes), sizes=jsonable(sizes))
    return assert_depth_coord_check(slopes, max_abs_slope=grid.max_abs_slope)


def _plot_depth_coord(axes: Axes, record: dict[str, Any]) -> None:
    """At the widest width, the residual stream's size against depth, one line per step (flat under Depth-μP)."""
    data = record["data"]
    sizes = data["sizes"][-1]  # [step][depth]
    for step, (colour, values) in enumerate(zip(drawing.colours(len(sizes)), sizes)):
        axes.plot(data["depths"], drawing.floats(values), "o-", color=colour, label=f"step {step}")
    axes.set_xscale("log", base=2)
    axes.set(xticks=data["depths"], xticklabels=[str(d) for d in data["depths"]], xlabel="depth (layers)",
             ylabel="mean |input| of the final norm",
             title=f"width {data['widths'][-1]}: residual stream vs depth\nmax |slope| {number(record['value'])}")
    drawing.legend(axes)


PROPERTY = Property(
    "depth_coord_check", "the residual stream's size does not scale with depth", "higher",
    check=depth_coord_check, grids=GRIDS, sweeps=sweeps_by_depth("depth_coord_check", _requests), needs_depth=True, interventions=DEPTH_FIXES,
    figure=((_plot_depth_coord, ("depths", "widths", "sizes")),),
    measures="the residual stream the readout reads (mean |input| of the last norm layer) per depth, one run per depth "
             "and width at the anchor LR",
    fails_when=lambda g: (f"|slope of log size on log depth| > {g.max_abs_slope:g} at init, or growth > "
                          f"{g.max_abs_slope:g} per doubling of depth at a later step, at any width"),
)
