"""Scaling metrics (pytest_scaling.metrics): optimal LR, LR transfer, sensitivity, coord slopes, logit and width trends."""

import json
import math

import numpy as np
import pytest

from pytest_scaling.properties.no_logit_divergence import criterion_fraction
from pytest_scaling.metrics import (
    coord_slopes,
    curve_shift,
    fixed_lr_width_trend,
    logit_trend,
    lr_sensitivity,
    lr_sensitivity_by_size,
    lr_curve_shift,
    lr_transfer,
    optimal_lr,
)

LRS = 2.0 ** np.arange(-14, -3)  # 2^-14 .. 2^-4, the CPU-tier grid of DESIGN §5
LOG2 = np.log2(LRS)


def bowl(vertex, floor=1.0, curvature=0.05):
    return floor + curvature * (LOG2 - vertex) ** 2


def sweep(vertices, n_seeds=2):
    """losses [width, lr, seed] with the optimum of width w at log2 η = vertices[w]."""
    return np.stack([np.stack([bowl(v, floor=1.0 + 0.01 * s) for s in range(n_seeds)], axis=-1) for v in vertices])


def as_json(result):
    return json.loads(json.dumps(result.to_dict(), allow_nan=False))


# ---- optimal_lr ------------------------------------------------------------------------------


def test_optimal_lr_is_the_parabola_vertex():
    opt = optimal_lr(LRS, bowl(-9.3))
    assert not opt.inconclusive and opt.reason == ""
    assert opt.log2_lr == pytest.approx(-9.3)
    assert opt.lr == pytest.approx(2**-9.3)
    assert opt.argmin == 5 and opt.loss_at_opt == pytest.approx(bowl(-9.3)[5])
    assert as_json(opt)["lr"] == pytest.approx(2**-9.3)


def test_diverged_runs_count_as_the_initial_loss():
    losses = bowl(-9.0)
    losses[-3:] = [np.nan, np.inf, 50.0]
    opt = optimal_lr(LRS, losses, initial_loss=3.0)
    np.testing.assert_array_equal(opt.losses[-3:], [3.0, 3.0, 3.0])
    assert opt.log2_lr == pytest.approx(-9.0)


def test_without_initial_loss_non_finite_runs_count_as_the_worst_finite_loss():
    losses = bowl(-9.0)
    losses[-1] = np.nan
    opt = optimal_lr(LRS, losses)
    assert opt.losses[-1] == np.max(losses[:-1])
    assert opt.log2_lr == pytest.approx(-9.0)


@pytest.mark.parametrize("vertex, edge", [(-15.0, "lower"), (-3.0, "upper")])
def test_optimum_on_a_grid_edge_is_inconclusive(vertex, edge):
    opt = optimal_lr(LRS, bowl(vertex))
    assert opt.inconclusive and opt.lr is None and opt.log2_lr is None
    assert opt.reason == f"optimum at the {edge} edge of the LR grid: widen the LR grid"


def test_all_diverged_is_inconclusive():
    opt = optimal_lr(LRS, np.full(LRS.size, np.nan), initial_loss=2.0)
    assert opt.inconclusive and "every run diverged" in opt.reason


