"""LR transfer across width (μP), read off the whole loss-vs-LR curve: the curve must not move along the LR axis as
width grows. Its shift is fitted on both flanks (``metrics.curve_shift``), for families whose curves are flat at the top
(the GPT at CPU budget: its best three LRs lie within 0.01 nats, so η*'s slope ranged from -0.08 to -0.67 over ten
seeds)."""

from __future__ import annotations

from typing import Any

from .. import metrics
from .._result import jsonable
from ..assertions import assert_lr_curve_transfer
from ..family import ModelFamily
from ..grids import TransferGrid
from ..model_facts import read_model
from ..property import Property
from ..report import drawing
from ._fixes import MUP_FIXES
from ._runs import json_losses
from ._transfer import CURVE_TRANSFER_GRIDS, transfer_sweep, transfer_sweeps


def lr_curve_transfer(scaling: Any, family: ModelFamily, grid: TransferGrid | None = None) -> metrics.CurveShiftResult:
    """The loss-vs-LR curve must stay put along the LR axis as width grows (|slope of its log2-LR shift on log2 width|
    bounded); η* per width is recorded as evidence only."""
    result, grid, placed = transfer_sweep(scaling, family, grid, PROPERTY)
    table = result.loss_table()
    shift = metrics.lr_curve_shift(result.widths, result.lrs, table, initial_loss=result.initial_losses())
    PROPERTY.record(scaling, family.name, value=shift.slope, threshold=grid.max_abs_slope,
                    seed_values=shift.seed_slopes.tolist(), widths=list(result.widths), lrs=list(result.lrs),
                    shift=shift.mean_shift.tolist(), losses=json_losses(table),
                    log2_lr_opt=jsonable(result.lr_transfer().mean_log2_lr), recipe=result.recipe, **placed)
    return assert_lr_curve_transfer(shift, max_abs_slope=grid.max_abs_slope, model=read_model(family, result.widths))


PROPERTY = Property(
    "lr_curve_transfer", "the loss-vs-LR curve does not move along the LR axis as width grows", "higher_abs",
    check=lr_curve_transfer, grids=CURVE_TRANSFER_GRIDS, sweeps=transfer_sweeps, figure=((drawing.lr_curves, ("widths", "lrs", "losses")),),
    interventions=MUP_FIXES,
    measures="the seed-mean loss-vs-LR curve per width (Adam at a constant LR): its log2-LR shift from the narrowest "
             "width's, fitted on both flanks (`metrics.curve_shift`); η* per width recorded",
    fails_when=lambda g: f"|slope of the shift on log2 width| > {g.max_abs_slope:g}",
)
