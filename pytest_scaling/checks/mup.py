"""muP's properties: coordinate check, LR transfer across widths (by η* or by the whole loss-vs-LR curve), wider is
better at a fixed LR."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import metrics
from ..placement import place
from ..properties import PROPERTIES
from ..assertions import assert_coord_check, assert_lr_curve_transfer, assert_lr_transfer, assert_wider_is_better
from ..family import ModelFamily
from ..sweep import SweepResult
from ..tiers import CoordCheckGrid, TransferGrid
from ..train import RunResult, TrainConfig
from .._result import jsonable
from ._arguments import grid_or_tier, require_check_arguments
from ._records import json_losses
from ._runs import require_finite_probes


#: The coordinate check's row for an attention module's logits (q·kᵀ·scale).
ATTENTION_LOGITS = "{} (attention logits)"


def _coordinates(run: RunResult) -> dict[str, list[float]]:
    """A run's coordinate sizes per probe step, in forward order: each layer's mean |output|, and each attention
    module's mean |logit| (μP keeps attention logits Θ(1): 1/d_head, not 1/√d_head, once q and k align) after the
    module's own layers (before the readout when no layer is inside it)."""
    rows = list(run.probes["activation"].items())
    for module, sizes in run.probes.get("attention_logit_size", {}).items():
        inside = [i for i, (layer, _) in enumerate(rows) if layer == module or layer.startswith(module + ".")]
        rows.insert(inside[-1] + 1 if inside else max(len(rows) - 1, 0), (ATTENTION_LOGITS.format(module), sizes))
    return dict(rows)


def _layer_sizes(runs: list[RunResult], layers: list[str]) -> np.ndarray:
    """Coordinate sizes [layer, step, width] from one run per width."""
    coordinates = [_coordinates(run) for run in runs]
    return np.array([[sizes[layer] for sizes in coordinates] for layer in layers]).transpose(0, 2, 1)


def coord_check(scaling: Any, family: ModelFamily, grid: CoordCheckGrid | None = None) -> metrics.CoordCheckResult:
    """No parameterised layer's mean |output|, nor any attention module's mean |logit|, may grow with width in the
    first Adam steps.

    Steps 1..T are asserted, growth only: at step 0 only the init speaks, and muP's readout
    (variance 1/fan_in^2) shrinks there by design; at the first steps of a finite-width GPT it is
    still shrinking towards its Theta(1) update part (measured: slope -0.28 at step 1, widths
    64-1024). Growth is what breaks transfer; SP's readout grows with slope >= 0.5. One run per width
    and session seed; sizes are averaged over seeds (geometrically) before the slopes, since a single
    init per width makes the slope noisy. A cell exactly 0 at some width (a zero-initialised readout or query before
    its first update) has no slope: it is skipped and listed in the record's ``zero_cells`` (null slope).
    """
    require_check_arguments("coord_check", grid, CoordCheckGrid, family=family)
    grid, placed = place(scaling, family, grid_or_tier(scaling, "coord_check", grid))
    widths = grid.widths if grid.widths else family.widths
    config = TrainConfig(
        steps=grid.steps + 1, batch_size=grid.batch_size, probe_steps=tuple(range(grid.steps + 1)),
        probe_kinds=("activation", "attention"))
    result = scaling.sweep(family, widths=widths, lrs=(grid.lr,), config=config)
    require_finite_probes(result.runs.values(), "activation", "coordinate check")
    runs_by_seed = [[result.run(w, grid.lr, seed) for w in result.widths] for seed in result.seeds]
    layers = list(_coordinates(runs_by_seed[0][0]))
    per_seed = [_layer_sizes(runs, layers)[:, 1:, :] for runs in runs_by_seed]
    steps = range(1, grid.steps + 1)
    slopes = metrics.coord_slopes(result.widths, metrics.seed_geometric_mean(per_seed), layers=layers, steps=steps)
    seed_values = [metrics.coord_slopes(result.widths, sizes, layers=layers, steps=steps).max_slope for sizes in per_seed]
    PROPERTIES["coord_check"].record(scaling, family.name, value=slopes.max_slope, threshold=grid.max_abs_slope,
                                     seed_values=seed_values, widths=list(result.widths), seeds=list(result.seeds),
                                     slopes=jsonable(slopes.slopes), layers=layers, zero_cells=jsonable(slopes.zero_cells),
                                     lr=grid.lr, recipe=result.recipe, **placed)
    return assert_coord_check(slopes, max_abs_slope=grid.max_abs_slope, two_sided=False)


