"""The GPT logit-stability check passes with qk-layernorm and fails, with its evidence, without it."""

from __future__ import annotations

import pytest
import torch

from pytest_scaling import checks, families
from pytest_scaling.session import ScalingSession
from pytest_scaling.tiers import TIERS, StabilityGrid

# The cpu tier's widths and top two LRs, 60 steps. Measured (seed 0): max attention logit 16-44 with
# qk-layernorm, 1.1e3-2.9e5 without; |log Z| peaks at 12.8-14.2 with it, 14.9 without (log 64 = 4.2 at init).
CHEAP = StabilityGrid(widths=(64, 128), lrs=(10**-1, 10**-0.5), steps=60, batch_size=32, warmup=6, probe_every=6,
                      max_sensitivity=0.1, attention_logit_cap=1e3, log_z_cap=20.0, stacking="none")


@pytest.fixture
def session() -> ScalingSession:
    return ScalingSession(tier=TIERS["smoke"], device=torch.device("cpu"), seeds=[0])


def test_attention_logits_diverge_at_high_lr_without_qk_layernorm(session: ScalingSession) -> None:
    checks.no_logit_divergence(session, families.gpt(parametrization="mup", qk_layernorm=True, z_loss=1e-4), CHEAP)
    with pytest.raises(AssertionError, match="logit divergence") as failure:
        checks.no_logit_divergence(session, families.gpt(parametrization="mup", qk_layernorm=False, z_loss=1e-4), CHEAP)
    failing = str(failure.value).split("failing:")[1]
    assert "lr=0.316 seed=0 attention logit" in failing and "|log Z|" not in failing
    assert [r["values"]["property"] for r in session.records] == ["no_logit_divergence"] * 2
