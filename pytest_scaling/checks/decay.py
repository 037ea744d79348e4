"""Weight decay's timescale across widths (``pytest_scaling.decay``): measured on the optimizer the family's runs use,
one step per width, without training."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..assertions import assert_decay_timescale
from ..decay import DecayTimescales, measure_decay
from ..family import ModelFamily
from ..placement import place
from ..properties import PROPERTIES
from ..tiers import DecayGrid
from ._arguments import grid_or_tier, require_check_arguments
from .stability import stability_optimizer


def _optimizer_at(family: ModelFamily, grid: DecayGrid) -> Callable[[int], tuple[nn.Module, torch.optim.Optimizer]]:
    """``width -> (model, optimizer)`` at the placed grid's LR: the family's own optimizer, or the optimizer the
    stability sweeps train with; the model in float64, so that a small decay reads exactly."""
    recipe, lr = stability_optimizer(grid.weight_decay), grid.lr

    def instantiate(width: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        model, groups = family.instantiate(width, 0)
        model.double()  # in place: the groups keep pointing at the same parameters
        return model, family.optimizer(model, lr) if family.optimizer else recipe.build(groups, lr)

    return instantiate


def weight_decay(scaling: Any, family: ModelFamily, grid: DecayGrid | None = None) -> DecayTimescales | None:
    """Weight decay must forget over the same number of steps at every width: a timescale τ = 1/(ηλ) that grows with
    width (decay coupled to a μP LR) makes the narrow proxy's decay act m times faster than the wide model's.

    Returns None, recorded as not applicable, when no parameter decays."""
    require_check_arguments("weight_decay", grid, DecayGrid, family=family)
    grid, placed = place(scaling, family, grid_or_tier(scaling, "weight_decay", grid))
    widths = grid.widths or family.widths
    result = measure_decay(_optimizer_at(family, grid), widths, grid.lr)
    prop = PROPERTIES["weight_decay"]
    if result.max_abs_slope is None:
        prop.record(scaling, family.name, value=None, threshold=None, applicable=False,
                    reason="no parameter decays: the optimizer applies no weight decay", **placed)
        return None
    prop.record(scaling, family.name, applicable=True, value=result.max_abs_slope, threshold=grid.max_abs_slope,
                **result.to_dict(), worst=result.worst, **placed)
    return assert_decay_timescale(result, max_abs_slope=grid.max_abs_slope)
