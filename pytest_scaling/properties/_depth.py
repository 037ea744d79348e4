"""What the depth properties share: one family per depth, from a family's ``at_depth`` or a function of the layer
count, checked before anything trains, and the family their grid is placed on."""

from __future__ import annotations

from typing import Any, Callable, TypeVar, Union

from .. import _validate
from ..contract import require_family
from ..family import ModelFamily
from ..placement import place

Grid = TypeVar("Grid")

#: A family with ``at_depth``, or a function from a layer count to the family at that depth.
DepthFamilies = Union[ModelFamily, Callable[[int], ModelFamily]]


def families_by_depth(check: str, families: DepthFamilies, depths: tuple[int, ...]) -> tuple[str, list[ModelFamily]]:
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


def placement_family(given: DepthFamilies, families: list[ModelFamily]) -> ModelFamily:
    """The family a depth grid is placed on (its LR anchor, its widths): the one given, else the shallowest, so that
    every depth sweeps the same LRs."""
    return given if isinstance(given, ModelFamily) else families[0]


def by_depth(scaling: Any, check: str, build_family: DepthFamilies,
             grid: Grid) -> tuple[str, list[ModelFamily], Grid, dict[str, Any]]:
    """The depth properties' start: the records' name, one family per depth of ``grid``, and ``grid`` placed on the
    family it is placed on (its widths the grid's own, not the family's: depth is swept at a few small widths)."""
    name, families = families_by_depth(check, build_family, grid.depths)
    placed_grid, placed = place(scaling, placement_family(build_family, families), grid, own_widths=False)
    return name, families, placed_grid, placed


def sweeps_by_depth(check: str, requests: Callable[[Any, list[ModelFamily], Any], list[Any]]) -> Callable[..., list[Any]]:
    """A depth property's ``Property.sweeps``: ``requests(scaling, families, placed_grid)`` at the grid's depths."""

    def sweeps(scaling: Any, family: ModelFamily, grid: Any) -> list[Any]:
        _, families, placed_grid, _ = by_depth(scaling, check, family, grid)
        return requests(scaling, families, placed_grid)

    return sweeps
