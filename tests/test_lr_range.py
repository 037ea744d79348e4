"""The LR-range step and grids placed on it: families whose optimal LRs differ by 100x get the same verdicts."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import training_session
from pytest_scaling import ModelFamily, checks, tasks
from pytest_scaling.lr_range import snap
from pytest_scaling.tiers import CoordCheckGrid, RelativeLRs, RelativeWidths, TransferGrid

TASK = tasks.teacher_student(input_dim=8, n_classes=4)
SCALE = 100.0


class ScaledLinear(nn.Linear):
    """``nn.Linear`` whose weight and bias are stored divided by ``scale`` and multiplied back in forward: the same
    function at init, but Adam's per-coordinate steps move it ``scale`` times faster, so its optimal LR is ``1/scale``
    times the plain layer's."""

    def __init__(self, fan_in: int, fan_out: int, scale: float) -> None:
        super().__init__(fan_in, fan_out)
        self.scale = scale
        with torch.no_grad():
            self.weight.div_(scale), self.bias.div_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.scale)


def mlp_family(scale: float) -> ModelFamily:
    def build(width: int) -> nn.Module:
        return nn.Sequential(ScaledLinear(8, width, scale), nn.ReLU(), ScaledLinear(width, width, scale), nn.ReLU(),
                             ScaledLinear(width, 4, scale))

    return ModelFamily(name=f"mlp-x{scale:g}", build=build, task=TASK, base_width=16, parametrization="mup")


COORD = CoordCheckGrid(widths=RelativeWidths((1, 2, 4)), lr=RelativeLRs(0, 0), steps=2, batch_size=16,
                       max_abs_slope=0.15)
TRANSFER = TransferGrid(widths=RelativeWidths((1, 2, 4)), lrs=RelativeLRs(-4, 3), steps=30, batch_size=16,
                        max_abs_slope=0.25)


@pytest.fixture(scope="module")
def session():
    scaling = training_session()
    yield scaling
    scaling.close()


def test_the_range_step_brackets_optima_a_hundredfold_apart(session) -> None:
    plain, scaled = session.lr_bracket(mlp_family(1.0)), session.lr_bracket(mlp_family(SCALE))
    assert plain.note == "" and scaled.note == "" and plain.widened == scaled.widened == 0
    # Anchors sit on a half-octave lattice: their ratio is 100 to within half an octave.
    assert abs(math.log2(plain.anchor / scaled.anchor) - math.log2(SCALE)) <= 0.5
    assert snap(plain.anchor) == plain.anchor and plain.top_stable is not None


def test_the_range_step_widens_until_it_sees_both_flanks(session) -> None:
    far = session.lr_bracket(mlp_family(1e6))  # its optimum lies below the first scan (from 10^-7 in the smoke tier)
    assert far.widened >= 1 and far.note == "" and min(far.lrs) < 1e-7
    assert far.lrs[0] < far.anchor < far.lrs[-1]


def test_a_range_step_that_never_trains_says_so() -> None:
    session = training_session()
    session.tier = dataclasses.replace(session.tier, lr_range=dataclasses.replace(session.tier.lr_range, lo=-2, hi=0,
                                                                                  max_widen=0))
    bracket = session.lr_bracket(mlp_family(1e6))  # every LR of 10^-2..1 is a million times too high for it
    assert bracket.note == "no LR of the search trained below the initial loss" and bracket.top_stable is None


def test_grids_placed_on_the_anchor_give_the_same_verdicts_at_any_lr_scale(session) -> None:
    values = {}
    for scale in (1.0, SCALE):
        family = mlp_family(scale)
        checks.coord_check(session, family, COORD)
        checks.lr_curve_transfer(session, family, TRANSFER)
        values[scale] = {r["values"]["property"]: r["values"] for r in session.records[-2:]}
    # Both pass (the checks above would raise otherwise), and read nearly the same values.
    assert values[SCALE]["coord_check"]["value"] == pytest.approx(values[1.0]["coord_check"]["value"], abs=0.05)
    assert values[SCALE]["lr_curve_transfer"]["value"] == pytest.approx(values[1.0]["lr_curve_transfer"]["value"], abs=0.1)
    for values_of in values.values():
        lrs, anchor = values_of["lr_curve_transfer"]["lrs"], values_of["lr_curve_transfer"]["lr_bracket"]["anchor"]
        assert lrs[0] == pytest.approx(anchor / 16) and lrs[-1] == pytest.approx(anchor * 8)


def test_an_absolute_grid_is_left_alone(session) -> None:
    grid = TransferGrid(widths=(16, 32), lrs=(1e-3, 1e-2, 1e-1), steps=5, batch_size=8, max_abs_slope=10.0)
    checks.lr_curve_transfer(session, mlp_family(1.0), grid)
    record = session.records[-1]["values"]
    assert record["lrs"] == [1e-3, 1e-2, 1e-1] and "lr_bracket" not in record


def test_relative_grids_are_checked() -> None:
    with pytest.raises(ValueError, match="RelativeLRs needs lo <= hi and step > 0"):
        RelativeLRs(2, 1)
    with pytest.raises(ValueError, match="RelativeWidths needs increasing positive multipliers"):
        RelativeWidths((2, 1))
    assert RelativeLRs(-1, 1).at(0.5) == (0.25, 0.5, 1.0)
    assert RelativeWidths((0.5, 1, 2)).at(32) == (16, 32, 64)
    assert math.log2(snap(0.3)) * 2 == round(math.log2(0.3) * 2)
