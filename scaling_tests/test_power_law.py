"""Scaling-law properties: the best-LR loss follows a power law in size, and the largest size is predicted from the others."""

from __future__ import annotations

import pytest

from pytest_scaling import checks


@pytest.mark.scaling(property="power_law")
def test_power_law_builtin_mlp(scaling, mlp_family):
    checks.power_law(scaling, mlp_family)


@pytest.mark.scaling(property="extrapolation")
def test_extrapolates_builtin_mlp(scaling, mlp_family):
    checks.extrapolates(scaling, mlp_family)