def test_a_one_three_ten_grid_is_log_spaced_enough():
    lrs = np.array([1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    opt = optimal_lr(lrs, (np.log2(lrs) - np.log2(1e-3)) ** 2)
    assert opt.lr == pytest.approx(1e-3)


@pytest.mark.parametrize(
    "lrs, losses, kwargs, match",
    [
        (LRS[::-1], bowl(-9.0), {}, "strictly increasing"),
        (np.r_[LRS[:3], LRS[2:]], np.r_[bowl(-9.0), 1.0], {}, "strictly increasing"),
        (LRS[:2], bowl(-9.0)[:2], {}, "at least 3"),
        (np.r_[LRS[:-1], 1.0], bowl(-9.0), {}, "log-spaced"),
        (np.r_[-1.0, LRS[1:]], bowl(-9.0), {}, "strictly positive"),
        (LRS, bowl(-9.0)[:-1], {}, "mismatched lengths"),
        (LRS, np.full(LRS.size, np.nan), {}, "every loss is non-finite"),
        (LRS, bowl(-9.0), {"initial_loss": np.nan}, "initial_loss must be finite"),
    ],
)
def test_optimal_lr_rejects_bad_input(lrs, losses, kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimal_lr(lrs, losses, **kwargs)


# ---- lr_transfer ------------------------------------------------------------------------------

WIDTHS = np.array([64, 128, 256, 512])


def test_sp_like_drift_gives_slope_minus_one():
    res = lr_transfer(WIDTHS, LRS, sweep([-8.0, -9.0, -10.0, -11.0]))
    assert res.slope == pytest.approx(-1.0)
    assert res.intercept == pytest.approx(-2.0)
    assert res.ci == pytest.approx((-1.0, -1.0))
    np.testing.assert_allclose(res.mean_log2_lr, [-8, -9, -10, -11])
    assert not res.inconclusive and res.inconclusive_cells == ()
    assert as_json(res)["n_conclusive"] == [2, 2, 2, 2]


def test_seed_noise_gives_a_ci_around_the_least_squares_slope():
    rng = np.random.default_rng(0)
    vertices = -9.0 + 0.3 * rng.standard_normal((4, 3))
    losses = np.stack([np.stack([bowl(v) for v in row], axis=-1) for row in vertices])
    res = lr_transfer(WIDTHS, LRS, losses, n_boot=500, seed=3)
    expected = np.polyfit(np.repeat(np.log2(WIDTHS), 3), vertices.ravel(), 1)[0]
    assert res.slope == pytest.approx(expected)
    assert res.ci[0] < res.slope < res.ci[1]
    assert res.ci == lr_transfer(WIDTHS, LRS, losses, n_boot=500, seed=3).ci


def test_edge_optima_are_listed_and_left_out_of_the_slope():
    losses = sweep([-8.0, -9.0, -10.0, -20.0])
    res = lr_transfer(WIDTHS, LRS, losses)
    assert [(w, s) for w, s, _ in res.inconclusive_cells] == [(512.0, 0), (512.0, 1)]
    assert "lower edge" in res.inconclusive_cells[0][2]
    assert res.slope == pytest.approx(-1.0) and not res.inconclusive
    assert np.isnan(res.mean_log2_lr[3]) and res.n_conclusive.tolist() == [2, 2, 2, 0]


def test_fewer_than_two_conclusive_widths_is_inconclusive():
    res = lr_transfer(WIDTHS, LRS, sweep([-8.0, -20.0, -20.0, -20.0]))
    assert res.inconclusive and res.slope is None and res.ci is None
    assert "widen the LR grid" in res.reason


def test_one_seed_has_no_ci():
    res = lr_transfer(WIDTHS, LRS, sweep([-9.0, -9.0, -9.0, -9.0], n_seeds=1))
    assert res.slope == pytest.approx(0.0, abs=1e-12) and res.ci is None


def test_per_width_seed_initial_loss():
    losses = sweep([-9.0, -9.0, -9.0, -9.0])
    losses[:, -2:, :] = np.nan
    init = np.full((4, 2), 5.0)
    res = lr_transfer(WIDTHS, LRS, losses, initial_loss=init)
    assert res.slope == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "widths, losses, kwargs, match",
    [
        (WIDTHS[::-1], sweep([-9] * 4), {}, "widths must be strictly increasing"),
        (np.array([64, 64, 128, 256]), sweep([-9] * 4), {}, "widths must be strictly increasing"),
        (WIDTHS[:1], sweep([-9]), {}, "at least 2"),
        (WIDTHS, sweep([-9] * 3), {}, r"losses must have shape \[widths=4, lr=11, seed\]"),
        (WIDTHS, sweep([-9] * 4)[..., 0], {}, "losses must have shape"),
        (WIDTHS, sweep([-9] * 4), {"initial_loss": np.ones((4, 3))}, r"initial_loss must have shape \(4, 2\)"),
        (WIDTHS, sweep([-9] * 4), {"n_boot": 0}, "n_boot must be >= 1"),
    ],
)
def test_lr_transfer_rejects_bad_input(widths, losses, kwargs, match):
    with pytest.raises(ValueError, match=match):
        lr_transfer(widths, LRS, losses, **kwargs)


# ---- LR sensitivity ---------------------------------------------------------------------------


def test_lr_sensitivity_matches_the_definition():
    losses = bowl(-9.0)
    losses[-1] = np.nan
    L0 = 2.0
    expected = np.mean(np.minimum(np.where(np.isfinite(losses), losses, L0), L0) - 1.0)
    assert lr_sensitivity(LRS, losses, L0) == pytest.approx(expected)


def test_a_flat_curve_has_zero_sensitivity():
    assert lr_sensitivity(LRS, np.ones(LRS.size), 2.0) == 0.0


def test_sensitivity_by_size_and_its_growth():
    losses = np.stack([np.stack([bowl(-9.0, curvature=c)] * 2, axis=-1) for c in (0.01, 0.02, 0.04)])
    res = lr_sensitivity_by_size([1, 2, 4], LRS, losses, 10.0, size_name="depth")
    assert res.values.shape == (3, 2)
    np.testing.assert_allclose(res.mean, [lr_sensitivity(LRS, bowl(-9.0, curvature=c), 10.0) for c in (0.01, 0.02, 0.04)])
    assert res.growth_per_doubling == pytest.approx(np.polyfit([0, 1, 2], res.mean, 1)[0])
    assert as_json(res)["size_name"] == "depth"


def test_lr_sensitivity_rejects_bad_input():
    with pytest.raises(ValueError, match="initial_loss must be finite"):
        lr_sensitivity(LRS, bowl(-9.0), np.inf)
    with pytest.raises(ValueError, match="mismatched lengths"):
        lr_sensitivity(LRS, bowl(-9.0)[1:], 2.0)


# ---- coordinate check -------------------------------------------------------------------------


def test_coord_slopes_recover_power_of_width():
    widths = np.array([64, 128, 256, 512, 1024])
    exponents = np.array([[0.0, 0.0, 0.0], [0.0, 0.1, 0.2], [0.0, 0.5, 1.0]])  # [layer, step]
    sizes = 0.7 * widths[None, None, :] ** exponents[..., None]
    res = coord_slopes(widths, sizes, layers=["input", "hidden", "readout"])
    np.testing.assert_allclose(res.slopes, exponents, atol=1e-12)
    assert res.layers == ("input", "hidden", "readout") and res.max_abs_slope == pytest.approx(1.0)
    assert coord_slopes(widths, sizes).layers == ("layer0", "layer1", "layer2")


@pytest.mark.parametrize(
    "sizes, layers, match",
    [
        (np.ones((2, 3, 4)), None, r"sizes must have shape \[layer, step, width=5\]"),
        (np.full((2, 3, 5), -1.0), None, "finite and non-negative"),
        (np.full((2, 3, 5), np.nan), None, "finite and non-negative"),
        (np.ones((2, 3, 5)), ["a"], "1 layer names for 2 layers"),
    ],
)
def test_coord_slopes_reject_bad_input(sizes, layers, match):
    with pytest.raises(ValueError, match=match):
        coord_slopes([64, 128, 256, 512, 1024], sizes, layers)


# ---- curve shift ------------------------------------------------------------------------------


@pytest.mark.parametrize("moved", [0.0, 0.37, -1.2, 2.5])
def test_curve_shift_recovers_how_far_a_bowl_moved(moved):
    assert curve_shift(LRS, bowl(-8.0), bowl(-8.0 + moved)) == pytest.approx(moved, abs=0.011)


def test_curve_shift_ignores_a_curve_that_is_better_everywhere():
    assert curve_shift(LRS, bowl(-8.0), 0.9 * bowl(-8.0)) == 0.0
    assert curve_shift(LRS, bowl(-8.0), 0.9 * bowl(-7.5)) == pytest.approx(0.5, abs=0.011)


def test_curve_shift_reads_the_flanks_of_a_flat_top():
    """A flat-bottomed curve moved by 0.6: its three best points barely differ, yet the shift is found."""
    def flat(vertex):
        return 1.0 + 0.05 * np.maximum(np.abs(LOG2 - vertex) - 2.0, 0.0) ** 2

    assert curve_shift(LRS, flat(-9.0), flat(-8.4)) == pytest.approx(0.6, abs=0.011)


def test_lr_curve_shift_per_seed_and_slope_on_log_size():
    # The curve moves 0.5 per doubling of size (depth 2 -> 8: +1.0), floors differing by seed.
    losses = sweep([-9.0, -8.5, -8.0])
    result = lr_curve_shift([2, 4, 8], LRS, losses)
    np.testing.assert_allclose(result.shift, [[0, 0], [0.5, 0.5], [1.0, 1.0]], atol=0.011)
    assert result.slope == pytest.approx(0.5, abs=0.01) and result.mean_shift[0] == 0


def test_lr_curve_shift_counts_diverged_runs_as_the_initial_loss():
    losses = sweep([-9.0, -9.0], n_seeds=1)
    losses[1, -3:, 0] = np.inf  # the deep model's top three LRs diverged: its upper flank rises earlier
    assert lr_curve_shift([2, 8], LRS, losses, initial_loss=4.0).shift[1, 0] < -0.5  # read as a lower optimum
    with pytest.raises(ValueError, match="no finite loss"):
        lr_curve_shift([2, 8], LRS, np.full((2, LRS.size, 1), np.inf))


# ---- logit trends -----------------------------------------------------------------------------

STEPS = np.arange(0, 200)


def test_steady_growth_is_sustained():
    trend = logit_trend(STEPS, 1.0 + 0.05 * STEPS)
    assert trend.growing and not trend.diverged
    assert trend.rise == pytest.approx(0.05 * 99)
    assert trend.final == pytest.approx(1.0 + 0.05 * 199) and trend.mid == pytest.approx(6.0)


def test_a_plateau_is_not_growth():
    values = 8.0 * (1 - np.exp(-STEPS / 20.0))  # rises early, flat in the second half
    trend = logit_trend(STEPS, values)
    assert not trend.growing and not trend.diverged


@pytest.mark.parametrize("bad", [np.nan, np.inf, 2e4])
def test_non_finite_or_huge_values_diverge(bad):
    values = np.ones(STEPS.size)
    values[150] = bad
    trend = logit_trend(STEPS, values)
    assert trend.diverged
    assert as_json(trend)["final"] == 1.0


def test_drift_is_the_second_half_above_the_start():
    values = np.where(STEPS < 50, 4.0, 6.5)  # starts at 4, moves to 6.5 and stays
    trend = logit_trend(STEPS, values, max_drift=3.0)
    assert trend.drift == pytest.approx(2.5) and not trend.drifted
    assert logit_trend(STEPS, values, max_drift=2.0).drifted
    assert logit_trend(STEPS, -values, max_drift=2.0).drifted  # away from 0 either way (a signed series)
    assert logit_trend(STEPS, np.where(STEPS < 50, 4.0, 0.1), max_drift=0.0).drift < 0  # towards 0 is not drift
    assert not logit_trend(STEPS, np.full(STEPS.size, 1e3)).drifted  # no bound by default


def test_the_growth_measure_exceeds_one_exactly_when_the_series_grows():
    steady = logit_trend(STEPS, 1.0 + 0.05 * STEPS)  # rise 4.95 > 1, ends at 10.95 > 1.5 × 6
    assert steady.growing and steady.growth == pytest.approx(min(0.05 * 99, 10.95 / 9.0)) and steady.growth > 1
    slow = logit_trend(STEPS, 5.0 + 0.01 * STEPS)  # rise 0.99: short of both criteria
    assert not slow.growing and slow.growth == pytest.approx(min(0.99, 6.99 / 9.0))
    assert logit_trend(STEPS, np.where(STEPS < 150, 1.0, np.nan)).growth == math.inf


def test_the_logit_check_value_is_the_largest_fraction_of_a_cap_or_drift_bound_reached():
    steady = logit_trend(STEPS, 1.0 + 0.05 * STEPS)  # growing, far under its cap: unresolved, not a failure
    assert steady.growing and criterion_fraction(steady, 1e3, math.inf) == pytest.approx(steady.max_abs / 1e3)
    past_cap = logit_trend(STEPS, 1.0 + 20.0 * STEPS)
    assert criterion_fraction(past_cap, 1e3, math.inf) == pytest.approx(past_cap.max_abs / 1e3)
    assert past_cap.max_abs > 1e3
    drifting = logit_trend(STEPS, np.where(STEPS < 50, 4.0, 6.5), max_drift=2.0)
    assert criterion_fraction(drifting, 20.0, 2.0) == pytest.approx(2.5 / 2.0)


def test_logit_trend_rejects_bad_input():
    with pytest.raises(ValueError, match="steps must be strictly increasing"):
        logit_trend(STEPS[::-1], np.ones(STEPS.size))
    with pytest.raises(ValueError, match="at least 4"):
        logit_trend(STEPS[:3], np.ones(3))


# ---- wider is better --------------------------------------------------------------------------


def test_falling_loss_with_width_has_no_increase():
    res = fixed_lr_width_trend(WIDTHS, [[1.0, 1.02], [0.9, 0.92], [0.85, 0.86], [0.8, 0.8]])
    assert res.max_increase == 0.0 and res.max_rel_increase == 0.0 and res.worst_pair is None
    assert res.slope_per_doubling < 0


def test_rising_loss_is_measured_against_the_best_narrower_width():
    res = fixed_lr_width_trend(WIDTHS, [1.0, 0.9, 0.95, 0.99])
    assert res.worst_pair == (1, 3)
    assert res.max_increase == pytest.approx(0.09)
    assert res.max_rel_increase == pytest.approx(0.1)


def test_a_diverged_wide_model_is_an_infinite_increase():
    res = fixed_lr_width_trend(WIDTHS, [1.0, 0.9, 0.8, np.nan])
    assert res.max_rel_increase == np.inf and np.isnan(res.slope_per_doubling)
    assert as_json(res)["max_rel_increase"] is None


def test_fixed_lr_width_trend_rejects_bad_input():
    with pytest.raises(ValueError, match=r"losses must have shape \[width=4\]"):
        fixed_lr_width_trend(WIDTHS, [1.0, 0.9])
    with pytest.raises(ValueError, match="widths must be strictly increasing"):
        fixed_lr_width_trend([128, 64], [1.0, 0.9])
