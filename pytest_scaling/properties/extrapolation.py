"""Held-out extrapolation (the misleading-extrapolation failure): a power law fitted without the largest widths must
predict them, within a relative error and within the held-out loss's own seed noise."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..assertions import assert_extrapolation
from ..family import ModelFamily
from ..fit import ExtrapolationResult, extrapolation_check
from ..grids import PowerLawGrid
from ..property import Property
from ..report import drawing
from ..report.table import number
from ._arguments import grid_or_tier, require_check_arguments
from ._fixes import LAW_FIXES
from ._size_losses import (
    POWER_LAW_GRIDS,
    LRPolicy,
    fit_data,
    points_data,
    require_widths,
    size_losses,
    size_sweeps,
    standard_error,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Bootstrap resamples of the fit behind the prediction's band.
BOOTSTRAP = 200


def extrapolation(scaling: Any, family: ModelFamily, grid: PowerLawGrid | None = None,
                  lr_policy: LRPolicy = "per_width") -> ExtrapolationResult:
    """A power law fitted without the largest ``grid.holdout`` sizes must predict them: relative error within
    the tier's bound and no residual beyond ``grid.n_sigma`` of seed noise."""
    require_check_arguments(PROPERTY.name, grid, PowerLawGrid, family=family)
    grid = grid_or_tier(scaling, PROPERTY, grid)
    require_widths(family, grid, 3 + grid.holdout, f"the extrapolation check (holding out {grid.holdout})")
    points = size_losses(scaling, family, grid, lr_policy)
    result = extrapolation_check(points.sizes, points.mean, holdout=grid.holdout, bootstrap=BOOTSTRAP,
                                 seed_noise=standard_error(points), n_sigma=grid.n_sigma)
    # The value is how far past its bounds the worst held-out point is (ExtrapolationResult.excess: 1 = at them); a
    # seed alone has no seed noise, so its value is its relative error over the tolerance.
    seed_values = [float(extrapolation_check(points.sizes, losses, holdout=grid.holdout, bootstrap=0)
                         .excess(grid.max_rel_error).max()) for losses in points.per_seed.T]
    PROPERTY.record(scaling, family.name, value=float(result.excess(grid.max_rel_error).max()), threshold=1.0,
                    max_rel_error=result.max_rel_error, rtol=grid.max_rel_error, seed_values=seed_values,
                    fit=fit_data(result.fit), holdout=grid.holdout, predicted=result.predicted.tolist(),
                    band=[result.band_lo.tolist(), result.band_hi.tolist()] if result.band_lo is not None else None,
                    z_scores=result.z_scores.tolist() if result.z_scores is not None else None, **points_data(points))
    return assert_extrapolation(result, rtol=grid.max_rel_error)


def _band_error(centres: list[float], low: list[Any], high: list[Any]) -> list[list[float]]:
    """Error-bar lengths below and above each centre for its [low, high] band (0 where a bound is missing)."""
    return [[0.0 if math.isnan(bound) else max(sign * (centre - bound), 0.0) for centre, bound in zip(centres, bounds)]
            for sign, bounds in ((1, drawing.floats(low)), (-1, drawing.floats(high)))]


def _plot_extrapolation(axes: Axes, record: dict[str, Any]) -> None:
    """The power law fitted without the largest sizes, extended to them: held-out losses (hollow) against the
    prediction and its band, each labelled with its relative error (and z-score from seed noise)."""
    data = record["data"]
    fit, sizes, losses, std = data["fit"], data["sizes"], data["losses"], data["seed_std"]
    cut = len(sizes) - data["holdout"]
    drawing.size_points(axes, sizes[:cut], losses[:cut], std[:cut], color="C0", label="fitted")
    drawing.size_points(axes, sizes[cut:], losses[cut:], std[cut:], color="C3", mfc="none", label="held out")
    if drawing.power_law_is_fitted(fit):
        drawing.power_law_curve(axes, fit, min(sizes[:cut]), max(sizes[:cut]), color="C0", label="fit")
        drawing.power_law_curve(axes, fit, max(sizes[:cut]), 1.5 * max(sizes), color="C0", linestyle=":",
                              label="extrapolated")
    predicted = drawing.floats(data["predicted"])
    band = data["band"]
    axes.errorbar(sizes[cut:], predicted, yerr=_band_error(predicted, *band) if band else None, fmt="_", markersize=12,
                  capsize=6, color="C1", label="predicted ± band" if band else "predicted")
    z_scores = drawing.floats(data["z_scores"] or [math.nan] * len(predicted))
    for size, loss, guess, z in zip(sizes[cut:], drawing.floats(losses[cut:]), predicted, z_scores):
        if not (math.isnan(loss) or math.isnan(guess)):
            note = f"{(guess - loss) / loss:+.2%}" + ("" if math.isnan(z) else f"\nz = {z:.1f}")
            axes.annotate(note, (size, loss), xytext=(-6, -4), textcoords="offset points", fontsize="x-small",
                          ha="right", va="top")
    title = (f"fit on {cut} sizes, {data['holdout']} held out: max |rel. error| "
             f"{number(record['value'])}{drawing.baseline_note(record)}")
    drawing.size_axes(axes, fit, title)


PROPERTY = Property(
    "extrapolation", "a power law fitted without the largest width predicts it", "higher",
    check=extrapolation, grids=POWER_LAW_GRIDS, sweeps=size_sweeps, interventions=LAW_FIXES, seed_spread_is_noise=False,
    figure=((_plot_extrapolation, ("sizes", "losses", "seed_std", "fit", "holdout", "predicted", "band", "z_scores")),),
    measures="the same law fitted without the largest width, predicting it",
    fails_when=lambda g: (f"it misses by more than {g.max_rel_error:.0%} *and* by more than {g.n_sigma:g}σ of the "
                          "held-out loss's own seed noise; recorded as the excess over both bounds (1 = at them)"),
)
