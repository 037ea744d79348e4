"""Verdicts: the coordinate check's two (parametrization, training dynamics), any verdict within noise of its
threshold, and hints that read the model before they ask (docs/design.md, "Coordinate check" and "Hints")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pytest_scaling import ModelFamily, tasks
from pytest_scaling.assertions import HINT_PREFIX, assert_coord_check
from pytest_scaling.properties.coord_check import _expected_at_init, _first_hidden_update
from pytest_scaling.metrics import coord_slopes, coord_verdict
from pytest_scaling.model_facts import lr_rule, model_facts, read_model

WIDTHS = np.array([64, 128, 256, 512])
LAYERS = ["embed", "hidden", "blocks.0 (attention logits)", "readout"]
STEPS = [0, 1, 2, 3]


def sizes(exponents: list[list[float]], noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Sizes width**exponent [layer, step, width], times log-normal noise."""
    rng = np.random.default_rng(seed)
    base = WIDTHS[None, None, :] ** np.asarray(exponents, dtype=float)[..., None]
    return base * np.exp(noise * rng.standard_normal(base.shape))


FLAT = [[0.0] * 4, [0.0] * 4, [-0.5, 0.0, 0.0, 0.0], [-0.5, 0.0, 0.0, 0.0]]


def verdict(exponents: list[list[float]], steps: list[int], noise: float = 0.0, seeds: int = 2, bound: float = 0.15):
    per_seed = [sizes(exponents, noise, seed) for seed in range(seeds)]
    return coord_verdict("v", WIDTHS, per_seed, LAYERS, STEPS, steps, EXPECTED, bound)


class Run:
    """What ``_expected_at_init`` reads of a run: the heads its attention probe saw."""

    def __init__(self, heads: dict[str, list[float]]):
        self.probes = {"attention_heads": heads}


#: Four heads at every width: the head size grows like the width, so logits of independent q and k shrink like it^-½.
EXPECTED = _expected_at_init(LAYERS, [Run({"blocks.0": [4.0]}) for _ in WIDTHS], WIDTHS, {"embed"})


def test_mup_predicts_flat_inputs_and_shrinking_attention_logits_at_init() -> None:
    """The readout and the layers behind attention count growth only at init (None)."""
    assert EXPECTED == [0.0, None, pytest.approx(-0.5), None]
    fixed_size = _expected_at_init(LAYERS, [Run({"blocks.0": [w / 8]}) for w in WIDTHS], WIDTHS, set())
    assert fixed_size[2] == pytest.approx(0.0)  # heads of a fixed size: q·k/d does not change with width
    unseen = _expected_at_init(LAYERS, [Run({}) for _ in WIDTHS], WIDTHS, set())
    assert unseen[2] is None


def test_attention_logits_that_do_not_shrink_at_init_fail_when_the_head_size_grows() -> None:
    over_sqrt_d = [FLAT[0], FLAT[1], [0.0, 0.0, 0.0, 0.0], FLAT[3]]
    result = verdict(over_sqrt_d, [0, 1])
    assert result.status == "fail" and result.worst == ("blocks.0 (attention logits)", 0)
    assert result.value == pytest.approx(0.5)


def test_a_flat_model_passes_both_verdicts_and_its_readout_may_shrink_at_init() -> None:
    assert verdict(FLAT, [0, 1]).status == "pass" and verdict(FLAT, [2, 3]).status == "pass"


def test_an_input_init_that_shrinks_with_width_fails_at_step_0() -> None:
    shrinking = [[-0.5, -0.5, -0.5, -0.5], *FLAT[1:]]
    result = verdict(shrinking, [0, 1])
    assert result.status == "fail" and result.worst == ("embed", 0) and result.value == pytest.approx(0.5)


def test_after_init_only_growth_counts() -> None:
    """A zero-initialised query's first update shrinks with width in correct models: not a failure after step 0."""
    first_update_shrinks = [FLAT[0], [0.0, -0.25, -0.25, -0.25], *FLAT[2:]]
    assert verdict(first_update_shrinks, [0, 1]).status == "pass"
    growing = [FLAT[0], [0.0, 0.0, 0.0, 0.4], *FLAT[2:]]
    later = verdict(growing, [2, 3])
    assert later.status == "fail" and later.worst == ("hidden", 3)


def test_the_dynamics_count_growth_that_persists_through_every_later_step() -> None:
    swing = [FLAT[0], [0.0, 0.0, 0.4, -0.1], *FLAT[2:]]  # one step's swing, then falling: finite-width dynamics
    persisting = [FLAT[0], [0.0, 0.0, 0.4, 0.3], *FLAT[2:]]
    per_seed = [sizes(exponents) for exponents in (swing, persisting)]
    dynamics = [coord_verdict("d", WIDTHS, [s], LAYERS, STEPS, [2, 3], [None] * 4, 0.15, sustained=True)
                for s in per_seed]
    assert dynamics[0].status == "pass" and dynamics[0].value == pytest.approx(0.0, abs=1e-9)
    assert dynamics[1].status == "fail" and dynamics[1].value == pytest.approx(0.3) and dynamics[1].worst == ("hidden", 3)


