"""Tiers: how large a scaling run is (smoke for the plugin's own tests, cpu by default, gpu with --gpu)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Tier:
    """One tier: its name, the device kind it needs ("cpu" or "cuda"), its default seed count, and what it is for."""

    name: str
    device_kind: str
    seeds: int
    description: str


TIERS: dict[str, Tier] = {
    tier.name: tier
    for tier in (
        Tier("smoke", "cpu", 1, "2-3 tiny widths, 5 learning rates: seconds; for testing the plugin itself"),
        Tier("cpu", "cpu", 2, "small widths on 2 CPU cores: within 10 minutes; the default"),
        Tier("gpu", "cuda", 3, "wide models, more learning rates and seeds on one GPU: within 10 minutes"),
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
