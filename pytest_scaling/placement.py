"""Placing a tier's grid on a family: relative LRs on the anchor of its LR-range step, relative widths on its own.

``place(scaling, family, grid)`` returns the grid with absolute ``lrs`` / ``lr`` / ``widths`` and what it placed (the
LR bracket and where the widths came from), which the checks put in their records so a report states them.
Absolute grids pass through unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from .family import ModelFamily
from .grids import RelativeLRs, RelativeWidths

Grid = TypeVar("Grid")


def _widths(family: ModelFamily, relative: RelativeWidths, own_widths: bool) -> tuple[tuple[int, ...], str]:
    """The widths a relative grid asks for: the family's own smallest ones when it gives enough (and ``own_widths``),
    else base × m."""
    wanted = len(relative.multipliers)
    if own_widths and len(family.widths) >= wanted:
        return tuple(sorted(family.widths))[:wanted], "family"
    return relative.at(family.base_width), "tier"


def place(scaling: Any, family: ModelFamily, grid: Grid, *, own_widths: bool = True) -> tuple[Grid, dict[str, Any]]:
    """``grid`` with its relative fields made absolute for ``family``, and the placement as record data.

    ``own_widths=False`` keeps the tier's widths even when the family gives its own: the depth properties sweep depth
    at a few small widths, and a family's widths are chosen for the width properties."""
    changes: dict[str, Any] = {}
    placed: dict[str, Any] = {}
    relative_lrs = {name: getattr(grid, name) for name in ("lrs", "lr") if isinstance(getattr(grid, name, None), RelativeLRs)}
    if relative_lrs:
        bracket = scaling.lr_bracket(family)
        for name, relative in relative_lrs.items():
            lrs = relative.at(bracket.anchor)
            changes[name] = lrs if name == "lrs" else lrs[0]
        placed["lr_bracket"] = bracket.to_record()
    if isinstance(getattr(grid, "widths", None), RelativeWidths):
        changes["widths"], placed["widths_from"] = _widths(family, grid.widths, own_widths)
    if "sweep" in getattr(grid, "__dataclass_fields__", {}):
        changes["sweep"], inner = place(scaling, family, grid.sweep, own_widths=own_widths)
        placed.update(inner)
    return (dataclasses.replace(grid, **changes) if changes else grid), placed