def _transfer_sweep(scaling: Any, family: ModelFamily, grid: TransferGrid | None,
                    check: str) -> tuple[SweepResult, TransferGrid, dict[str, Any]]:
    """The sweep of a transfer grid (the tier's for the property ``check`` unless one is given), placed on ``family``:
    its runs, the placed grid and the placement. Constant-LR Adam; a tier without the grid skips."""
    require_check_arguments(check, grid, TransferGrid, family=family)
    grid, placed = place(scaling, family, grid_or_tier(scaling, check, grid))
    result = scaling.sweep(family, widths=grid.widths or family.widths, lrs=grid.lrs, seeds=scaling.first_seeds(grid.seeds),
                           config=TrainConfig(steps=grid.steps, batch_size=grid.batch_size))
    return result, grid, placed


def lr_transfer(scaling: Any, family: ModelFamily, grid: TransferGrid | None = None) -> metrics.TransferResult:
    """The optimal LR must not drift with width (|slope of log2 eta* on log2 width| bounded)."""
    result, grid, placed = _transfer_sweep(scaling, family, grid, "lr_transfer")
    transfer = result.lr_transfer()
    PROPERTIES["lr_transfer"].record(scaling, family.name, value=transfer.slope, ci=transfer.ci,
                                     threshold=grid.max_abs_slope, seed_values=transfer.seed_slopes.tolist(),
                                     widths=list(result.widths), lrs=list(result.lrs),
                                     mean_log2_lr=jsonable(transfer.mean_log2_lr), losses=json_losses(result.loss_table()),
                                     recipe=result.recipe, **placed)
    return assert_lr_transfer(transfer, max_abs_slope=grid.max_abs_slope)


def lr_curve_transfer(scaling: Any, family: ModelFamily,
                      grid: TransferGrid | None = None) -> metrics.CurveShiftResult:
    """The loss-vs-LR curve must stay put along the LR axis as width grows: LR transfer read off both flanks of the
    curve (``metrics.curve_shift``) instead of η*, for families whose curves are flat at the top (the GPT at CPU
    budget: its best three LRs lie within 0.01 nats, so η*'s slope ranged from -0.08 to -0.67 over ten seeds)."""
    result, grid, placed = _transfer_sweep(scaling, family, grid, "lr_curve_transfer")
    table = result.loss_table()
    shift = metrics.lr_curve_shift(result.widths, result.lrs, table, initial_loss=result.initial_losses())
    PROPERTIES["lr_curve_transfer"].record(scaling, family.name, value=shift.slope, threshold=grid.max_abs_slope,
                                           seed_values=shift.seed_slopes.tolist(), widths=list(result.widths),
                                           lrs=list(result.lrs), shift=shift.mean_shift.tolist(), losses=json_losses(table),
                                           log2_lr_opt=jsonable(result.lr_transfer().mean_log2_lr),
                                           recipe=result.recipe, **placed)
    return assert_lr_curve_transfer(shift, max_abs_slope=grid.max_abs_slope)


def wider_is_better(scaling: Any, family: ModelFamily, grid: TransferGrid | None = None) -> metrics.WidthTrend:
    """At the LR tuned at the narrowest width, the loss must not rise with width (muP's promise)."""
    result, grid, placed = _transfer_sweep(scaling, family, grid, "wider_is_better")
    seed_mean = result.loss_table().mean(axis=-1)
    tuned_lr = result.lrs[int(np.argmin(seed_mean[0]))]
    trend = metrics.fixed_lr_width_trend(result.widths, result.losses_at_lr(tuned_lr))
    at_lr = result.loss_table()[:, result.lrs.index(tuned_lr), :]  # [width, seed]
    seed_values = [metrics.fixed_lr_width_trend(result.widths, at_lr[:, s]).max_rel_increase
                   for s in range(at_lr.shape[1])]
    PROPERTIES["wider_is_better"].record(scaling, family.name, value=float(trend.max_rel_increase),
                                         threshold=grid.wider_rtol, seed_values=seed_values, lr=tuned_lr,
                                         widths=list(result.widths), losses=result.losses_at_lr(tuned_lr).tolist(),
                                         recipe=result.recipe, **placed)
    return assert_wider_is_better(trend, rtol=grid.wider_rtol)
