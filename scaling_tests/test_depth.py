"""Depth (built-in GPT): with 1/√L residual branches, LR sensitivity may grow only slowly with depth.

Skipped in every tier for now: on the CPU grid tried, the clean family failed the bound on 2 of 5 seeds
(benchmarks/RESULTS.md, "Depth"); the check and its residual-scaling control live in the library and tests/."""

from __future__ import annotations

import pytest

from pytest_scaling import checks, families, tasks
from pytest_scaling.family import ModelFamily

# A language small enough for depth 8 on CPU.
SMALL_LANGUAGE = tasks.markov_language(vocab=32, seq_len=16)


def gpt_at_depth(n_layers: int) -> ModelFamily:
    """muP GPT with qk-layernorm, z-loss 1e-4 and residual branches scaled by 1/√L."""
    return families.gpt(parametrization="mup", qk_layernorm=True, z_loss=1e-4, task=SMALL_LANGUAGE, n_layers=n_layers,
                        residual_scale="1/sqrt(L)", name=f"gpt-L{n_layers}-mup-qkln-z0.0001-sqrtL")


@pytest.mark.scaling(property="depth")
def test_depth_builtin_gpt(scaling):
    checks.depth(scaling, gpt_at_depth)
