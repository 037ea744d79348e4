"""muP properties: coordinate check on the session's family and the built-ins, LR transfer on the MLP."""

from __future__ import annotations

import pytest

from pytest_scaling import checks


@pytest.mark.scaling(property="coord_check")
def test_coord_check(scaling, model_family):
    checks.coord_check(scaling, model_family)


@pytest.mark.scaling(property="coord_check")
def test_coord_check_builtin_mlp(scaling, mlp_family):
    checks.coord_check(scaling, mlp_family)


@pytest.mark.scaling(property="lr_transfer")
def test_lr_transfer_builtin_mlp(scaling, mlp_family):
    checks.lr_transfer(scaling, mlp_family)


@pytest.mark.scaling(property="wider_is_better")
def test_wider_is_better_builtin_mlp(scaling, mlp_family):
    checks.wider_is_better(scaling, mlp_family)
