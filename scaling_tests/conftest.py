"""Fixtures the reference suite's family-specific tests share: the built-in families they check."""

from __future__ import annotations

import pytest

from pytest_scaling import families


@pytest.fixture(scope="session")
def mlp_family():
    """The built-in muP MLP on the teacher-student task."""
    return families.mlp(parametrization="mup")
