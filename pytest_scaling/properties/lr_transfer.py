"""LR transfer across width (μP) by the optimal LR: η* must not drift with width. Not in the packaged suite, whose
``lr_curve_transfer`` reads the whole curve; a library check for families whose curves have a sharp optimum."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import metrics
from .._result import jsonable
from ..assertions import assert_lr_transfer
from ..family import ModelFamily
from ..grids import RelativeLRs, RelativeWidths, TransferGrid
from ..model_facts import read_model
from ..property import Property
from ..report import drawing
from ..report.table import number
from ._fixes import MUP_FIXES
from ._runs import json_losses
from ._transfer import transfer_sweep, transfer_sweeps

if TYPE_CHECKING:
    from matplotlib.axes import Axes

GRIDS: dict[str, TransferGrid] = {
    "cpu": TransferGrid(widths=RelativeWidths((2, 4, 8)), lrs=RelativeLRs(-6, 3), steps=300, batch_size=128,
                        max_abs_slope=0.25),
    "gpu": TransferGrid(widths=RelativeWidths((4, 8, 16, 32)), lrs=RelativeLRs(-8, 4), steps=1000, batch_size=256,
                        max_abs_slope=0.25),
}


def lr_transfer(scaling: Any, family: ModelFamily, grid: TransferGrid | None = None) -> metrics.TransferResult:
    """The optimal LR must not drift with width (|slope of log2 η* on log2 width| bounded)."""
    result, grid, placed = transfer_sweep(scaling, family, grid, PROPERTY)
    transfer = result.lr_transfer()
    PROPERTY.record(scaling, family.name, value=transfer.slope, ci=transfer.ci, threshold=grid.max_abs_slope,
                    seed_values=transfer.seed_slopes.tolist(), widths=list(result.widths), lrs=list(result.lrs),
                    mean_log2_lr=jsonable(transfer.mean_log2_lr), losses=json_losses(result.loss_table()),
                    recipe=result.recipe, **placed)
    return assert_lr_transfer(transfer, max_abs_slope=grid.max_abs_slope, model=read_model(family, result.widths))


def _plot_optimal_lr(axes: Axes, record: dict[str, Any]) -> None:
    """log2 of the optimal LR against width, with the recorded slope."""
    data = record["data"]
    axes.plot(data["widths"], data["mean_log2_lr"], "o-")
    drawing.width_axis(axes)
    axes.set(ylabel="log2 optimal LR", title=f"η* vs width (slope {number(record['value'])})")


PROPERTY = Property(
    "lr_transfer", "the optimal LR (η*) does not drift with width", "higher_abs",
    check=lr_transfer, grids=GRIDS, sweeps=transfer_sweeps, in_suite=False, interventions=MUP_FIXES,
    figure=((drawing.lr_curves, ("widths", "lrs", "losses")), (_plot_optimal_lr, ("widths", "mean_log2_lr"))),
    measures="the optimal LR η* per width, fitted to the seed-mean loss-vs-LR curve",
    fails_when=lambda g: f"|slope of log2 η* on log2 width| > {g.max_abs_slope:g}",
)
