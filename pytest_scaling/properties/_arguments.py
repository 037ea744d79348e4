"""A check's arguments, checked before anything trains: its families and a grid of the check's own type, each wrong
one a one-line TypeError that names the check and the argument; and the grid it runs when none is given."""

from __future__ import annotations

from typing import Any

import pytest

from ..contract import require_family
from ..property import Property


def require_check_arguments(check: str, grid: Any, grid_type: type, **families: Any) -> None:
    """``families`` (argument name -> value) must be ModelFamily objects and ``grid`` a ``grid_type`` or None."""
    for name, family in families.items():
        require_family(family, f"{check}(): {name}")
    if grid is not None and not isinstance(grid, grid_type):
        raise TypeError(f"{check}(): grid must be a pytest_scaling.{grid_type.__name__} or None, "
                        f"got {type(grid).__name__}")


def grid_or_tier(scaling: Any, prop: Property, grid: Any) -> Any:
    """``grid``, else the session tier's grid for ``prop``; a tier without one (its budget cannot resolve the
    property) skips the test as inconclusive, never fails it."""
    if grid is not None:
        return grid
    reason = prop.not_asserted(scaling.tier)
    if reason is not None:
        pytest.skip(f"{reason}, or pass a grid")
    return prop.grid_in(scaling.tier)
