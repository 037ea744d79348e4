"""Power law (Kaplan et al.): the best-LR loss must follow E + A·N^-α across widths, N the non-input parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..assertions import assert_power_law
from ..family import ModelFamily
from ..fit import PowerLawFit, fit_power_law
from ..grids import PowerLawGrid
from ..property import Property
from ..report import drawing
from ..report.table import number
from ._arguments import grid_or_tier, require_check_arguments
from ._fixes import LAW_FIXES
from ._size_losses import POWER_LAW_GRIDS, LRPolicy, fit_data, points_data, require_widths, size_losses, size_sweeps

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def power_law(scaling: Any, family: ModelFamily, grid: PowerLawGrid | None = None,
              lr_policy: LRPolicy = "per_width") -> PowerLawFit:
    """The best-LR loss against size must follow E + A·N^-α (R² in log space at least the tier's bound)."""
    require_check_arguments(PROPERTY.name, grid, PowerLawGrid, family=family)
    grid = grid_or_tier(scaling, PROPERTY, grid)
    require_widths(family, grid, 3, "the power-law check")
    points = size_losses(scaling, family, grid, lr_policy)
    fit = fit_power_law(points.sizes, points.mean)
    # Recorded as 1 − R², ideally 0, so that a larger value is worse.
    seed_values = [1.0 - fit_power_law(points.sizes, losses).r2 for losses in points.per_seed.T]
    PROPERTY.record(scaling, family.name, value=1.0 - fit.r2, threshold=1.0 - grid.min_r2, seed_values=seed_values,
                    fit=fit_data(fit), **points_data(points))
    return assert_power_law(fit, min_r2=grid.min_r2)


def _plot_power_law(axes: Axes, record: dict[str, Any]) -> None:
    """Best-LR loss against size with the fitted power law E + A·N^-α over the swept sizes."""
    data = record["data"]
    fit = data["fit"]
    drawing.size_points(axes, data["sizes"], data["losses"], data["seed_std"], color="C0", label="seed mean ± std")
    if drawing.power_law_is_fitted(fit):
        drawing.power_law_curve(axes, fit, min(data["sizes"]), max(data["sizes"]), color="C0", label="E + A·N^-α")
    title = f"loss vs size: α = {number(fit.get('alpha'))}, R² = {number(fit.get('r2'))}{drawing.baseline_note(record)}"
    drawing.size_axes(axes, fit, title)


PROPERTY = Property(
    "power_law", "the best-LR loss follows E + A·N^-α across widths", "higher",
    check=power_law, grids=POWER_LAW_GRIDS, sweeps=size_sweeps, figure=((_plot_power_law, ("sizes", "losses", "seed_std", "fit")),),
    interventions=LAW_FIXES, seed_spread_is_noise=False,
    measures="the best-LR loss per width (LRs searched outward from the anchor until the best has both flanks) against "
             "N (non-input parameters), fitted as E + A·N^-α in log space",
    fails_when=lambda g: f"R² (log) < {g.min_r2:g} (recorded as 1 − R²)",
)
