"""Demonstrations on the built-in families beyond the standard suite: a comparison of two variants, and LR transfer
read off the optimum η* where the curves are peaked enough for it. They do not run with --scaling-family."""

from __future__ import annotations

import pytest

from pytest_scaling import checks, families


@pytest.mark.scaling(property="qk_layernorm_lowers_sensitivity", builtin=True)
def test_qk_layernorm_lowers_lr_sensitivity(scaling):
    checks.qk_layernorm_lowers_sensitivity(scaling, families.reference_gpt(),
                                           families.reference_gpt(qk_layernorm=False))


@pytest.mark.scaling(property="lr_transfer", builtin=True)
def test_optimal_lr_transfers_on_the_mlp(scaling):
    checks.lr_transfer(scaling, families.reference_mlp())
