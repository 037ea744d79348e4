"""GPT stability properties (Wortsman et al.): LR sensitivity, qk-layernorm's effect on it, and no logit divergence."""

from __future__ import annotations

import pytest

from pytest_scaling import checks, families


@pytest.fixture(scope="session")
def gpt_family():
    """muP GPT with qk-layernorm and z-loss 1e-4: the stable recipe."""
    return families.gpt(parametrization="mup", qk_layernorm=True, z_loss=1e-4)


@pytest.fixture(scope="session")
def gpt_family_without_qk_layernorm():
    return families.gpt(parametrization="mup", qk_layernorm=False, z_loss=1e-4)


@pytest.mark.scaling(property="lr_sensitivity")
def test_lr_sensitivity_builtin_gpt(scaling, gpt_family):
    checks.lr_sensitivity(scaling, gpt_family)


@pytest.mark.scaling(property="lr_sensitivity")
def test_qk_layernorm_lowers_lr_sensitivity_builtin_gpt(scaling, gpt_family, gpt_family_without_qk_layernorm):
    checks.qk_layernorm_lowers_sensitivity(scaling, gpt_family, gpt_family_without_qk_layernorm)


@pytest.mark.scaling(property="logit_stability")
def test_no_logit_divergence_builtin_gpt(scaling, gpt_family):
    checks.no_logit_divergence(scaling, gpt_family)
