"""Depth: the residual stream must not scale with depth (Depth-μP's coordinate check), the loss-vs-LR curve must not
move along the LR axis with depth (LR transfer), and LR sensitivity may grow with depth only up to a bound."""

from __future__ import annotations

from typing import Any, Callable, Union

import numpy as np

from .. import _validate, metrics
from .._result import jsonable
from ..assertions import assert_depth_coord_check, assert_depth_lr_transfer, assert_depth_sensitivity
from ..contract import require_family
from ..family import ModelFamily
from ..placement import place
from ..probes import is_norm
from ..properties import PROPERTIES
from ..tiers import DepthCoordGrid, DepthGrid, DepthTransferGrid
from ..train import TrainConfig
from ._arguments import grid_or_tier, require_check_arguments
from ._records import json_losses
from ._runs import require_finite_probes
from .stability import stability_sweep


DepthFamilies = Union[ModelFamily, Callable[[int], ModelFamily]]


def _families_by_depth(check: str, families: DepthFamilies, depths: tuple[int, ...]) -> tuple[str, list[ModelFamily]]:
    """The name the depth records go under and one family per depth, after checking the depths (before anything
    trains): at least two, increasing. ``families`` is a family with ``at_depth`` (its records carry its name) or a
    function from a layer count to the family at that depth (records carry the deepest family's name)."""
    _validate.increasing("depths", depths)
    if any(not isinstance(d, int) or isinstance(d, bool) for d in depths):
        raise ValueError(f"depths must be integers (layer counts), got {list(depths)}")
    if isinstance(families, ModelFamily):
        if families.at_depth is None:
            raise ValueError(f"{check}(): family {families.name!r} has no at_depth: give ModelFamily(at_depth=...) "
                             "to run the depth checks")
        factory, label = families.at_depth, f"{families.name}.at_depth"
    elif callable(families):
        factory, label = families, "build_family"
    else:
        raise TypeError(f"{check}(): build_family must be a ModelFamily with at_depth, or a function from a layer "
                        f"count to a ModelFamily, got {type(families).__name__}")
    built = [factory(n_layers) for n_layers in depths]
    for n_layers, family in zip(depths, built):
        require_family(family, f"{check}(): {label}({n_layers})")
    return (families.name if isinstance(families, ModelFamily) else built[-1].name), built


def depth(scaling: Any, build_family: DepthFamilies, grid: DepthGrid | None = None) -> metrics.SensitivityResult:
    """LR sensitivity S (Wortsman et al.) may grow by at most the tier's bound per doubling of depth, at every width:
    unscaled residual branches add up, so a deep stack loses its high LRs, while Depth-μP keeps the loss-vs-LR curve,
    and so S, the same at every depth.

    ``build_family(n_layers)`` gives the family at one depth; each is swept like ``lr_sensitivity`` (the grid's
    ``sweep``), S taken from the seed-mean loss curves. Returns the S-by-depth result of the width where S grows
    fastest. η* per depth is recorded as evidence only.
    """
    require_check_arguments("depth", grid, DepthGrid)
    grid = grid_or_tier(scaling, "depth", grid)
    name, families = _families_by_depth("depth", build_family, grid.depths)
    grid, placed = place(scaling, _placement_family(build_family, families), grid, own_widths=False)
    results = [stability_sweep(scaling, family, grid.sweep) for family in families]
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
    PROPERTIES["depth"].record(scaling, name, families=[f.name for f in families], seed_values=seed_growth.tolist(),
                   recipe=results[0].recipe, **placed,
                   depths=list(grid.depths), widths=list(widths), lrs=list(results[0].lrs),
                   value=growth[worst], threshold=grid.max_growth_per_doubling,
                   sensitivity=[s.mean.tolist() for s in sensitivity], growth_per_doubling=growth,
                   log2_lr_opt=[o.mean_log2_lr.tolist() for o in optimum], lr_slope=[o.slope for o in optimum],
                   losses=json_losses(tables.mean(axis=-1)))
    return assert_depth_sensitivity(sensitivity[worst], optimum[worst], width=widths[worst],
                                    max_growth_per_doubling=grid.max_growth_per_doubling)


def _placement_family(given: DepthFamilies, families: list[ModelFamily]) -> ModelFamily:
    """The family a depth grid is placed on (its LR anchor, its widths): the one given, else the shallowest, so that
    every depth sweeps the same LRs."""
    return given if isinstance(given, ModelFamily) else families[0]


