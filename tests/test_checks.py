"""The suite's checks pass on muP families and fail, with their evidence, on the broken variants."""

from __future__ import annotations

import dataclasses
import re

import pytest

from conftest import training_session
from pytest_scaling import checks, families, tasks
from pytest_scaling.session import ScalingSession
from pytest_scaling.properties._size_losses import non_input_parameters
from pytest_scaling.tiers import CoordCheckGrid, PowerLawGrid, TransferGrid

COORD = CoordCheckGrid(widths=(64, 128, 256, 512, 1024), lr=1e-2, steps=3, batch_size=64, max_abs_slope=0.15)


@pytest.fixture
def scaling() -> ScalingSession:
    return training_session(seeds=(0, 1))


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
    assert re.search(r"steps 0-\d \(parametrization\): worst slope \+[0-9.]+ .*: FAIL", str(failure.value))
    assert [r["property"] for r in (rec["values"] for rec in scaling.records)] == ["coord_check"] * 2


@pytest.mark.parametrize("lr", [1e8, 1e20], ids=["activations overflow", "loss diverges"])
def test_coord_check_names_a_run_that_blew_up(scaling: ScalingSession, lr: float) -> None:
    grid = CoordCheckGrid(widths=(32, 64), lr=lr, steps=3, batch_size=16, max_abs_slope=0.15)
    with pytest.raises(AssertionError, match=r"coordinate check failed: the run at width \d+, LR .*, seed 0 diverged or "
                                             r"overflowed at step 1.*lower the check's LR"):
        checks.coord_check(scaling, families.mlp(parametrization="sp", widths=(32, 64), base_width=32), grid)


# One cheap grid where SP's drift is unmistakable (measured: SP log2 eta* -8.0, -9.3, -10.1, slope -1.06,
# 95% CI (-1.20, -0.92); muP on it: slope -0.21, too close to the bound to assert a pass here: the
# cpu tier's wider, longer grid is where muP is asserted to transfer).
CHEAP_TRANSFER = TransferGrid(widths=(64, 128, 256), lrs=tuple(2.0**e for e in range(-14, -3)), steps=150, batch_size=64,
                              max_abs_slope=0.25, wider_rtol=0.01)


@pytest.fixture(scope="module")
def sp_session(tmp_path_factory: pytest.TempPathFactory) -> ScalingSession:
    """One cached session, so the SP sweep trains once for both negative controls."""
    return training_session(seeds=(0, 1), cache_dir=tmp_path_factory.mktemp("cache"))


def test_lr_transfer_fails_under_sp_with_the_drift_in_its_message(sp_session: ScalingSession) -> None:
    with pytest.raises(AssertionError, match="LR transfer failed") as failure:
        checks.lr_transfer(sp_session, mlp("sp"), CHEAP_TRANSFER)
    assert "drifts like SP" in str(failure.value) and "threshold |slope| ≤ 0.25" in str(failure.value)


def test_wider_is_better_fails_under_sp_at_the_lr_tuned_narrow(sp_session: ScalingSession) -> None:
    with pytest.raises(AssertionError, match="wider is not better"):
        checks.wider_is_better(sp_session, mlp("sp"), CHEAP_TRANSFER)


# The misleading-extrapolation case. The transfer grid's runs plus widths 16 and 32, four seeds: the seed mean's
# noise is 0.4-0.8% of the loss at four seeds, 1.0-1.3% at two, where SP's miss (2.0-5.5%) stayed within 3σ of it
# for two of four seed pairs. Measured, seeds {k..k+3}, k = 0-4: muP at its per-width best LR predicts width 256
# within 0.2-0.8% (excess 0.14-0.54); SP at the LR tuned at width 16 (2^-6), whose loss falls to width 32 then
# rises, misses by 2.5-5.5% (excess 1.44-2.38, over both the 1% tolerance and 3σ of its seed noise).
CHEAP_POWER_LAW = PowerLawGrid(widths=(16, 32, 64, 128, 256), lrs=CHEAP_TRANSFER.lrs, steps=CHEAP_TRANSFER.steps,
                               batch_size=CHEAP_TRANSFER.batch_size, min_r2=0.98, holdout=1, max_rel_error=0.01)


@pytest.fixture(scope="module")
def four_seed_session(tmp_path_factory: pytest.TempPathFactory) -> ScalingSession:
    return training_session(seeds=(0, 1, 2, 3), cache_dir=tmp_path_factory.mktemp("cache"))


def test_extrapolation_flags_sp_at_the_lr_tuned_narrow_but_not_mup_tuned_per_width(
        four_seed_session: ScalingSession) -> None:
    fit = checks.power_law(four_seed_session, mlp("mup"), CHEAP_POWER_LAW)
    assert fit.r2 >= 0.98 and fit.alpha > 0
    assert checks.extrapolation(four_seed_session, mlp("mup"), CHEAP_POWER_LAW).max_rel_error <= 0.01
    with pytest.raises(AssertionError, match="power law check failed"):
        checks.power_law(four_seed_session, mlp("sp"), CHEAP_POWER_LAW, lr_policy="tuned_at_smallest")
    with pytest.raises(AssertionError, match="extrapolation check failed") as failure:
        checks.extrapolation(four_seed_session, mlp("sp"), CHEAP_POWER_LAW, lr_policy="tuned_at_smallest")
    assert "is each size's loss its best-LR loss" in str(failure.value)
    records = [r["values"] for r in four_seed_session.records[-4:]]
    assert [r["property"] for r in records] == ["power_law", "extrapolation"] * 2
    assert records[-1]["lr_policy"] == "tuned_at_smallest" and len(set(records[-1]["lrs"])) == 1
    assert len(records[1]["predicted"]) == 1 and records[1]["sizes"] == sorted(records[1]["sizes"])


def test_size_is_the_count_of_non_input_parameters() -> None:
    family = mlp("mup")
    model = family.build(64)
    first = next(model.parameters())  # the input layer's weight, whose fan-in (the task's input) is fixed
    assert non_input_parameters(family, 64) == sum(p.numel() for p in model.parameters()) - first.numel()


def test_an_unknown_lr_policy_is_named(scaling: ScalingSession) -> None:
    with pytest.raises(ValueError, match="lr_policy must be one of per_width, tuned_at_smallest, got 'best'"):
        checks.power_law(scaling, mlp("mup"), CHEAP_POWER_LAW, lr_policy="best")


def test_too_few_widths_are_named_before_any_training(scaling: ScalingSession) -> None:
    grid = dataclasses.replace(CHEAP_POWER_LAW, widths=(16, 32, 64))
    with pytest.raises(ValueError, match=r"the extrapolation check \(holding out 1\) needs at least 4 distinct widths, got 3"):
        checks.extrapolation(scaling, mlp("mup"), grid)
    assert scaling.records == []
