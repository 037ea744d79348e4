"""The public API: every advertised name resolves, the grids a user passes import from the package, and no metric
hides under a check's name."""

from __future__ import annotations

import pytest

import pytest_scaling
from pytest_scaling import checks, tiers


def test_every_public_name_resolves() -> None:
    for name in pytest_scaling.__all__:
        assert getattr(pytest_scaling, name) is not None


def test_the_grid_types_a_user_passes_import_from_the_package() -> None:
    for name in ("RelativeLRs", "RelativeWidths", "CoordCheckGrid", "TransferGrid", "StabilityGrid", "PowerLawGrid",
                 "EpsilonGrid", "DecayGrid", "DepthGrid", "DepthCoordGrid", "DepthTransferGrid", "TIERS"):
        assert getattr(pytest_scaling, name) is getattr(tiers, name)


def test_no_top_level_name_is_a_metric_named_like_a_check() -> None:
    clashing = set(pytest_scaling.__all__) & set(checks.__all__)
    assert not clashing, f"top-level names that are also checks: {sorted(clashing)}"
    with pytest.raises(AttributeError, match="has no attribute 'lr_transfer'"):
        pytest_scaling.lr_transfer  # noqa: B018 (the metric is pytest_scaling.metrics.lr_transfer)