def _top_norm(family: ModelFamily, width: int) -> str:
    """The model's last registered normalisation layer: in a pre-LN network, the final norm before the readout."""
    model, _ = family.instantiate(width, 0)
    norms = [name for name, module in model.named_modules() if is_norm(module)]
    if not norms:
        raise ValueError(f"family {family.name!r} has no normalisation layer (a module whose class name contains "
                         "'Norm': LayerNorm, RMSNorm, GroupNorm or the model's own): the depth coordinate check reads "
                         "the residual stream at the input of the last one")
    return norms[-1]


def depth_coord_check(scaling: Any, build_family: DepthFamilies,
                      grid: DepthCoordGrid | None = None) -> metrics.CoordCheckResult:
    """The residual stream the readout reads must keep its size as depth grows at init, and not grow with depth in the
    first Adam steps (``assert_depth_coord_check`` says why shrinking after init is not counted).

    Depth-μP's coordinate check: L residual branches add up, so without 1/√L branch multipliers the stream grows
    like √L at init, and without the blocks' LR scaled by L^-1/2 their updates grow it like √L in training. Sizes
    are averaged geometrically over the session's seeds, and every width of the grid is asserted.
    """
    require_check_arguments("depth_coord_check", grid, DepthCoordGrid)
    grid = grid_or_tier(scaling, "depth_coord_check", grid)
    config = TrainConfig(steps=grid.steps + 1, batch_size=grid.batch_size, probe_steps=tuple(range(grid.steps + 1)),
                         probe_kinds=("norm_input",))
    name, families = _families_by_depth("depth_coord_check", build_family, grid.depths)
    grid, placed = place(scaling, _placement_family(build_family, families), grid, own_widths=False)
    norms = [_top_norm(family, grid.widths[0]) for family in families]
    results = [scaling.sweep(family, widths=grid.widths, lrs=(grid.lr,), config=config) for family in families]
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
    PROPERTIES["depth_coord_check"].record(scaling, name, seed_values=seed_values, recipe=results[0].recipe, **placed,
                   families=[f.name for f in families], value=metrics.depth_coord_excess(slopes)[0],
                   threshold=grid.max_abs_slope, depths=list(grid.depths), widths=list(grid.widths),
                   seeds=list(results[0].seeds), slopes=jsonable(slopes.slopes), sizes=jsonable(sizes))
    return assert_depth_coord_check(slopes, max_abs_slope=grid.max_abs_slope)


def depth_lr_transfer(scaling: Any, build_family: DepthFamilies,
                      grid: DepthTransferGrid | None = None) -> metrics.CurveShiftResult:
    """The loss-vs-LR curve must stay put along the LR axis as depth grows: an LR tuned shallow then holds deep.

    Measured as the curve's shift from the shallowest depth's (both flanks, not the often flat top), per seed, at
    every width; the widest is asserted. With 1/√L branches alone the curve moves to lower LRs (the blocks' Θ(η)
    updates add up to Θ(η√L)); Depth-μP's block LR × L^-1/2 holds it.
    """
    require_check_arguments("depth_lr_transfer", grid, DepthTransferGrid)
    grid = grid_or_tier(scaling, "depth_lr_transfer", grid)
    name, families = _families_by_depth("depth_lr_transfer", build_family, grid.depths)
    grid, placed = place(scaling, _placement_family(build_family, families), grid, own_widths=False)
    config = TrainConfig(steps=grid.steps, batch_size=grid.batch_size)
    results = [scaling.sweep(family, widths=grid.widths, lrs=grid.lrs, seeds=scaling.first_seeds(grid.seeds), config=config)
               for family in families]
    tables = np.stack([result.loss_table() for result in results])  # [depth, width, lr, seed]
    initial = np.stack([result.initial_losses() for result in results])  # [depth, width, seed]
    shifts = [metrics.lr_curve_shift(grid.depths, grid.lrs, tables[:, w], initial_loss=initial[:, w])
              for w in range(len(grid.widths))]
    PROPERTIES["depth_lr_transfer"].record(scaling, name, seed_values=shifts[-1].seed_slopes.tolist(),
                   recipe=results[0].recipe, **placed,
                   families=[f.name for f in families], value=shifts[-1].slope, threshold=grid.max_abs_slope,
                   depths=list(grid.depths), widths=list(grid.widths), lrs=list(grid.lrs),
                   shift=[s.mean_shift.tolist() for s in shifts], slopes=[s.slope for s in shifts],
                   losses=json_losses(tables.mean(axis=-1)))
    return assert_depth_lr_transfer(shifts[-1], width=grid.widths[-1], max_abs_slope=grid.max_abs_slope)
