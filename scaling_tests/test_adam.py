"""Adam epsilon (Everett et al.): ε must stay small against every layer's gradients at the largest width."""

from __future__ import annotations

import pytest

from pytest_scaling import checks


@pytest.mark.scaling(property="adam_epsilon")
def test_adam_epsilon(scaling, model_family):
    checks.adam_epsilon(scaling, model_family)
