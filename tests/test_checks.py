"""The suite's checks pass on muP families and fail, with their evidence, on the broken variants."""

from __future__ import annotations

import pytest
import torch

from pytest_scaling import checks, families, tasks
from pytest_scaling.session import ScalingSession
from pytest_scaling.tiers import TIERS, CoordCheckGrid, TransferGrid

COORD = CoordCheckGrid(widths=(64, 128, 256, 512, 1024), lr=1e-2, steps=3, batch_size=64, max_abs_slope=0.15)


@pytest.fixture
def scaling() -> ScalingSession:
    return ScalingSession(tier=TIERS["smoke"], device=torch.device("cpu"), seeds=[0, 1])


def mlp(parametrization: str):
    return families.mlp(parametrization=parametrization)


def tiny_gpt(parametrization: str):
    return families.gpt(parametrization=parametrization, task=tasks.markov_language(vocab=32, seq_len=16))


@pytest.mark.parametrize("family", [mlp, tiny_gpt], ids=["mlp", "gpt"])
def test_coord_check_passes_under_mup_and_fails_under_sp(scaling: ScalingSession, family) -> None:
    result = checks.coord_check(scaling, family("mup"), COORD)
    assert result.slopes.max() <= 0.15
    with pytest.raises(AssertionError, match="coordinate check failed") as failure:
        checks.coord_check(scaling, family("sp"), COORD)
    assert "growth only" in str(failure.value)
    assert [r["property"] for r in (rec["values"] for rec in scaling.records)] == ["coord_check"] * 2


# One cheap grid where SP's drift is unmistakable (measured: SP log2 eta* -8.0, -9.3, -10.1, slope -1.06,
# 95% CI (-1.20, -0.92); muP on it: slope -0.21, too close to the bound to assert a pass here: the
# cpu tier's wider, longer grid is where muP is asserted to transfer).
CHEAP_TRANSFER = TransferGrid(widths=(64, 128, 256), lrs=tuple(2.0**e for e in range(-14, -3)), steps=150, batch_size=64,
                              max_abs_slope=0.25, wider_rtol=0.01)


@pytest.fixture(scope="module")
def sp_session(tmp_path_factory: pytest.TempPathFactory) -> ScalingSession:
    """One cached session, so the SP sweep trains once for both negative controls."""
    return ScalingSession(tier=TIERS["smoke"], device=torch.device("cpu"), seeds=[0, 1], cache_dir=tmp_path_factory.mktemp("cache"))


def test_lr_transfer_fails_under_sp_with_the_drift_in_its_message(sp_session: ScalingSession) -> None:
    with pytest.raises(AssertionError, match="LR transfer failed") as failure:
        checks.lr_transfer(sp_session, mlp("sp"), CHEAP_TRANSFER)
    assert "drifts like SP" in str(failure.value) and "threshold |slope| ≤ 0.25" in str(failure.value)


def test_wider_is_better_fails_under_sp_at_the_lr_tuned_narrow(sp_session: ScalingSession) -> None:
    with pytest.raises(AssertionError, match="wider is not better"):
        checks.wider_is_better(sp_session, mlp("sp"), CHEAP_TRANSFER)
