"""The plan said before training (``pytest_scaling.cost``): what each property asks for, the runs shared between
properties, the predicted seconds, and the plan of a property matching the runs its check then requests."""

from __future__ import annotations

import json
import math
import textwrap

import pytest
import torch

from pytest_scaling import checks, families
from pytest_scaling.cost import PlanningSession, SuiteCost, plan_suite
from pytest_scaling.properties import PROPERTIES, suite_properties
from pytest_scaling.session import ScalingSession
from pytest_scaling.tiers import TIERS

pytest_plugins = ["pytester"]

SETUP_S, STEP_S = 0.5, 0.01


def fixed_timer(family, width, config, runs, stacking) -> float:
    """Every run costs SETUP_S plus STEP_S a step: the plan's arithmetic, without timing anything."""
    return runs * (SETUP_S + config.steps * STEP_S)


def cpu_plan(**kwargs) -> SuiteCost:
    family = families.reference_gpt()
    return plan_suite(family, TIERS["cpu"], [0, 1], suite_properties(), kwargs.get("grids", {}), kwargs.get("skip", {}),
                      fixed_timer)


def by_name(plan: SuiteCost) -> dict:
    return {cost.name: cost for cost in plan.properties}


def test_properties_that_share_a_sweep_pay_for_it_once() -> None:
    costs = by_name(cpu_plan())
    for first, second in (("lr_curve_transfer", "wider_is_better"), ("power_law", "extrapolation"),
                          ("lr_sensitivity", "no_logit_divergence")):
        assert costs[first].new_runs > 0
        assert costs[second].runs == costs[first].runs and costs[second].new_runs == 0 and costs[second].seconds == 0
    # the power law's widths 32-128 at the three LRs its search starts from and its first two seeds are the transfer
    # grid's runs (same steps, batch)
    shared = costs["power_law"].runs - costs["power_law"].new_runs
    assert shared == 3 * 3 * 2


def test_a_runs_price_is_its_set_up_and_its_steps() -> None:
    coord = by_name(cpu_plan())["coord_check"]
    assert coord.widths == (64, 128, 256, 512) and coord.seeds == 2 and coord.steps == (4,)
    assert coord.seconds == pytest.approx(8 * (SETUP_S + 4 * STEP_S))
    plan = cpu_plan()
    assert plan.seconds == pytest.approx(sum(cost.seconds for cost in plan.properties))
    assert plan.runs == sum(cost.new_runs for cost in plan.properties)


def test_what_does_not_train_says_why() -> None:
    costs = by_name(plan_suite(families.reference_mlp(), TIERS["cpu"], [0, 1], suite_properties(), {},
                               {"lr_sensitivity": "bound is the transformer's"}, fixed_timer))
    assert costs["lr_sensitivity"].note == "left out" and costs["lr_sensitivity"].runs == 0
    assert costs["depth_coord_check"].note == "not applicable"
    assert costs["weight_decay"].note == "trains nothing"
    smoke = by_name(plan_suite(families.reference_gpt(), TIERS["smoke"], [0], suite_properties(), {}, {}, fixed_timer))
    assert smoke["power_law"].note == "not asserted"


def test_a_suites_own_grid_is_the_one_planned() -> None:
    grid = PROPERTIES["power_law"].grid_in("cpu")
    import dataclasses

    longer = dataclasses.replace(grid, steps=300)
    costs = by_name(cpu_plan(grids={"power_law": longer}))
    assert costs["power_law"].steps == (300,) and costs["power_law"].new_runs == costs["power_law"].runs


def test_the_table_states_the_total_against_the_budget() -> None:
    table = cpu_plan().table()
    assert table.startswith("plan for reference-gpt (cpu tier;") and "LR-range step" in table
    assert table.splitlines()[-1].startswith("total ") and "the tier's budget of 10m 00s" in table


