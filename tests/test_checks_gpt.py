"""GPT checks: logit stability passes with qk-layernorm and fails, with its evidence, without it; LR transfer across
width fails under SP; the zero-readout option."""

from __future__ import annotations

import pytest

from conftest import training_session
from pytest_scaling import checks, families
from pytest_scaling.session import ScalingSession
from pytest_scaling.tiers import StabilityGrid, TransferGrid

# The cpu tier's widths and top two LRs, 60 steps. Measured (seed 0): max attention logit 16-44 with
# qk-layernorm, 1.1e3-2.9e5 without; |log Z| peaks at 12.8-14.2 with it, 14.9 without (log 64 = 4.2 at init).
CHEAP = StabilityGrid(widths=(64, 128), lrs=(10**-1, 10**-0.5), steps=60, batch_size=32, warmup=6, probe_every=6,
                      max_sensitivity=0.1, attention_logit_cap=1e3, log_z_cap=20.0, stacking="none")


@pytest.fixture
def session() -> ScalingSession:
    return training_session()


def test_attention_logits_diverge_at_high_lr_without_qk_layernorm(session: ScalingSession) -> None:
    checks.no_logit_divergence(session, families.gpt(parametrization="mup", qk_layernorm=True, z_loss=1e-4), CHEAP)
    with pytest.raises(AssertionError, match="logit divergence") as failure:
        checks.no_logit_divergence(session, families.gpt(parametrization="mup", qk_layernorm=False, z_loss=1e-4), CHEAP)
    failing = str(failure.value).split("failing:")[1]
    assert f"lr=0.316 seed={session.seeds[0]} attention logit" in failing and "|log Z|" not in failing
    assert [r["values"]["property"] for r in session.records] == ["no_logit_divergence"] * 2


CURVE_TRANSFER = TransferGrid(widths=(32, 64, 128), lrs=tuple(2.0**e for e in range(-11, -3)), steps=100, batch_size=32,
                              max_abs_slope=0.25, seeds=1)


# CURVE_TRANSFER (widths 32-128, LRs 2^-11..2^-4, 100 steps of Adam at a constant LR), seed 0. Measured slope of
# the loss-vs-LR curve's shift on log2 width: SP -1.31 and -1.32 (seeds 0 and 1; the optimum falls an octave and more
# per doubling), μP with a zero readout -0.105 to -0.125 (seeds 0-9). The tier's bound is 0.25.
def test_gpt_lr_transfer_fails_under_sp(one_thread_session: ScalingSession) -> None:
    sp = families.gpt(parametrization="sp", qk_layernorm=True, base_width=32)
    with pytest.raises(AssertionError, match="LR transfer across width failed") as failure:
        checks.lr_curve_transfer(one_thread_session, sp, CURVE_TRANSFER)
    message = str(failure.value)
    assert "the optimal LR falls as width grows" in message and "threshold |slope| ≤ 0.25" in message
    record = one_thread_session.records[-1]["values"]
    assert record["property"] == "lr_curve_transfer" and record["value"] < -1.0 and len(record["shift"]) == 3


def test_a_tier_without_a_curve_transfer_grid_skips(session: ScalingSession) -> None:
    with pytest.raises(pytest.skip.Exception, match="the smoke tier does not assert lr_curve_transfer .*or pass a grid"):
        checks.lr_curve_transfer(session, families.gpt())


def test_zero_readout_starts_the_readout_at_zero_and_refuses_a_tied_one() -> None:
    family = families.gpt(parametrization="mup", zero_readout=True)
    model, _ = family.instantiate(128, 0)
    assert family.name == "gpt-L2-mup-zero-readout" and not model.lm_head.weight.detach().any()
    assert model.blocks[0].fc.weight.detach().any()
    with pytest.raises(ValueError, match="zero_readout needs a parametrization"):
        families.gpt(parametrization="mup", zero_readout=True, tie_embeddings=True)
