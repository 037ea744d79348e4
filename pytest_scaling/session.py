"""The object behind the ``scaling`` fixture: the run's tier, device and seeds, and the records reports are built from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_scaling.tiers import Tier

if TYPE_CHECKING:
    import torch


@dataclass
class ScalingSession:
    """Session-wide state shared by every scaling test: where and how large runs are, and what they recorded."""

    tier: Tier
    device: torch.device
    seeds: list[int]
    records: list[dict[str, Any]] = field(default_factory=list)

    def record(self, name: str, /, **values: Any) -> None:
        """Store a snapshot of JSON-able ``values`` under ``name`` for the report; anything else fails here, at the call."""
        if not isinstance(name, str):
            raise TypeError(f"scaling.record(): the name must be a str, got {type(name).__name__}")
        try:
            snapshot = json.loads(json.dumps(values))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"scaling.record({name!r}): values must be JSON-serialisable: {exc}") from None
        self.records.append({"name": name, "values": snapshot})
