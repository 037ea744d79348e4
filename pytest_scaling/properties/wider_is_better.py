"""Wider is better (μP's promise): at the LR tuned at the narrowest width, the loss must not rise with width. The same
sweep as ``lr_curve_transfer``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import metrics
from ..assertions import assert_wider_is_better
from ..family import ModelFamily
from ..grids import TransferGrid
from ..model_facts import read_model
from ..property import Property
from ..report import drawing
from ._fixes import MUP_FIXES
from ._transfer import CURVE_TRANSFER_GRIDS, transfer_sweep, transfer_sweeps

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def wider_is_better(scaling: Any, family: ModelFamily, grid: TransferGrid | None = None) -> metrics.WidthTrend:
    """At the LR tuned at the narrowest width, a wider model may be at most ``grid.wider_rtol`` worse."""
    result, grid, placed = transfer_sweep(scaling, family, grid, PROPERTY)
    seed_mean = result.loss_table().mean(axis=-1)
    tuned_lr = result.lrs[int(np.argmin(seed_mean[0]))]
    trend = metrics.fixed_lr_width_trend(result.widths, result.losses_at_lr(tuned_lr))
    at_lr = result.loss_table()[:, result.lrs.index(tuned_lr), :]  # [width, seed]
    seed_values = [metrics.fixed_lr_width_trend(result.widths, at_lr[:, s]).max_rel_increase
                   for s in range(at_lr.shape[1])]
    PROPERTY.record(scaling, family.name, value=float(trend.max_rel_increase), threshold=grid.wider_rtol,
                    seed_values=seed_values, lr=tuned_lr, widths=list(result.widths),
                    losses=result.losses_at_lr(tuned_lr).tolist(), recipe=result.recipe, **placed)
    return assert_wider_is_better(trend, rtol=grid.wider_rtol, model=read_model(family, result.widths))


def _plot_width_losses(axes: Axes, record: dict[str, Any]) -> None:
    """Loss against width at one LR."""
    data = record["data"]
    axes.plot(data["widths"], data["losses"], "o-")
    drawing.width_axis(axes)
    axes.set(ylabel="final loss", title="loss vs width at the tuned LR")


PROPERTY = Property(
    "wider_is_better", "at the LR tuned at the narrowest width, loss does not rise with width", "higher",
    check=wider_is_better, grids=CURVE_TRANSFER_GRIDS, sweeps=transfer_sweeps, figure=((_plot_width_losses, ("widths", "losses")),),
    interventions=MUP_FIXES,
    measures="the same sweep as `lr_curve_transfer`, at the LR tuned at the narrowest width",
    fails_when=lambda g: f"a wider model is more than {g.wider_rtol:.0%} worse",
)