def test_a_value_within_noise_of_its_bound_is_unresolved() -> None:
    near = [FLAT[0], [0.0, 0.16, 0.0, 0.0], *FLAT[2:]]
    assert verdict(near, [0, 1], noise=0.0).status == "fail"  # no spread: the value decides
    noisy = verdict(near, [0, 1], noise=0.2, seeds=3)
    assert noisy.noise > 0.01 and noisy.status == "unresolved"
    assert abs(noisy.value - noisy.bound) <= 2 * noisy.noise


def test_the_first_hidden_update_is_step_2_behind_a_zero_readout() -> None:
    readout_zero = sizes(FLAT)
    readout_zero[-1, 0, :] = 0.0
    assert _first_hidden_update([readout_zero]) == 2
    assert _first_hidden_update([sizes(FLAT)]) == 1


def test_the_failure_has_a_line_per_verdict_and_names_the_parametrization() -> None:
    exponents = [FLAT[0], [0.0, 0.6, 0.6, 0.6], *FLAT[2:]]
    per_seed = [sizes(exponents, seed=s) for s in range(2)]
    verdicts = [coord_verdict("parametrization", WIDTHS, per_seed, LAYERS, STEPS, [0, 1], EXPECTED, 0.15),
                coord_verdict("training dynamics", WIDTHS, per_seed, LAYERS, STEPS, [2, 3], [None] * 4, 0.15)]
    result = coord_slopes(WIDTHS, per_seed[0], layers=LAYERS, steps=STEPS)
    with pytest.raises(AssertionError) as failure:
        assert_coord_check(result, verdicts=verdicts, expected_at_init=EXPECTED)
    lines = str(failure.value).splitlines()
    assert lines[0] == "coordinate check failed: the parametrization scales with width (steps 0-1)"
    assert any(line.startswith("steps 0-1 (parametrization): worst slope +0.600 at hidden step 1; bound 0.15") and
               line.endswith(": FAIL") for line in lines)
    assert any(line.startswith("steps 2-3 (training dynamics):") for line in lines)


# ---- hints read the model first --------------------------------------------------------------------------------------


