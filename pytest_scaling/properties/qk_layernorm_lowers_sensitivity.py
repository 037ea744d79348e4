"""qk-layernorm lowers LR sensitivity (Wortsman et al.): bounding attention logits is what keeps high LRs trainable,
so S with qk-layernorm must be lower than without at every width. A library check on a pair of families; not in the
packaged suite, which runs on one family."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .. import metrics
from ..assertions import assert_lr_sensitivity
from ..family import ModelFamily
from ..grids import StabilityGrid
from ..placement import place
from ..property import Panel, Property
from ..report import drawing
from ._arguments import grid_or_tier, require_check_arguments
from ._stability import STABILITY_GRIDS, seed_sensitivity, sensitivity_record, stability_sweep

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def qk_layernorm_lowers_sensitivity(scaling: Any, family_with: ModelFamily, family_without: ModelFamily,
                                    grid: StabilityGrid | None = None) -> metrics.SensitivityResult:
    """S with qk-layernorm (``family_with``) must be lower than without (``family_without``) at every width."""
    require_check_arguments(PROPERTY.name, grid, StabilityGrid, family_with=family_with, family_without=family_without)
    # Both variants sweep the grid placed on the one with qk-layernorm, so their curves compare point by point.
    grid, placed = place(scaling, family_with, grid_or_tier(scaling, PROPERTY, grid))
    results = [stability_sweep(scaling, family, grid) for family in (family_with, family_without)]
    with_qkln, without_qkln = (result.lr_sensitivity(relative=grid.relative_sensitivity) for result in results)
    # The value is the largest S(with) − S(without) over widths: negative when qk-layernorm lowers S everywhere.
    seed_values = (seed_sensitivity(results[0], grid) - seed_sensitivity(results[1], grid)).max(axis=0)
    PROPERTY.record(scaling, family_with.name, value=float((with_qkln.mean - without_qkln.mean).max()), threshold=0.0,
                    seed_values=seed_values.tolist(),
                    with_qk_layernorm=sensitivity_record(family_with, results[0], with_qkln),
                    without_qk_layernorm=sensitivity_record(family_without, results[1], without_qkln),
                    recipe=results[0].recipe, **placed)
    return assert_lr_sensitivity(with_qkln, max_value=None, lower_than=without_qkln)


QK_VARIANTS: dict[str, str] = {"with_qk_layernorm": "with qk-layernorm", "without_qk_layernorm": "without qk-layernorm"}


def _plot_qk_sensitivity(axes: Axes, record: dict[str, Any]) -> None:
    """S against width with and without qk-layernorm on one axes: the first must stay below the second."""
    drawing.sensitivity_by_width(axes, record, {label: record["data"][key] for key, label in QK_VARIANTS.items()})


def _qk_losses_panel(key: str) -> Panel:
    """The loss-vs-LR panel of one qk-layernorm variant, on the loss range of both so their panels compare."""

    def plot(axes: Axes, record: dict[str, Any]) -> None:
        variant = record["data"][key]
        drawing.loss_curves(axes, variant["widths"], variant["lrs"], variant["losses"],
                          title=f"loss vs LR {QK_VARIANTS[key]}")
        finite = [loss for name in QK_VARIANTS for row in record["data"][name]["losses"] for loss in drawing.floats(row)
                  if not math.isnan(loss)]
        if finite:
            margin = 0.05 * (max(finite) - min(finite)) or 0.05
            axes.set_ylim(min(finite) - margin, max(finite) + margin)

    return plot


PROPERTY = Property(
    "qk_layernorm_lowers_sensitivity", "qk-layernorm lowers LR sensitivity at every width", "higher",
    check=qk_layernorm_lowers_sensitivity, grids=STABILITY_GRIDS, in_suite=False,
    figure=((_plot_qk_sensitivity, tuple(QK_VARIANTS)), *((_qk_losses_panel(key), tuple(QK_VARIANTS)) for key in QK_VARIANTS)),
    measures="LR sensitivity of the family with and without qk-layernorm",
)
