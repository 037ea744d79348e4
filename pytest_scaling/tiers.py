"""Tiers: how large a scaling run is (smoke for the plugin's own tests, cpu by default, gpu with --gpu)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class CoordCheckGrid:
    """Coordinate check: one run per width at a fixed LR, activations probed at steps 0..steps.

    ``widths`` empty means the family's own widths."""

    widths: tuple[int, ...]
    lr: float
    steps: int
    batch_size: int
    max_abs_slope: float


@dataclass(frozen=True)
class TransferGrid:
    """LR transfer and "wider is better": widths x log2-spaced LRs x the tier's seeds."""

    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    steps: int
    batch_size: int
    max_abs_slope: float
    wider_rtol: float


def _log2_grid(lo: int, hi: int) -> tuple[float, ...]:
    return tuple(2.0**e for e in range(lo, hi + 1))


@dataclass(frozen=True)
class Tier:
    """One tier: its name, the device kind it needs ("cpu" or "cuda"), its default seed count,
    what it is for, and the grids and thresholds of each property (one place, per tier)."""

    name: str
    device_kind: str
    seeds: int
    description: str
    coord_check: CoordCheckGrid
    lr_transfer: TransferGrid


TIERS: dict[str, Tier] = {
    tier.name: tier
    for tier in (
        Tier(
            "smoke", "cpu", 1, "2-3 tiny widths, 5 learning rates: seconds; for testing the plugin itself",
            coord_check=CoordCheckGrid(widths=(32, 64, 128), lr=1e-2, steps=3, batch_size=16, max_abs_slope=0.15),
            lr_transfer=TransferGrid(widths=(32, 64, 128), lrs=_log2_grid(-12, -4), steps=100, batch_size=64,
                                     max_abs_slope=0.25, wider_rtol=0.02),
        ),
        Tier(
            "cpu", "cpu", 2, "small widths on 2 CPU cores: within 10 minutes; the default",
            coord_check=CoordCheckGrid(widths=(64, 128, 256, 512, 1024), lr=1e-2, steps=3, batch_size=32, max_abs_slope=0.15),
            lr_transfer=TransferGrid(widths=(128, 256, 512), lrs=_log2_grid(-14, -4), steps=300, batch_size=128,
                                     max_abs_slope=0.25, wider_rtol=0.01),
        ),
        Tier(
            "gpu", "cuda", 3, "wide models, more learning rates and seeds on one GPU: within 10 minutes",
            coord_check=CoordCheckGrid(widths=(256, 512, 1024, 2048, 4096), lr=1e-2, steps=5, batch_size=64, max_abs_slope=0.15),
            lr_transfer=TransferGrid(widths=(256, 512, 1024, 2048), lrs=_log2_grid(-16, -4), steps=1000, batch_size=256,
                                     max_abs_slope=0.25, wider_rtol=0.01),
        ),
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
