"""Depth (built-in GPT under Depth-μP): the residual stream keeps its size as depth grows, the loss-vs-LR curve stays
put, and LR sensitivity does not grow with depth.

All three run in the cpu and gpu tiers (the gpu tier reuses the cpu tier's transfer and sensitivity grids over more
seeds). The checks and their controls (plain and 1/√L-only residuals) live in the library and tests/."""

from __future__ import annotations

import pytest
from test_gpt import Z_LOSS  # the suite's stable GPT recipe

from pytest_scaling import checks, families
from pytest_scaling.family import ModelFamily


def gpt_at_depth(n_layers: int) -> ModelFamily:
    """The suite's stable GPT (muP, qk-layernorm, z-loss) under Depth-μP: residual branches scaled by 1/√L and the
    blocks' LR by (L / 2)^-1/2."""
    return families.gpt(parametrization="mup", qk_layernorm=True, z_loss=Z_LOSS, n_layers=n_layers,
                        residual_scale="depth-mup")


@pytest.mark.scaling(property="depth_coord_check")
def test_depth_coord_check_builtin_gpt(scaling):
    checks.depth_coord_check(scaling, gpt_at_depth)


@pytest.mark.scaling(property="depth_lr_transfer")
def test_depth_lr_transfer_builtin_gpt(scaling):
    checks.depth_lr_transfer(scaling, gpt_at_depth)


@pytest.mark.scaling(property="depth")
def test_depth_builtin_gpt(scaling):
    checks.depth(scaling, gpt_at_depth)
