"""Placing a tier's grid on a family: relative widths on its unit width, relative LRs on the anchor of an LR-range
step at that width.

``place(scaling, family, grid)`` returns the grid with absolute ``lrs`` / ``lr`` / ``widths`` and what it placed (the
LR bracket and where the widths came from), which the checks put in their records so a report states them.
Absolute grids pass through unchanged. ``unit_width`` is the width a tier places a family's relative widths on: the
base width, halved while the family still builds there and the tier's floor allows; ``batch_for`` is a grid's batch
size for a family's task, as many tokens a step as the tier's grids were calibrated with (docs/design.md, "Cost").
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, TypeVar

import torch

from .contract import misfit_at
from .family import ModelFamily
from .grids import LRRangeGrid, RelativeLRs, RelativeWidths
from .roles import build_checked

Grid = TypeVar("Grid")


def unit_width(family: ModelFamily, floors: Mapping[str, int], multipliers: tuple[float, ...] = (1.0,)) -> int:
    """The width a tier places ``family``'s relative widths (``multipliers`` of it) on: its base width, halved while
    the half is a whole width of at least the floor for its task's input kind (``floors``; none named: the base width
    itself) and the family builds the same parameters and fits its task (``contract.misfit_at``) at the half times
    each multiplier.

    The tiers' relative grids were calibrated on families of that base width; a family written at a wider base (μP's
    base shapes say nothing of where to test it) would otherwise pay for its width in every grid, ~4× the compute
    per doubling, for the same ratios of width."""
    floor = floors.get(family.task.input_kind)
    if not floor:
        return family.base_width
    width = family.base_width
    while width % 2 == 0 and width // 2 >= floor and \
            all(_fits(family, w) for w in RelativeWidths(tuple(multipliers)).at(width // 2)):
        width //= 2
    return width


@functools.lru_cache(maxsize=256)
def _parameter_names(family: ModelFamily, width: int) -> frozenset[str]:
    with torch.random.fork_rng(devices=[]):
        return frozenset(name for name, _ in build_checked(family.build, width).named_parameters())


@functools.lru_cache(maxsize=256)
def _fits(family: ModelFamily, width: int) -> bool:
    """Whether ``family`` builds its base width's parameters at ``width`` and fits its task there."""
    try:
        return _parameter_names(family, width) == _parameter_names(family, family.base_width) and \
            misfit_at(family, width) is None
    except Exception:  # noqa: BLE001 - a width the model does not allow (heads not dividing it): not used
        return False


def batch_for(family: ModelFamily, batch_size: int, seq_len: int | None) -> int:
    """A grid's ``batch_size`` (sequences of ``seq_len`` tokens, as the tier calibrated it) for ``family``'s task: as
    many tokens a step in the task's own sequence length, at least one sequence. Unchanged for a task without
    sequences, or where ``seq_len`` is None.

    Sequences of 64 tokens would otherwise train twice the calibrated tokens a step, at twice the cost, for gradients
    a little less noisy than the thresholds allow for."""
    own = getattr(family.task, "seq_len", None) if family.task.input_kind == "tokens" else None
    if seq_len is None or not own:
        return batch_size
    return max(1, round(batch_size * seq_len / own))


def range_step(family: ModelFamily, tier: Any) -> LRRangeGrid:
    """The tier's LR-range step for ``family``: its grid with the family's batch size."""
    grid = tier.lr_range
    return dataclasses.replace(grid, batch_size=batch_for(family, grid.batch_size, tier.batch_seq_len))


def _widths(family: ModelFamily, relative: RelativeWidths, own_widths: bool, unit: int) -> tuple[tuple[int, ...], str]:
    """The widths a relative grid asks for: the family's own smallest ones when it gives enough (and ``own_widths``),
    else unit × m."""
    wanted = len(relative.multipliers)
    if own_widths and len(family.widths) >= wanted:
        return tuple(sorted(family.widths))[:wanted], "family"
    return relative.at(unit), "tier"


def place(scaling: Any, family: ModelFamily, grid: Grid, *, own_widths: bool = True,
          below_base: bool = True) -> tuple[Grid, dict[str, Any]]:
    """``grid`` with its relative fields made absolute for ``family``, and the placement as record data.

    ``own_widths=False`` keeps the tier's widths even when the family gives its own: the depth properties sweep depth
    at a few small widths, and a family's widths are chosen for the width properties. ``below_base=False`` places
    relative widths on the base width, not the unit width: the width-transfer properties measure how the optimum LR
    moves with width, and below the width a model was written for its finite-width drift reads as that movement.
    Relative LRs are placed on the anchor of an LR-range step at the unit width where the widths were placed there,
    else at the base width (docs/design.md, "Cost")."""
    changes: dict[str, Any] = {}
    placed: dict[str, Any] = {}
    relative_lrs = {name: getattr(grid, name) for name in ("lrs", "lr") if isinstance(getattr(grid, name, None), RelativeLRs)}
    anchor_width = family.base_width
    if isinstance(getattr(grid, "widths", None), RelativeWidths):
        multipliers = grid.widths.multipliers
        unit = unit_width(family, scaling.tier.unit_floors, multipliers) if below_base else family.base_width
        changes["widths"], placed["widths_from"] = _widths(family, grid.widths, own_widths, unit)
        if placed["widths_from"] == "tier":
            placed["unit_width"] = anchor_width = unit
    if relative_lrs:  # anchored where the widths are placed: below its base width a model's optimum drifts
        bracket = scaling.lr_bracket(family, anchor_width)
        for name, relative in relative_lrs.items():
            lrs = relative.at(bracket.anchor)
            changes[name] = lrs if name == "lrs" else lrs[0]
        placed["lr_bracket"] = bracket.to_record()
    if isinstance(getattr(grid, "batch_size", None), int):
        batch = batch_for(family, grid.batch_size, scaling.tier.batch_seq_len)
        if batch != grid.batch_size:
            changes["batch_size"], placed["batch_size"] = batch, {"tier": grid.batch_size, "family": batch}
    if "sweep" in getattr(grid, "__dataclass_fields__", {}):
        changes["sweep"], inner = place(scaling, family, grid.sweep, own_widths=own_widths, below_base=below_base)
        placed.update(inner)
    return (dataclasses.replace(grid, **changes) if changes else grid), placed
