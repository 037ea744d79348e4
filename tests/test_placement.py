"""A tier's grids placed on a family (``pytest_scaling.placement``): the unit width its relative widths and LR-range
step sit on, the batch that keeps the calibrated tokens a step, and the power law's per-width LR search
(``properties._size_losses``), which trains a part of the LR grid and must pick what the whole grid would."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_scaling import families, tasks
from pytest_scaling.cost import PlanningSession
from pytest_scaling.family import ModelFamily
from pytest_scaling.grids import PowerLawGrid, RelativeLRs, RelativeWidths
from pytest_scaling.placement import batch_for, place, range_step, unit_width
from pytest_scaling.properties import PROPERTIES
from pytest_scaling.properties._size_losses import _start, next_lrs, size_losses
from pytest_scaling.session import ScalingSession
from pytest_scaling.tiers import TIERS
from pytest_scaling.train import TrainConfig

CPU, SMOKE = TIERS["cpu"], TIERS["smoke"]


def gpt64(seq_len: int = 64, **kwargs) -> ModelFamily:
    return families.gpt(task=tasks.markov_language(vocab=64, seq_len=seq_len), base_width=64, widths=(), **kwargs)


def test_a_wider_gpt_is_placed_on_the_width_the_tier_was_calibrated_at() -> None:
    assert unit_width(gpt64(), CPU.unit_floors) == 32
    assert unit_width(families.gpt(base_width=256, widths=()), CPU.unit_floors) == 32
    assert unit_width(families.reference_gpt(), CPU.unit_floors) == 32  # already there: its grids are unchanged


def test_the_mlp_keeps_the_base_width_its_grids_were_calibrated_at() -> None:
    assert unit_width(families.reference_mlp(), CPU.unit_floors) == 64


def test_the_smoke_tier_keeps_every_familys_base_width_and_batch() -> None:
    family = gpt64()
    assert unit_width(family, SMOKE.unit_floors) == 64
    assert batch_for(family, 16, SMOKE.batch_seq_len) == 16


def test_a_width_the_model_does_not_allow_is_not_used() -> None:
    """64 heads divide 64 but not 32: the family stays at its base width. At base 72, 36 builds and 18 is below the
    floor: halved once."""
    assert unit_width(families.gpt(base_width=64, widths=(), n_heads=64), CPU.unit_floors) == 64
    assert unit_width(families.gpt(base_width=72, widths=(), n_heads=4), CPU.unit_floors) == 36


def test_longer_sequences_train_the_calibrated_tokens_a_step_in_fewer_of_them() -> None:
    assert batch_for(gpt64(seq_len=64), 32, CPU.batch_seq_len) == 16
    assert batch_for(gpt64(seq_len=32), 32, CPU.batch_seq_len) == 32
    assert batch_for(gpt64(seq_len=16), 32, CPU.batch_seq_len) == 64
    assert batch_for(gpt64(seq_len=4096), 32, CPU.batch_seq_len) == 1
    assert batch_for(families.reference_mlp(), 32, CPU.batch_seq_len) == 32  # features: no sequences


def test_a_placed_grid_and_the_range_step_say_what_was_placed() -> None:
    family = gpt64()
    grid = PowerLawGrid(widths=RelativeWidths((0.5, 1, 2)), lrs=(1e-3, 1e-2), steps=10, batch_size=32, min_r2=0.9, holdout=1,
                        max_rel_error=0.01)
    placed, record = place(PlanningSession(CPU, [0]), family, grid)
    assert placed.widths == (16, 32, 64) and placed.batch_size == 16
    assert record["unit_width"] == 32 and record["batch_size"] == {"tier": 32, "family": 16}
    assert range_step(family, CPU).batch_size == CPU.lr_range.batch_size // 2


def test_the_search_starts_at_the_anchor_and_one_lr_a_side() -> None:
    assert _start(RelativeLRs(-3, 2)) == [2, 3, 4]
    assert _start(RelativeLRs(0, 3)) == [0, 1]
    assert _start((1e-3, 3e-3, 1e-2, 3e-2, 1e-1)) == [1, 2, 3]


def test_the_search_steps_outward_until_the_best_has_a_neighbour_each_side() -> None:
    assert next_lrs({2: 1.0, 3: 0.9, 4: 1.1}, 6) == []
    assert next_lrs({2: 0.8, 3: 0.9, 4: 1.1}, 6) == [1]
    assert next_lrs({2: 1.2, 3: 0.9, 4: 0.7}, 6) == [5]
    assert next_lrs({0: 0.8, 1: 0.9}, 6) == []  # the grid's end
    assert next_lrs({3: 0.8}, 6) == [2, 4]


def _search(curve: list[float]) -> int:
    """The index the search ends at on a fixed curve, trained as ``size_losses`` trains it."""
    trained: dict[int, float] = {}
    todo = _start(tuple(range(len(curve))))  # an absolute grid: its middle
    while todo:
        trained.update({i: curve[i] for i in todo})
        todo = next_lrs(trained, len(curve))
    return min(trained, key=lambda i: (trained[i], i))


@settings(max_examples=300, deadline=None)
@given(st.integers(3, 12).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.lists(
    st.floats(0.01, 5.0), min_size=n, max_size=n))))
def test_on_a_curve_with_one_minimum_the_search_picks_the_whole_grids_best(drawn: tuple[int, list[float]]) -> None:
    """Any unimodal curve: falling to its minimum, rising after it (the loss-vs-LR curve of a sweep that trains)."""
    minimum, steps = drawn
    curve = [1.0 + sum(steps[i:minimum]) for i in range(minimum)] + [1.0] + \
            [1.0 + sum(steps[minimum + 1:i + 1]) for i in range(minimum + 1, len(steps))]
    assert _search(curve) == int(np.argmin(curve))


def test_on_a_curve_with_two_minima_the_search_keeps_the_one_by_the_anchor() -> None:
    assert _search([0.5, 1.0, 0.8, 0.7, 0.9]) == 3


def test_the_power_law_trains_a_part_of_the_grid_and_picks_what_the_whole_grid_would() -> None:
    family = families.mlp(base_width=16, widths=(), task=tasks.teacher_student(input_dim=8, n_classes=4))
    session = ScalingSession(tier=SMOKE, device=torch.device("cpu"), seeds=[0, 1])
    grid = PowerLawGrid(widths=RelativeWidths((1, 2, 4)), lrs=RelativeLRs(-3, 3), steps=20, batch_size=16, min_r2=0.9, holdout=1,
                        max_rel_error=0.01)
    searched = size_losses(session, family, grid)
    assert all(len(lrs) < 7 for lrs in searched.placed["lrs_trained"].values())
    lrs = place(session, family, grid)[0].lrs
    whole = session.sweep(family, widths=searched.widths, lrs=lrs, seeds=(0, 1),
                          config=TrainConfig(steps=grid.steps, batch_size=grid.batch_size))
    losses, initial = whole.loss_table(), whole.initial_losses()[:, None, :]
    mean = np.where(np.isfinite(losses) & (losses <= initial), losses, initial).mean(-1)
    assert list(searched.lrs) == [lrs[i] for i in np.argmin(mean, axis=1)]
    assert searched.mean == pytest.approx(mean.min(axis=1))


class _Anchors(PlanningSession):
    """A planning session that notes the width each LR-range step is asked for."""

    def __init__(self) -> None:
        super().__init__(CPU, [0, 1])
        self.widths: list[int] = []

    def lr_bracket(self, family, width=None):
        self.widths.append(width)
        return super().lr_bracket(family, width)


def test_lrs_are_anchored_where_the_widths_are_placed() -> None:
    """The transfer grid stays at the base width and is anchored there; the power law's sits at the unit width."""
    family = gpt64()
    session = _Anchors()
    transfer = PROPERTIES["lr_curve_transfer"].sweeps(session, family, PROPERTIES["lr_curve_transfer"].grid_in("cpu"))
    assert transfer[0].widths == (64, 128, 256) and session.widths == [64]
    law = PROPERTIES["power_law"].sweeps(session, family, PROPERTIES["power_law"].grid_in("cpu"))
    assert law[0].widths[0] == 16 and session.widths == [64, 32]


def test_a_grid_whose_widths_the_model_does_not_allow_at_the_unit_stays_wider() -> None:
    """Heads of a fixed size 16: width 24 (0.75 of 32, a power-law width) has 1.5 of them, so the power law is placed
    on 64 (its 0.75 is 48) while a grid of whole multiples goes down to 32."""
    family = families.gpt(base_width=64, widths=(), n_heads=None, head_dim=16,
                          task=tasks.markov_language(vocab=64, seq_len=32))
    assert unit_width(family, CPU.unit_floors, (1, 2, 4)) == 32
    assert unit_width(family, CPU.unit_floors, (0.5, 0.75, 1, 1.5, 2, 3, 4)) == 64
    law = PROPERTIES["power_law"].sweeps(PlanningSession(CPU, [0]), family, PROPERTIES["power_law"].grid_in("cpu"))
    assert law[0].widths == (32, 48, 64, 96, 128, 192, 256)
