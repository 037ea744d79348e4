"""assert_* (pytest_scaling.assertions): pass returns the result; failure shows the evidence table, threshold and hint."""

import numpy as np
import pytest

from pytest_scaling.assertions import (
    assert_coord_check,
    assert_extrapolation,
    assert_lr_sensitivity,
    assert_lr_transfer,
    assert_no_logit_divergence,
    assert_power_law,
    assert_wider_is_better,
)
from pytest_scaling.fit import extrapolation_check, fit_power_law
from pytest_scaling.metrics import (
    coord_slopes,
    fixed_lr_width_trend,
    logit_trend,
    lr_sensitivity_by_size,
    lr_transfer,
)

LRS = 2.0 ** np.arange(-14, -3)
WIDTHS = np.array([64, 128, 256, 512])
X = np.geomspace(1e6, 1e9, 8)


def transfer(vertices):
    x = np.log2(LRS)
    losses = np.stack([np.stack([1.0 + 0.05 * (x - v) ** 2 + 0.01 * s for s in range(2)], axis=-1) for v in vertices])
    return lr_transfer(WIDTHS, LRS, losses)


def failure(check, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        check(*args, **kwargs)
    return str(info.value)


# ---- LR transfer ------------------------------------------------------------------------------


def test_flat_optimum_passes_and_returns_the_result():
    res = transfer([-9.0, -9.1, -8.9, -9.0])
    assert assert_lr_transfer(res) is res


def test_sp_drift_fails_with_the_per_width_table():
    msg = failure(assert_lr_transfer, transfer([-8.0, -9.0, -10.0, -11.0]))
    assert "LR transfer failed" in msg
    assert "width    η* (log2, mean)    η* (log2) per seed    seeds" in msg
    assert "512      -11.00             -11.00, -11.00        2/2" in msg
    assert "slope of log2 η* on log2 width: -1.000 (95% CI over seeds [-1.000, -1.000]); threshold |slope| ≤ 0.25" in msg
    assert "the optimum drifts like SP: η* falls as width grows\n" in msg
    assert "untested hint (a question, not a finding; --scaling-diagnose tests the usual fixes): is the hidden-layer LR scaled by 1/m" in msg


def test_rising_optimum_fails_with_its_own_hint():
    msg = failure(assert_lr_transfer, transfer([-10.0, -9.5, -9.0, -8.5]), max_abs_slope=0.25)
    assert "slope of log2 η* on log2 width: 0.500" in msg and "optimum rises with width" in msg


def test_an_edge_optimum_fails_with_widen_the_grid_even_if_the_rest_is_flat():
    msg = failure(assert_lr_transfer, transfer([-9.0, -9.0, -9.0, -20.0]))
    assert "inconclusive" in msg
    assert "512      —                  edge, edge            0/2" in msg
    assert "width 512 seed 0: optimum at the lower edge of the LR grid" in msg
    assert "an optimum sits on the LR grid's edge: widen the LR grid" in msg


def test_a_fully_inconclusive_result_fails():
    res = transfer([-20.0, -20.0, -20.0, -20.0])
    assert res.inconclusive
    msg = failure(assert_lr_transfer, res)
    assert "fewer than two widths have a conclusive optimal LR" in msg and "widen the LR grid" in msg


# ---- coordinate check -------------------------------------------------------------------------


def coord(exponents):
    widths = np.array([64, 128, 256, 512])
    sizes = widths[None, None, :] ** np.asarray(exponents, dtype=float)[..., None]
    return coord_slopes(widths, sizes, layers=["input", "hidden", "readout"])


def test_flat_coordinates_pass():
    res = coord([[0.0, 0.05, 0.1]] * 3)
    assert assert_coord_check(res) is res


def test_readout_growth_fails_with_the_readout_hint():
    msg = failure(assert_coord_check, coord([[0, 0, 0], [0, 0.05, 0.1], [0, 0.6, 1.0]]))
    assert "layer    t=0     t=1     t=2     max |slope|" in msg
    assert "readout  +0.000  +0.600  +1.000  1.000" in msg
    assert "worst: readout at step 2, slope +1.000; threshold |slope| ≤ 0.15" in msg
    assert "the output layer grows with width first\nuntested hint (a question, not a finding; --scaling-diagnose tests the usual fixes): is the readout zero-initialised (or variance 1/fan_in²) and multiplied by 1/m" in msg


def test_the_hint_follows_the_first_layer_to_grow_not_the_worst():
    # The readout grows at step 1; a hidden layer only later (fed by it) but more: the readout is named.
    msg = failure(assert_coord_check, coord([[0, 0.05, 0.9], [0, 0.02, 0.1], [0, 0.6, 0.7]]))
    assert "worst: input at step 2" in msg and "the first to grow: readout at step 1" in msg
    assert "the output layer grows with width first\n" in msg


def test_hidden_growth_fails_with_the_hidden_lr_hint():
    msg = failure(assert_coord_check, coord([[0, 0, 0], [0, 0.3, 0.5], [0, 0.1, 0.1]]))
    assert "worst: hidden at step 2" in msg and "hidden-layer LR scaled by 1/m" in msg


def test_growth_at_initialisation_fails_with_the_init_hint():
    msg = failure(assert_coord_check, coord([[0.5, 0.5, 0.5], [0, 0, 0], [0, 0, 0]]))
    assert "worst: input at step 0" in msg and "at initialisation" in msg


# ---- power law and extrapolation --------------------------------------------------------------


def test_a_clean_power_law_passes():
    fit = fit_power_law(X, 1.7 + 400 * X**-0.35)
    assert assert_power_law(fit, alpha_range=(0.3, 0.4)) is fit


def test_a_bent_curve_fails_with_residuals():
    y = 1.7 + 400 * X**-0.35
    y[::2] *= 1.1  # zig-zag: no power law fits it
    msg = failure(assert_power_law, fit_power_law(X, y))
    assert "power law check failed" in msg
    assert "x          L      fitted    log residual" in msg
    assert "threshold: R² ≥ 0.98" in msg and "R² (log) = " in msg
    assert "the losses bend away from a power law\n" in msg


def test_alpha_outside_its_range_fails():
    msg = failure(assert_power_law, fit_power_law(X, 1.7 + 400 * X**-0.35), alpha_range=(0.5, 1.0))
    assert "alpha in [0.5, 1.0]" in msg and "exponent is outside the expected range" in msg


def test_good_extrapolation_passes():
    res = extrapolation_check(X, 1.7 + 400 * X**-0.35, holdout=2, bootstrap=20)
    assert assert_extrapolation(res, require_in_band=True) is res


def test_bad_extrapolation_fails_with_the_holdout_table():
    y = 1.7 + 400 * X**-0.35
    y[-2:] *= [1.08, 1.15]
    res = extrapolation_check(X, y, holdout=2, bootstrap=20, seed_noise=np.full(8, 0.01))
    msg = failure(assert_extrapolation, res)
    assert "x          observed    predicted    rel. error    95% band        in band    z (σ)" in msg
    assert "1e+09      2.281       1.983        -13.04%" in msg and "no         -29.7" in msg
    assert "a point fails beyond 1.00% and beyond 3σ of its observed loss's seed noise" in msg
    assert "fit L = E + A·x^-alpha on 6 points" in msg
    assert "the held-out sizes leave the fitted curve\nuntested hint (a question, not a finding; --scaling-diagnose tests the usual fixes): is each size's loss its best-LR loss" in msg


def test_a_miss_must_exceed_both_the_tolerance_and_the_seed_noise_to_fail():
    y = 1.7 + 400 * X**-0.35
    y[-1] *= 1.02
    within_rtol = extrapolation_check(X, y, bootstrap=0, seed_noise=np.full(8, 0.001))  # 2% off, z ≈ 20
    assert within_rtol.max_rel_error < 0.05 and within_rtol.flagged[-1]
    assert assert_extrapolation(within_rtol, rtol=0.05) is within_rtol
    within_noise = extrapolation_check(X, y, bootstrap=0, seed_noise=np.full(8, 0.05))  # 2% off, z ≈ 0.8
    assert assert_extrapolation(within_noise, rtol=0.01) is within_noise
    both = extrapolation_check(X, y, bootstrap=0, seed_noise=np.full(8, 0.001))
    msg = failure(assert_extrapolation, both, rtol=0.01)
    assert "z (σ)" in msg and "band" in msg
    assert both.excess(0.01)[-1] == pytest.approx(min(abs(both.rel_errors[-1]) / 0.01, abs(both.z_scores[-1]) / 3))
    alone = extrapolation_check(X, y, bootstrap=0)  # one seed: no noise, the tolerance alone
    assert alone.excess(0.01)[-1] == pytest.approx(abs(alone.rel_errors[-1]) / 0.01)
    failure(assert_extrapolation, alone, rtol=0.01)


# ---- LR sensitivity ---------------------------------------------------------------------------


def sensitivity(curvatures):
    x = np.log2(LRS)
    losses = np.stack([np.stack([1.0 + c * (x + 9.0) ** 2] * 2, axis=-1) for c in curvatures])
    return lr_sensitivity_by_size(WIDTHS[: len(curvatures)], LRS, losses, 3.0)


def test_low_sensitivity_passes():
    res = sensitivity([0.001, 0.001, 0.001])
    assert assert_lr_sensitivity(res) is res
    assert assert_lr_sensitivity(0.05) == 0.05


def test_high_sensitivity_fails_with_the_per_size_table():
    msg = failure(assert_lr_sensitivity, sensitivity([0.01, 0.02, 0.04]))
    assert "width    S (mean)    S per seed" in msg
    assert "S exceeds 0.1" in msg
    assert "growth per doubling of width" in msg
    assert "the loss is sensitive to the LR" in msg and "untested hint (a question, not a finding; --scaling-diagnose tests the usual fixes): does the model lack qk-layernorm or z-loss" in msg


def test_growth_with_size_fails():
    msg = failure(assert_lr_sensitivity, sensitivity([0.001, 0.002, 0.004]), max_growth_per_doubling=0.001)
    assert "S grows" in msg and "per doubling of width > 0.001" in msg


def test_a_variant_that_does_not_lower_sensitivity_fails():
    variant, reference = sensitivity([0.001, 0.003, 0.003]), sensitivity([0.002, 0.002, 0.004])
    msg = failure(assert_lr_sensitivity, variant, lower_than=reference)
    assert "reference S" in msg and "not lower than the reference variant at every size" in msg
    assert assert_lr_sensitivity(reference, lower_than=sensitivity([0.005] * 3)) is reference


def test_bare_values_fail_with_a_table_and_reject_size_checks():
    msg = failure(assert_lr_sensitivity, [0.05, 0.3])
    assert "#    S (mean)    S per seed" in msg
    with pytest.raises(ValueError, match="need a SensitivityResult"):
        assert_lr_sensitivity([0.05], max_growth_per_doubling=0.1)


# ---- logit divergence -------------------------------------------------------------------------

STEPS = np.arange(200)


def test_bounded_logits_pass():
    trends = {
        "attn max logit": logit_trend(STEPS, 5 * (1 - np.exp(-STEPS / 30))),
        "|log Z|": logit_trend(STEPS, np.full(200, 0.2)),
    }
    assert assert_no_logit_divergence(trends) is trends


def test_growing_and_diverged_series_fail():
    values = np.ones(200)
    values[-1] = np.nan
    trends = [logit_trend(STEPS, 1 + 0.1 * STEPS), logit_trend(STEPS, values)]
    msg = failure(assert_no_logit_divergence, trends)
    assert "series    final    max |value|    drift (2nd half)    mid-run    rise (2nd half)    status" in msg
    assert "growing" in msg and "DIVERGED" in msg
    assert "failing: series 0, series 1" in msg
    assert "logits grow without bound or log Z drifts from 0 with nothing in the objective to pull it back\nuntested hint (a question, not a finding; --scaling-diagnose tests the usual fixes): does the model lack qk-layernorm" in msg


def test_a_normaliser_that_moves_away_from_zero_drifts():
    """log Z that starts at log(vocab) and falls to 0 passes; one that rises from there to 8 and stays fails without growing."""
    settling = logit_trend(STEPS, 4.2 * np.exp(-STEPS / 20), max_drift=3.0)
    assert assert_no_logit_divergence(settling) is settling
    held = logit_trend(STEPS, np.where(STEPS < 20, 4.2, 8.0), max_drift=3.0)
    assert not held.growing and not held.diverged and held.drift == pytest.approx(3.8)
    msg = failure(assert_no_logit_divergence, {"|log Z|": held})
    assert "DRIFTED" in msg and "failing: |log Z|" in msg


def test_a_drift_held_by_the_objective_is_not_a_failure():
    held = logit_trend(STEPS, np.where(STEPS < 20, 4.2, 8.0), max_drift=3.0)
    assert assert_no_logit_divergence({"|log Z|": held}, drift_fails=False)
    msg = failure(assert_no_logit_divergence, {"|log Z|": held, "b": logit_trend(STEPS, np.full(200, 2e4))},
                  drift_fails=False)
    assert "failing: b;" in msg and "drifted, held" in msg


def test_growth_can_be_allowed_but_divergence_cannot():
    growing = logit_trend(STEPS, 1 + 0.1 * STEPS)
    assert assert_no_logit_divergence(growing, allow_growth=True) is growing
    msg = failure(assert_no_logit_divergence, logit_trend(STEPS, np.full(200, 2e4)), allow_growth=True)
    assert "DIVERGED" in msg


# ---- wider is better --------------------------------------------------------------------------


def test_falling_loss_passes():
    res = fixed_lr_width_trend(WIDTHS, [1.0, 0.9, 0.85, 0.8])
    assert assert_wider_is_better(res) is res


def test_rising_loss_fails_with_the_width_table():
    msg = failure(assert_wider_is_better, fixed_lr_width_trend(WIDTHS, [1.0, 0.9, 0.95, 0.99]))
    assert "width    loss    vs best narrower" in msg
    assert "512      0.99    +10.00%" in msg
    assert "worst: width 512 is 10.00% above width 128; threshold ≤ 1.00%" in msg
    assert "wider is worse at a fixed LR" in msg
