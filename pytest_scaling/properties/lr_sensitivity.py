"""LR sensitivity (Wortsman et al.): a stable recipe tolerates a wide LR range, so S, the loss a grid of LRs costs
over the best one, must stay under a bound at every width; as a fraction of the curve's depth L0 − L*, which
carries across tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import metrics
from ..assertions import assert_lr_sensitivity
from ..family import ModelFamily
from ..grids import StabilityGrid
from ..placement import place
from ..property import Property
from ..report import drawing
from ._arguments import grid_or_tier, require_check_arguments
from ._fixes import STABILITY_FIXES
from ._stability import STABILITY_GRIDS, seed_sensitivity, sensitivity_record, stability_sweep, stability_sweeps

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def lr_sensitivity(scaling: Any, family: ModelFamily, grid: StabilityGrid | None = None) -> metrics.SensitivityResult:
    """LR sensitivity S must stay under the tier's bound at every width."""
    require_check_arguments(PROPERTY.name, grid, StabilityGrid, family=family)
    grid, placed = place(scaling, family, grid_or_tier(scaling, PROPERTY, grid))
    result = stability_sweep(scaling, family, grid)
    sensitivity = result.lr_sensitivity(relative=grid.relative_sensitivity)
    record = sensitivity_record(family, result, sensitivity)
    PROPERTY.record(scaling, record.pop("family"), value=float(sensitivity.mean.max()), threshold=grid.max_sensitivity,
                    seed_values=seed_sensitivity(result, grid).max(axis=0).tolist(), **record, recipe=result.recipe,
                    **placed)
    return assert_lr_sensitivity(sensitivity, max_value=grid.max_sensitivity)


def _plot_sensitivity_losses(axes: Axes, record: dict[str, Any]) -> None:
    """The seed-mean loss-vs-LR curves S is computed from."""
    data = record["data"]
    drawing.loss_curves(axes, data["widths"], data["lrs"], data["losses"])


def _plot_lr_sensitivity(axes: Axes, record: dict[str, Any]) -> None:
    """S per width against the bound it must stay under."""
    drawing.sensitivity_by_width(axes, record, {"S": record["data"]})


PROPERTY = Property(
    "lr_sensitivity", "LR sensitivity (Wortsman et al.) stays bounded at every width", "higher",
    check=lr_sensitivity, grids=STABILITY_GRIDS, sweeps=stability_sweeps, interventions=STABILITY_FIXES[:3],
    figure=((_plot_sensitivity_losses, ("widths", "lrs", "losses")), (_plot_lr_sensitivity, ("widths", "values"))),
    measures="LR sensitivity S (Wortsman et al.) per width under their recipe (AdamW β (0.9, 0.95), warmup + cosine, "
             "clip 1, independent weight decay), as a fraction of the curve's depth L0 − L*, which carries across tasks",
    fails_when=lambda g: (f"S / (L0 − L*) > {g.max_sensitivity:g} at any width" if g.relative_sensitivity
                          else f"S > {g.max_sensitivity:g} at any width"),
)