@pytest.mark.parametrize("name", ["coord_check", "adam_epsilon"])
def test_a_propertys_plan_is_the_runs_its_check_asks_for(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planned on an anchor of 1, the runs are the check's own divided by its anchor: the same widths, seeds, configs."""
    family = families.mlp(base_width=16, widths=(16, 32, 64))
    session = ScalingSession(tier=TIERS["smoke"], device=torch.device("cpu"), seeds=[0])
    anchor = session.lr_bracket(family).anchor  # the LR-range step's runs, before the check's are recorded
    asked: list[tuple] = []
    sweep = ScalingSession.sweep

    def recording(self, family, *, widths=None, lrs, seeds=None, **kwargs):
        asked.extend((family.name, w, lr, s, repr(kwargs["config"])) for w in widths for lr in lrs for s in seeds)
        return sweep(self, family, widths=widths, lrs=lrs, seeds=seeds, **kwargs)

    monkeypatch.setattr(ScalingSession, "sweep", recording)
    getattr(checks, name)(session, family)
    checked = {(f, w, round(lr / anchor, 9), s, c) for f, w, lr, s, c in asked}
    prop = PROPERTIES[name]
    planned = {(r.family.name, w, round(lr, 9), s, repr(r.config)) for r in prop.sweeps(
        PlanningSession(TIERS["smoke"], [0]), family, prop.grid_in("smoke")) for w in r.widths for lr in r.lrs
        for s in r.seeds}
    assert planned == checked and planned


def test_plan_prints_each_suite_familys_plan_and_trains_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=textwrap.dedent("""
        from pytest_scaling import ScalingSuite, families


        class TestMLP(ScalingSuite):
            family = families.mlp(base_width=16, widths=(16, 32, 64))


        def test_outside_the_suite(scaling):
            raise AssertionError("a scaling test outside the suite ran under --scaling-plan")
    """))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--scaling-tier", "smoke", "--scaling-plan",
                                          "--scaling-report", "r.json")
    result.assert_outcomes(skipped=len(suite_properties()) + 1)
    result.stdout.fnmatch_lines(["plan for mlp-d3-mup (smoke tier;*", "coord_check *", "total * runs, *"])
    assert not (pytester.path / ".scaling").exists()  # nothing trained, nothing cached
    plans = json.loads((pytester.path / "r.json").read_text())["environment"]["plans"]
    assert [plan["family"] for plan in plans] == ["mlp-d3-mup"] and plans[0]["suite"] == "TestMLP"
    assert plans[0]["runs"] > 0 and math.isfinite(plans[0]["seconds"])


def test_held_to_a_budget_what_does_not_fit_is_left_out_and_its_shared_runs_are_paid_by_the_next() -> None:
    family = families.reference_gpt()
    free = by_name(plan_suite(family, TIERS["cpu"], [0, 1], suite_properties(), {}, {}, fixed_timer))
    room = free["LR-range step"].seconds + free["coord_check"].seconds + free["lr_curve_transfer"].seconds + 1.0
    plan = plan_suite(family, TIERS["cpu"], [0, 1], suite_properties(), {}, {}, fixed_timer, budget_s=room)
    held = by_name(plan)
    assert not held["coord_check"].over_budget and not held["wider_is_better"].over_budget
    assert held["power_law"].over_budget
    # the power law's runs did not train, so extrapolation pays for them, and does not fit either
    assert held["extrapolation"].over_budget and held["extrapolation"].new_runs == free["power_law"].new_runs
    assert plan.seconds <= room and plan.held
    reasons = plan.over_budget()
    assert set(reasons) == {name for name, cost in held.items() if cost.over_budget}
    assert reasons["power_law"].startswith("inconclusive at this budget: power_law's runs are predicted at ")
    assert "over budget (" in plan.table() and "within --scaling-budget of " in plan.table()


def test_a_suite_held_to_its_budget_skips_what_does_not_fit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=textwrap.dedent("""
        from pytest_scaling import ScalingSuite, families


        class TestGPT(ScalingSuite):
            family = families.reference_gpt()
    """))
    # the LR-range step alone is predicted over a second: every property that trains is left out
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--scaling-tier", "smoke", "--scaling-no-cache",
                                          "--scaling-budget", "1", "-k", "test_coord_check or test_weight_decay", "-rs", "-v")
    result.assert_outcomes(passed=1, skipped=1, deselected=len(suite_properties()) - 2)  # weight decay trains nothing
    result.stdout.fnmatch_lines(["*inconclusive at this budget: coord_check's runs are predicted at *--scaling-budget*"])


def test_the_reports_state_each_plan_in_a_line() -> None:
    from pytest_scaling.report import html, markdown

    plan = {"suite": "TestSuite", **cpu_plan().to_dict()}
    report = {"environment": {"tier": "cpu", "device": "cpu", "plans": [plan]}, "records": []}
    line = f"plan for reference-gpt (TestSuite): {plan['runs']} runs, predicted "
    assert f"- {line}" in markdown.render(report) and "of the cpu tier's 10m 00s" in markdown.render(report)
    assert line in html.render(report)
