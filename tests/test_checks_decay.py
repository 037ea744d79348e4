"""The weight-decay timescale check: one optimizer step per width, no training. A decay coupled to a μP LR fails it (its
negative control), an independent decay and a coupled decay under one global LR pass, and a family that decays nothing
is not applicable."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from examples import zoo
from pytest_scaling import checks, families
from pytest_scaling.family import ModelFamily
from pytest_scaling.decay import decay_timescales, shrink_per_step
from pytest_scaling.session import ScalingSession
from pytest_scaling.properties import PROPERTIES
from pytest_scaling.tiers import TIERS, DecayGrid

GRID = DecayGrid(widths=(32, 64, 128, 256), lr=1e-2, max_abs_slope=0.5)


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> ScalingSession:
    scaling = ScalingSession(tier=TIERS["smoke"], device=torch.device("cpu"), seeds=[0])
    monkeypatch.setattr(scaling, "sweep", lambda *args, **kwargs: pytest.fail("the decay check trained"))
    return scaling


def test_one_zero_gradient_step_reads_the_decay_of_every_parameter_even_a_zero_initialised_one() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    nn.init.zeros_(model[1].weight)
    optimizer = torch.optim.AdamW([{"params": model[0].parameters(), "weight_decay": 0.1},
                                   {"params": model[1].parameters(), "weight_decay": 0.0}], lr=1e-2)
    shrink = shrink_per_step(model.double(), optimizer)
    assert shrink["0.weight"] == pytest.approx(1e-3, rel=1e-9) and shrink["0.bias"] == pytest.approx(1e-3, rel=1e-9)
    assert shrink["1.weight"] == 0.0 and shrink["1.bias"] == 0.0


def test_a_parameter_decayed_at_some_widths_only_has_no_finite_slope() -> None:
    result = decay_timescales((32, 64), 1e-2, [{"a": 1e-3, "b": 1e-3, "c": 0.0}, {"a": 1e-3, "b": 0.0, "c": 0.0}])
    assert result.names == ("a", "b") and result.slopes[0] == 0.0 and np.isinf(result.slopes[1])
    assert result.worst == "b"


def test_the_zoo_decay_coupled_to_its_mup_lr_fails_and_its_independent_decay_passes(session: ScalingSession) -> None:
    clean = checks.weight_decay(session, zoo.make(), GRID)
    assert clean is not None and clean.max_abs_slope == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(AssertionError, match="weight decay's timescale changes with width") as failure:
        checks.weight_decay(session, zoo.make("coupled_weight_decay"), GRID)
    message = str(failure.value)
    assert "blocks.0.attn.query.weight" in message and "+1.00" in message and "λ / group_lr" in message
    records = [record["values"] for record in session.records]
    assert [r["property"] for r in records] == ["weight_decay"] * 2
    assert records[0]["value"] == pytest.approx(0.0, abs=1e-6) and records[1]["value"] == pytest.approx(1.0, abs=1e-6)
    hidden = records[1]["names"].index("blocks.0.attn.query.weight")
    assert records[1]["timescale"][hidden] == pytest.approx([1000, 2000, 4000, 8000], rel=1e-6)


def test_the_recipe_decay_of_a_mup_family_passes(session: ScalingSession) -> None:
    result = checks.weight_decay(session, families.gpt(), GRID)
    assert result is not None and result.max_abs_slope == pytest.approx(0.0, abs=1e-6)
    assert np.allclose(result.timescale, 1 / GRID.weight_decay)


def _own_optimizer(optimizer, name: str) -> ModelFamily:
    """The MLP family as written (no parametrization), trained with ``optimizer(model, lr)``."""
    return dataclasses.replace(families.mlp(parametrization=None), name=name, optimizer=optimizer)


def test_a_coupled_decay_under_one_global_lr_passes(session: ScalingSession) -> None:
    family = _own_optimizer(lambda model, lr: torch.optim.AdamW(model.parameters(), lr=lr,
                                                                               weight_decay=0.1), "mlp-sp-adamw")
    assert checks.weight_decay(session, family, GRID).max_abs_slope == pytest.approx(0.0, abs=1e-6)


def test_l2_decay_in_adam_under_mup_lrs_fails(session: ScalingSession) -> None:
    """torch Adam's ``weight_decay`` adds λθ to the gradient, which Adam then normalises: the first step moves θ by the
    group's LR, so a μP hidden matrix (LR ∝ 1/m) decays m times slower at width m."""
    def optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        hidden = [p for name, p in model.named_parameters() if name.startswith("2.")]
        others = [p for name, p in model.named_parameters() if not name.startswith("2.")]
        width = hidden[0].shape[0]
        return torch.optim.Adam([{"params": hidden, "lr": lr * 32 / width}, {"params": others}], lr=lr,
                                weight_decay=0.01)

    with pytest.raises(AssertionError, match="weight decay's timescale changes with width"):
        checks.weight_decay(session, _own_optimizer(optimizer, "mlp-adam-l2"), GRID)


def test_a_family_that_decays_nothing_is_not_applicable(session: ScalingSession) -> None:
    family = _own_optimizer(lambda model, lr: torch.optim.Adam(model.parameters(), lr=lr), "mlp-adam")
    assert checks.weight_decay(session, family, GRID) is None
    assert session.records[-1]["values"]["applicable"] is False
    assert "no parameter decays" in session.records[-1]["values"]["reason"]


def test_every_tier_measures_over_a_decade_of_width() -> None:
    for tier in TIERS.values():
        grid = PROPERTIES["weight_decay"].grid_in(tier)
        assert grid is not None and grid.widths.multipliers[-1] >= 8