class TwoLayer(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.embed = nn.Linear(8, width)
        self.hidden = nn.Linear(width, width)
        self.readout = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(torch.relu(self.hidden(torch.relu(self.embed(x)))))


def mup_groups(model: TwoLayer, lr: float, scaled: bool = True, key: str | None = None) -> torch.optim.Optimizer:
    m = model.hidden.in_features / 16
    hidden = {"params": [model.hidden.weight], "lr": lr / m if scaled else lr}
    if key:
        hidden[key] = 1 / m
    return torch.optim.Adam([hidden, {"params": [p for n, p in model.named_parameters() if n != "hidden.weight"],
                                      "lr": lr}])


def family(scaled: bool = True, key: str | None = None) -> ModelFamily:
    return ModelFamily(name="two", build=TwoLayer, task=tasks.teacher_student(input_dim=8, n_classes=4), base_width=16,
                       optimizer=lambda model, lr: mup_groups(model, lr, scaled, key))


def test_the_hidden_lr_rule_is_read_from_the_optimizer() -> None:
    assert lr_rule(read_model(family(), (16, 128)), "hidden") == "η/m"
    assert lr_rule(read_model(family(scaled=False), (16, 128)), "hidden") == "η, width-independent"
    assert lr_rule(read_model(family(), (16, 128)), "input") == "η, width-independent"


def test_a_group_key_that_looks_like_an_lr_factor_and_is_not_applied_is_named() -> None:
    reading = read_model(family(scaled=False, key="lr_scale"), (16, 128))
    assert reading["unapplied_lr_keys"] == ["lr_scale=0.125"]  # at width 128; 1 at the base width says nothing
    assert any("lr_scale" in line and "not the one trained" in line for line in model_facts(reading))
    assert read_model(family(), (16, 128))["unapplied_lr_keys"] == []


@pytest.mark.parametrize("scaled", [True, False])
def test_a_hint_never_asks_about_a_cause_it_read_and_found_absent(scaled: bool) -> None:
    per_seed = [sizes([FLAT[0], [0.0, 0.6, 0.6, 0.6], *FLAT[2:]], seed=s) for s in range(2)]
    verdicts = [coord_verdict("parametrization", WIDTHS, per_seed, LAYERS, STEPS, [0, 1], EXPECTED, 0.15)]
    result = coord_slopes(WIDTHS, per_seed[0], layers=LAYERS, steps=STEPS)
    with pytest.raises(AssertionError) as failure:
        assert_coord_check(result, verdicts=verdicts, expected_at_init=EXPECTED,
                           model=read_model(family(scaled=scaled), (16, 128)))
    message = str(failure.value)
    hint = message.split(HINT_PREFIX, 1)[1]
    assert ("hidden-layer LR scaled by 1/m" in hint) is not scaled
    assert "read from the model: LR by role" in message
    if scaled:
        assert "hidden LR η/m as read from the optimizer" in message


# ---- a verdict within noise of its threshold is inconclusive, whatever the property ----------------------------------


def test_a_value_within_noise_of_its_threshold_is_a_coin_flip() -> None:
    from pytest_scaling.properties import PROPERTIES

    transfer = PROPERTIES["lr_curve_transfer"]  # judged by |value|
    near = {"value": -0.27, "threshold": 0.25, "noise": 0.03, "seed_values": [-0.3, -0.24]}
    assert "within noise of the threshold: lr_curve_transfer -0.27 ± 0.03" in transfer.within_noise(near)
    assert transfer.within_noise({**near, "value": -0.4}) is None  # 5σ past it: a failure
    assert transfer.within_noise({**near, "value": 0.1}) is None  # 5σ inside it: a pass
    assert transfer.within_noise({**near, "noise": None}) is None  # one seed: no noise to judge against
    assert PROPERTIES["coord_check"].within_noise(near) is None  # it adds seeds and decides itself
    # One seed's power-law fit is a noisier estimator than the fit to the seed mean: its spread is not the value's noise
    # (reference MLP, cpu tier: 1 − R² 0.002 with per-seed fits 0.14, 0.02, 0.066).
    law = {"value": 0.002, "threshold": 0.02, "noise": 0.036, "seed_values": [0.14, 0.02, 0.066]}
    assert PROPERTIES["power_law"].within_noise(law) is None


def test_a_readout_exactly_0_at_init_is_not_asked_about_its_init() -> None:
    grows = sizes([FLAT[0], FLAT[1], FLAT[2], [0.0, 0.9, 0.8, 0.6]])
    grows[-1, 0, :] = 0.0  # a zero-initialised readout
    verdicts = [coord_verdict("parametrization", WIDTHS, [grows], LAYERS, STEPS, [0, 1, 2], EXPECTED, 0.15)]
    result = coord_slopes(WIDTHS, grows, layers=LAYERS, steps=STEPS)
    with pytest.raises(AssertionError) as failure:
        assert_coord_check(result, verdicts=verdicts, expected_at_init=EXPECTED, model=read_model(family(), (16, 128)))
    message = str(failure.value)
    assert "the readout is exactly 0 at init" in message and "zero-initialised" not in message.split(HINT_PREFIX)[1]
    assert "is the readout multiplied by 1/m in the forward pass" in message


@pytest.mark.parametrize("field, value", [("max_seeds", 0), ("max_seeds", 2.5), ("max_later_slope", -0.1)])
def test_a_bad_coordinate_grid_is_a_one_line_error(field: str, value: object) -> None:
    from pytest_scaling.tiers import CoordCheckGrid

    with pytest.raises(ValueError, match=f"CoordCheckGrid: {field} must be"):
        CoordCheckGrid(widths=(32, 64), lr=1e-2, steps=3, batch_size=8, max_abs_slope=0.15, **{field: value})


@pytest.mark.parametrize(("per_seed", "session_seeds", "outcome"), [
    ({0: 0.26, 1: 0.07}, (0, 1), "inconclusive"),  # one seed failed, the second did not: within noise
    ({0: 0.50, 1: 0.45}, (0, 1), "fail"),  # both fail by far: the failure stands
    ({0: 0.26}, (0,), "fail"),  # a one-seed session has no second seed to ask
])
def test_a_failure_on_one_seed_is_measured_on_two_before_it_stands(
        monkeypatch: pytest.MonkeyPatch, per_seed: dict[int, float], session_seeds: tuple[int, ...], outcome: str) -> None:
    import dataclasses

    from pytest_scaling import families
    from pytest_scaling.properties import PROPERTIES, Property
    from pytest_scaling.session import ScalingSession
    from pytest_scaling.suite import run_property
    from pytest_scaling.tiers import TIERS

    asked: list[list[int]] = []

    def toy_check(scaling: ScalingSession, family: ModelFamily, grid) -> None:
        seeds = scaling.first_seeds((grid or toy.grid_in(scaling.tier)).seeds)
        asked.append(seeds)
        values = [per_seed[s] for s in seeds]
        toy.record(scaling, family.name, value=sum(values) / len(values), threshold=0.1, seed_values=values)
        if sum(values) / len(values) > 0.1:
            raise AssertionError("toy check failed")

    one_seed = dataclasses.replace(PROPERTIES["lr_sensitivity"].grid_in("cpu"), seeds=1)
    toy = Property("toy", "a toy property on the stability grid", "higher", check=toy_check, grids={"cpu": one_seed})
    session = ScalingSession(tier=TIERS["cpu"], device=torch.device("cpu"), seeds=list(session_seeds))
    family = families.mlp()
    if outcome == "inconclusive":
        with pytest.raises(pytest.skip.Exception, match=r"inconclusive: within noise of the threshold: toy 0.165"):
            run_property(session, family, toy)
    else:
        with pytest.raises(AssertionError, match="toy check failed"):
            run_property(session, family, toy)
    assert asked == ([[0], [0, 1]] if len(session_seeds) == 2 else [[0]])
    assert len([r for r in session.records if r["name"] == f"toy[{family.name}]"]) == 1  # the one-seed record replaced
