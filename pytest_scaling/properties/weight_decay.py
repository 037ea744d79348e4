"""Weight decay's timescale across widths (``pytest_scaling.decay``): decay must forget over the same number of steps,
τ = 1/(ηλ), at every width; measured on the optimizer the family's runs use, one step per width, without training."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..assertions import assert_weight_decay
from ..decay import DecayTimescales, measure_decay
from ..family import ModelFamily
from ..grids import DecayGrid, RelativeLRs, RelativeWidths
from ..placement import place
from ..property import Property
from ..report import drawing
from ..report.model import is_number
from ..report.table import number
from ._arguments import grid_or_tier, require_check_arguments
from ._stability import stability_optimizer

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: No training, so every tier measures over a decade of width; the bound sits halfway between an independent decay (0)
#: and one coupled to a μP hidden LR (+1).
_GRID = DecayGrid(widths=RelativeWidths((1, 2, 4, 8)), lr=RelativeLRs(0, 0), max_abs_slope=0.5)
GRIDS: dict[str, DecayGrid] = {"smoke": _GRID, "cpu": _GRID, "gpu": _GRID}


def _optimizer_at(family: ModelFamily, grid: DecayGrid) -> Callable[[int], tuple[nn.Module, torch.optim.Optimizer]]:
    """``width -> (model, optimizer)`` at the placed grid's LR: the family's own optimizer, or the optimizer the
    stability sweeps train with; the model in float64, so that a small decay reads exactly."""
    recipe, lr = stability_optimizer(grid.weight_decay), grid.lr

    def instantiate(width: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        model, groups = family.instantiate(width, 0)
        model.double()  # in place: the groups keep pointing at the same parameters
        return model, family.optimizer(model, lr) if family.optimizer else recipe.build(groups, lr)

    return instantiate


def weight_decay(scaling: Any, family: ModelFamily, grid: DecayGrid | None = None) -> DecayTimescales | None:
    """Weight decay must forget over the same number of steps at every width: a timescale τ = 1/(ηλ) that grows with
    width (decay coupled to a μP LR) makes the narrow proxy's decay act m times faster than the wide model's.

    Returns None, recorded as not applicable, when no parameter decays."""
    require_check_arguments(PROPERTY.name, grid, DecayGrid, family=family)
    grid, placed = place(scaling, family, grid_or_tier(scaling, PROPERTY, grid))
    widths = grid.widths or family.widths
    result = measure_decay(_optimizer_at(family, grid), widths, grid.lr)
    if result.max_abs_slope is None:
        PROPERTY.record(scaling, family.name, value=None, threshold=None, applicable=False,
                        reason="no parameter decays: the optimizer applies no weight decay", **placed)
        return None
    PROPERTY.record(scaling, family.name, applicable=True, value=result.max_abs_slope, threshold=grid.max_abs_slope,
                    **result.to_dict(), worst=result.worst, **placed)
    return assert_weight_decay(result, max_abs_slope=grid.max_abs_slope)


def _plot_decay_timescales(axes: Axes, record: dict[str, Any]) -> None:
    """Per decayed parameter, weight decay's timescale τ against width (log-log): flat when the decay does not follow a
    width-scaled LR; the parameters that move most are named."""
    data = record["data"]
    slopes = [abs(s) if is_number(s) else math.inf for s in data["slopes"]]
    named = sorted(range(len(slopes)), key=lambda i: -slopes[i])[:drawing.LAYERS_NAMED]
    drawing.named_lines(axes, data["widths"], dict(zip(data["names"], data["timescale"])),
                        [data["names"][i] for i in named])
    drawing.width_axis(axes)
    axes.set(yscale="log", ylabel="decay timescale τ (steps)",
             title=f"weight decay's timescale per parameter (max |slope| {number(record['value'])})")
    drawing.legend(axes)


PROPERTY = Property(
    "weight_decay", "weight decay forgets over the same number of steps (1/(ηλ)) at every width", "higher",
    check=weight_decay, grids=GRIDS, interventions=("decay_at_base_lr",),
    figure=((_plot_decay_timescales, ("names", "widths", "timescale", "slopes")),),
    measures="per parameter, the fraction one step of the family's optimizer removes with every gradient zero "
             "(parameters set to 1), at the anchor LR: weight decay's timescale τ = 1/(ηλ) in steps; no training",
    fails_when=lambda g: (f"|slope of log τ on log width| > {g.max_abs_slope:g} for any parameter (torch AdamW's "
                          "`weight_decay` on a μP hidden LR: +1)"),
)
