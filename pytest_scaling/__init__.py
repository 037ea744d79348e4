"""pytest-scaling: scaling-property tests (muP transfer, coordinate checks, power laws, logit stability) as a pytest plugin.

The public names below load on first use, so that loading the plugin into every pytest run
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "ModelFamily": "family",
    "ScalingSuite": "suite",
    "PROPERTIES": "properties",
    "Property": "property",
    "Parametrization": "parametrization",
    "PARAMETRIZATIONS": "parametrization",
    "AdamW": "optim",
    "AdamAtan2": "optim",
    "TrainConfig": "train",
    "OptimizerSpec": "train",
    "RunResult": "train",
    "train_run": "train",
    "fit_power_law": "fit",
    "fit_chinchilla": "fit",
    "extrapolation_check": "fit",
    "optimal_lr": "metrics",
    "coord_slopes": "metrics",
    # The grids a user passes to a check or a suite's ``grids``, and the relative widths and LRs they take.
    "RelativeLRs": "grids",
    "RelativeWidths": "grids",
    "CoordCheckGrid": "grids",
    "TransferGrid": "grids",
    "StabilityGrid": "grids",
    "PowerLawGrid": "grids",
    "EpsilonGrid": "grids",
    "DecayGrid": "grids",
    "DepthGrid": "grids",
    "DepthCoordGrid": "grids",
    "DepthTransferGrid": "grids",
    "TIERS": "tiers",
    "assert_lr_transfer": "assertions",
    "assert_coord_check": "assertions",
    "assert_power_law": "assertions",
    "assert_extrapolation": "assertions",
    "assert_lr_sensitivity": "assertions",
    "assert_no_logit_divergence": "assertions",
    "assert_wider_is_better": "assertions",
    "assert_adam_epsilon": "assertions",
    "assert_weight_decay": "assertions",
}
_SUBMODULES = ("families", "tasks", "parametrization", "fit", "metrics", "assertions", "train", "optim", "checks",
               "properties", "interventions", "grids")

__all__ = sorted(_PUBLIC) + list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'pytest_scaling' has no attribute {name!r}")
