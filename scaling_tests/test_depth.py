"""Depth (built-in GPT): with 1/√L residual branches, LR sensitivity stays nearly flat from 2 to 8 layers."""

from __future__ import annotations

import pytest

from pytest_scaling import checks, families, tasks
from pytest_scaling.family import ModelFamily

# The language the tiers' depth grids were calibrated on (tiers.py): small enough for depth 8 on CPU.
SMALL_LANGUAGE = tasks.markov_language(vocab=32, seq_len=16)


def gpt_at_depth(n_layers: int) -> ModelFamily:
    """muP GPT with qk-layernorm, z-loss 1e-4 and residual branches scaled by 1/√L."""
    return families.gpt(parametrization="mup", qk_layernorm=True, z_loss=1e-4, task=SMALL_LANGUAGE, n_layers=n_layers,
                        residual_scale="1/sqrt(L)", name=f"gpt-L{n_layers}-mup-qkln-z0.0001-sqrtL")


@pytest.mark.scaling(property="depth", tiers=("cpu", "gpu"))
def test_depth_builtin_gpt(scaling):
    checks.depth(scaling, gpt_at_depth)
