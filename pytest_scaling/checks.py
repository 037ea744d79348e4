"""The suite's properties as library calls: sweep, metric, assertion, record.

``checks.<name>`` is the check of the property ``<name>`` (``pytest_scaling.properties.<name>``, or one registered
from outside the package): it takes the ``scaling`` session object and a family, runs what it needs through the
session's sweep (so runs are cached, stacked and on the session's device), asserts, records the evidence for the
report, and returns the result. A user's own scaling test is three lines:

    def test_my_model_transfers(scaling, model_family):
        pytest_scaling.checks.lr_curve_transfer(scaling, model_family)
"""

from __future__ import annotations

from typing import Any

from . import properties
from .diagnosis import diagnose


def __getattr__(name: str) -> Any:
    registry = properties.PROPERTIES
    if name in registry:
        return registry[name].check
    raise AttributeError(f"module 'pytest_scaling.checks' has no check {name!r}; the checks: {', '.join(registry)}")


def __dir__() -> list[str]:
    return sorted([*globals(), *properties.PROPERTIES])


__all__ = ["diagnose", *properties.PROPERTIES]
