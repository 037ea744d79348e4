"""A check's arguments, checked before anything trains: its families and a grid of the check's own type, each wrong
one a one-line TypeError that names the check and the argument."""

from __future__ import annotations

from typing import Any

import pytest

from ..contract import require_family
from ..properties import PROPERTIES


def require_check_arguments(check: str, grid: Any, grid_type: type, **families: Any) -> None:
    """``families`` (argument name -> value) must be ModelFamily objects and ``grid`` a ``grid_type`` or None."""
    for name, family in families.items():
        require_family(family, f"{check}(): {name}")
    if grid is not None and not isinstance(grid, grid_type):
        raise TypeError(f"{check}(): grid must be a pytest_scaling.tiers.{grid_type.__name__} or None, "
                        f"got {type(grid).__name__}")


def grid_or_tier(scaling: Any, property_name: str, grid: Any) -> Any:
    """``grid``, else the session tier's grid for the property; a tier without one (its budget cannot resolve the
    property) skips the test as inconclusive, never fails it."""
    if grid is not None:
        return grid
    from ..suite import not_asserted  # the suite's wording of the same skip

    prop = PROPERTIES[property_name]
    reason = not_asserted(prop, scaling.tier)
    if reason is not None:
        pytest.skip(f"{reason}, or pass a grid")
    return getattr(scaling.tier, prop.grid)
