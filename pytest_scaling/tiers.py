"""Tiers: how large a scaling run is (smoke for the plugin's own tests, cpu by default, gpu with --gpu).

A tier holds what its properties share: the device kind, the default seed count, its LR-range step (which places
every relative grid on the family). Each property's grid and threshold in each tier live in the property's own module
(``Property.grids``, looked up with ``Property.grid_in``; docs/design.md, "The property model").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import pytest

# The grid types were defined here before they moved to ``grids``: importing them from here keeps working.
from .grids import (  # noqa: F401
    CoordCheckGrid,
    DecayGrid,
    DepthCoordGrid,
    DepthGrid,
    DepthTransferGrid,
    EpsilonGrid,
    LRRangeGrid,
    PowerLawGrid,
    RelativeLRs,
    RelativeWidths,
    StabilityGrid,
    TransferGrid,
)


@dataclass(frozen=True)
class Tier:
    """One tier: its name, the device kind it needs ("cpu" or "cuda"), its default seed count, what it is for, its
    LR-range step, the seconds a family's suite is meant to take (``budget_s``: the plan is stated against it), the
    narrowest unit width its relative grids are placed on by the task's input kind (``unit_floors``,
    ``placement.unit_width``; a kind not named: the family's base width) and the sequence length its batch sizes
    count (``batch_seq_len``, ``placement.batch_for``; None: as many sequences whatever their length)."""

    name: str
    device_kind: str
    seeds: int
    description: str
    lr_range: LRRangeGrid
    budget_s: float
    unit_floors: Mapping[str, int] = field(default_factory=dict)
    batch_seq_len: int | None = None


#: The base widths of the families the cpu tier's relative grids were calibrated on, by the task's input kind: GPTs
#: at 32 (the reference GPT, the zoo, the population at base 32) and the teacher-student MLP at 64. A wider family's
#: grids are placed on its base width halved down to it (``placement.unit_width``). The smoke tier keeps each
#: family's base width and batch sizes, which the plugin's own tests choose.
UNIT_FLOORS = MappingProxyType({"tokens": 32, "features": 64})
#: The sequence length of those GPTs' tasks: a tier's batch sizes count sequences of this length, and a family of
#: other sequences trains as many tokens a step (``placement.batch_for``).
BATCH_SEQ_LEN = 32

TIERS: dict[str, Tier] = {
    tier.name: tier
    for tier in (
        # The plugin's own tests: only the properties resolved at this budget are asserted; the others are
        # inconclusive here (the suite skips them with that reason).
        Tier("smoke", "cpu", 1, "tiny widths, few learning rates and steps: seconds; for testing the plugin itself",
             lr_range=LRRangeGrid(lo=-7, hi=0, per_decade=2, steps=30, batch_size=16), budget_s=60.0),
        Tier("cpu", "cpu", 2, "small widths on 2 CPU cores: within 10 minutes a family; the default",
             lr_range=LRRangeGrid(lo=-7, hi=0, per_decade=2, steps=60, batch_size=32), budget_s=600.0,
             unit_floors=UNIT_FLOORS, batch_seq_len=BATCH_SEQ_LEN),
        Tier("gpu", "cuda", 3, "wide models, more learning rates and seeds on one GPU: within 10 minutes",
             lr_range=LRRangeGrid(lo=-7, hi=0, per_decade=4, steps=200, batch_size=64), budget_s=600.0,
             unit_floors=UNIT_FLOORS, batch_seq_len=BATCH_SEQ_LEN),
    )
}


def resolve_tier(config: pytest.Config) -> Tier:
    """The run's tier: --scaling-tier, else gpu when --gpu is given, else ini scaling_tier, else cpu."""
    try:
        ini_name = config.getini("scaling_tier")
    except TypeError as exc:  # a non-string value in a native TOML config
        raise pytest.UsageError(str(exc)) from None
    name = config.getoption("scaling_tier") or ("gpu" if config.getoption("gpu") else None) or ini_name or "cpu"
    if name not in TIERS:
        raise pytest.UsageError(f"unknown scaling tier {name!r}; choose from {', '.join(TIERS)}")
    return TIERS[name]
