"""A check's arguments, checked before anything trains: a family (or a factory of one per depth) and a grid of the
check's own type, each wrong one a one-line TypeError that names the check and the argument."""

from __future__ import annotations

from typing import Any

from ..contract import require_family


def require_check_arguments(check: str, grid: Any, grid_type: type, **families: Any) -> None:
    """``families`` (argument name -> value) must be ModelFamily objects and ``grid`` a ``grid_type`` or None."""
    for name, family in families.items():
        require_family(family, f"{check}(): {name}")
    if grid is not None and not isinstance(grid, grid_type):
        raise TypeError(f"{check}(): grid must be a pytest_scaling.tiers.{grid_type.__name__} or None, "
                        f"got {type(grid).__name__}")


def require_family_factory(check: str, build_family: Any) -> None:
    """``build_family`` must be a callable ``build_family(n_layers) -> ModelFamily`` (such as a family's ``at_depth``)."""
    if not callable(build_family):
        raise TypeError(f"{check}(): build_family must be a callable build_family(n_layers) -> ModelFamily "
                        f"(such as family.at_depth), got {type(build_family).__name__}")
