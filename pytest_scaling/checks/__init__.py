"""The suite's properties as library calls: sweep, metric, assertion, record.

Each check takes the ``scaling`` session object and a family, runs what it needs through the
session's sweep (so runs are cached, stacked and on the session's device), asserts, records the
evidence for the report, and returns the result. A user's own scaling test is three lines:

    def test_my_model_transfers(scaling, model_family):
        pytest_scaling.checks.lr_transfer(scaling, model_family)
"""

from __future__ import annotations

from ..diagnosis import diagnose
from .adam import adam_epsilon
from .decay import weight_decay
from .depth import depth, depth_coord_check, depth_lr_transfer
from .mup import coord_check, lr_curve_transfer, lr_transfer, wider_is_better
from .scaling_law import extrapolates, power_law
from .stability import lr_sensitivity, no_logit_divergence, qk_layernorm_lowers_sensitivity

__all__ = ["adam_epsilon", "diagnose", "depth", "depth_coord_check", "depth_lr_transfer", "coord_check", "lr_transfer", "lr_curve_transfer", "wider_is_better", "lr_sensitivity", "no_logit_divergence",
           "qk_layernorm_lowers_sensitivity", "power_law", "extrapolates", "weight_decay"]
