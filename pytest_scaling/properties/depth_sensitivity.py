"""LR sensitivity across depth: unscaled residual branches add up, so a deep stack loses its high LRs, while Depth-μP
keeps the loss-vs-LR curve, and so S, the same at every depth. S may grow by at most a bound per doubling of depth."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import metrics
from ..assertions import assert_depth_sensitivity
from ..family import ModelFamily
from ..grids import DepthGrid, RelativeWidths, StabilityGrid, quarter_decades
from ..property import Property
from ..report import drawing
from ..report.table import number
from ..sweep import SweepRequest
from ._arguments import grid_or_tier, require_check_arguments
from ._depth import DepthFamilies, by_depth, sweeps_by_depth
from ._fixes import DEPTH_FIXES
from ._runs import json_losses
from ._stability import stability_request

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: The smoke tier cannot resolve S; the gpu tier runs the cpu tier's grid over its 3 seeds, since no wider one has been
#: calibrated on a GPU yet.
_CPU = DepthGrid(depths=(2, 8), max_growth_per_doubling=0.005,
                 sweep=StabilityGrid(widths=RelativeWidths((0.5, 1)), lrs=quarter_decades(-1, 4), steps=100,
                                     batch_size=16, warmup=20, probe_every=20, max_sensitivity=0.1,
                                     attention_logit_cap=1e3, log_z_cap=20.0, relative_sensitivity=True))
GRIDS: dict[str, DepthGrid] = {"cpu": _CPU, "gpu": _CPU}


def _requests(scaling: Any, families: list[ModelFamily], grid: DepthGrid) -> list[SweepRequest]:
    """The stability sweep at each of the grid's depths."""
    return [stability_request(scaling, family, grid.sweep) for family in families]


def depth_sensitivity(scaling: Any, build_family: DepthFamilies, grid: DepthGrid | None = None) -> metrics.SensitivityResult:
    """LR sensitivity S (Wortsman et al.) may grow by at most the tier's bound per doubling of depth, at every width:
    unscaled residual branches add up, so a deep stack loses its high LRs, while Depth-μP keeps the loss-vs-LR curve,
    and so S, the same at every depth.

    ``build_family(n_layers)`` gives the family at one depth; each is swept like ``lr_sensitivity`` (the grid's
    ``sweep``), S taken from the seed-mean loss curves. Returns the S-by-depth result of the width where S grows
    fastest. η* per depth is recorded as evidence only.
    """
    require_check_arguments(PROPERTY.name, grid, DepthGrid)
    name, families, grid, placed = by_depth(scaling, PROPERTY.name, build_family, grid_or_tier(scaling, PROPERTY, grid))
    results = [request.run(scaling) for request in _requests(scaling, families, grid)]
    tables = np.stack([result.loss_table() for result in results])  # [depth, width, lr, seed]
    initial = np.stack([result.initial_losses() for result in results])  # [depth, width, seed]
    widths = results[0].widths
    relative = grid.sweep.relative_sensitivity
    sensitivity = [metrics.lr_sensitivity_by_size(grid.depths, results[0].lrs, tables[:, w].mean(axis=-1, keepdims=True),
                                                   initial[:, w].mean(axis=-1, keepdims=True), size_name="depth",
                                                   relative=relative)
                    for w in range(len(widths))]
    optimum = [metrics.lr_transfer(grid.depths, results[0].lrs, tables[:, w], initial_loss=initial[:, w])
               for w in range(len(widths))]
    growth = [s.growth_per_doubling for s in sensitivity]
    worst = int(np.argmax(growth))
    per_seed = [metrics.lr_sensitivity_by_size(grid.depths, results[0].lrs, tables[:, w], initial[:, w], size_name="depth",
                                                relative=relative).values for w in range(len(widths))]  # [depth, seed]
    seed_growth = np.max([metrics.log2_slopes(grid.depths, values) for values in per_seed], axis=0)
    PROPERTY.record(scaling, name, families=[f.name for f in families], seed_values=seed_growth.tolist(),
                    recipe=results[0].recipe, **placed,
                    depths=list(grid.depths), widths=list(widths), lrs=list(results[0].lrs),
                    value=growth[worst], threshold=grid.max_growth_per_doubling,
                    sensitivity=[s.mean.tolist() for s in sensitivity], growth_per_doubling=growth,
                    log2_lr_opt=[o.mean_log2_lr.tolist() for o in optimum], lr_slope=[o.slope for o in optimum],
                    losses=json_losses(tables.mean(axis=-1)))
    return assert_depth_sensitivity(sensitivity[worst], optimum[worst], width=widths[worst],
                                     max_growth_per_doubling=grid.max_growth_per_doubling)


def _plot_depth_sensitivity(axes: Axes, record: dict[str, Any]) -> None:
    """LR sensitivity S against depth, one line per width (each is asserted)."""
    data = record["data"]
    for width, colour, values in zip(data["widths"], drawing.colours(len(data["widths"])), data["sensitivity"]):
        axes.plot(data["depths"], drawing.floats(values), "o-", color=colour, label=f"width {width}")
    axes.set_xscale("log", base=2)
    axes.set(xticks=data["depths"], xticklabels=[str(d) for d in data["depths"]], xlabel="depth (layers)",
             ylabel="LR sensitivity S", title=f"S vs depth (growth {number(record['value'])} per doubling)")
    drawing.legend(axes)


PROPERTY = Property(
    "depth_sensitivity", "LR sensitivity grows with depth by at most a bound per doubling", "higher",
    check=depth_sensitivity, grids=GRIDS, sweeps=sweeps_by_depth("depth_sensitivity", _requests), needs_depth=True,
    # The stability fixes can restore LR sensitivity across depth too.
    interventions=(*DEPTH_FIXES, "qk_layernorm", "z_loss"),
    figure=((_plot_depth_sensitivity, ("depths", "widths", "sensitivity")),),
    measures="S / (L0 − L*) per depth under the stability recipe",
    fails_when=lambda g: f"it grows by more than {g.max_growth_per_doubling:g} per doubling of depth at any width",
)
