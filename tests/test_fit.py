"""Power-law fits, prediction bands and held-out extrapolation (pytest_scaling.fit)."""

import json

import numpy as np
import pytest

from pytest_scaling.fit import extrapolation_check, fit_power_law

X = np.geomspace(1e6, 1e9, 8)


def power_law(x, E=1.7, A=400.0, alpha=0.35):
    return E + A * x**-alpha


def test_exact_power_law_is_recovered():
    fit = fit_power_law(X, power_law(X))
    assert fit.E == pytest.approx(1.7, rel=1e-4)
    assert fit.A == pytest.approx(400.0, rel=1e-3)
    assert fit.alpha == pytest.approx(0.35, rel=1e-4)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert np.max(np.abs(fit.residuals)) < 1e-5
    np.testing.assert_allclose(fit.predict(X), power_law(X), rtol=1e-5)


def test_without_E_fits_a_line_in_log_space():
    y = 30.0 * X**-0.2
    fit = fit_power_law(X, y, fit_E=False)
    assert fit.E == 0.0
    assert fit.alpha == pytest.approx(0.2, rel=1e-5)
    assert fit.A == pytest.approx(30.0, rel=1e-4)
    assert "E" not in fit.ci


def test_huber_fit_ignores_one_outlier():
    y = power_law(X)
    y[3] *= 1.3
    fit = fit_power_law(X, y)
    assert fit.alpha == pytest.approx(0.35, abs=0.01)
    assert np.argmax(np.abs(fit.residuals)) == 3


def test_bootstrap_ci_and_band_cover_the_truth():
    rng = np.random.default_rng(0)
    y = power_law(X) * np.exp(0.01 * rng.standard_normal(X.size))
    fit = fit_power_law(X, y, bootstrap=200, seed=1)
    assert fit.bootstrap_params.shape == (200, 3)
    lo, hi = fit.ci["alpha"]
    assert lo < 0.35 < hi
    band_lo, band_hi = fit.predict_band(X)
    assert np.all(band_lo <= fit.predict(X) + 1e-12) and np.all(fit.predict(X) <= band_hi + 1e-12)
    # same seed, same resamples
    again = fit_power_law(X, y, bootstrap=200, seed=1)
    np.testing.assert_array_equal(again.bootstrap_params, fit.bootstrap_params)


def test_band_needs_bootstrap():
    with pytest.raises(ValueError, match="bootstrap"):
        fit_power_law(X, power_law(X)).predict_band(X)


def test_to_dict_is_json():
    fit = fit_power_law(X, power_law(X), bootstrap=5)
    d = json.loads(json.dumps(fit.to_dict(), allow_nan=False))
    assert d["alpha"] == pytest.approx(fit.alpha)
    assert len(d["bootstrap_params"]) == 5 and d["ci"]["alpha"][0] <= d["ci"]["alpha"][1]


def test_results_are_immutable():
    fit = fit_power_law(X, power_law(X))
    with pytest.raises(AttributeError):
        fit.alpha = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        fit.residuals[0] = 1.0


def test_extrapolation_of_a_true_power_law_passes():
    rng = np.random.default_rng(2)
    y = power_law(X) * np.exp(0.003 * rng.standard_normal(X.size))
    res = extrapolation_check(X, y, holdout=2, bootstrap=100, seed_noise=np.full(X.size, 0.01))
    assert res.fit.n == 6
    np.testing.assert_array_equal(res.x_holdout, X[-2:])
    assert res.max_rel_error < 0.01
    assert not np.any(res.flagged)
    assert res.in_band is not None and res.in_band.shape == (2,)


def test_extrapolation_flags_a_curve_that_bends_away():
    """The SP-at-fixed-LR shape: the loss falls as a power law, then turns up at the largest sizes."""
    y = power_law(X)
    y[-2:] *= np.array([1.08, 1.15])
    res = extrapolation_check(X, y, holdout=2, bootstrap=50, seed_noise=np.full(X.size, 0.01))
    assert res.max_rel_error > 0.05
    assert np.all(res.flagged)
    assert not np.any(res.in_band)


def test_the_z_score_counts_the_fits_own_spread_besides_seed_noise():
    """With tiny seed noise, a fit on a few noisy sizes is judged by its bootstrap spread, not flagged by noise alone."""
    rng = np.random.default_rng(0)
    y = power_law(X) * np.exp(0.01 * rng.standard_normal(X.size))
    res = extrapolation_check(X, y, holdout=2, bootstrap=100, seed_noise=np.full(X.size, 1e-9))
    spread = res.fit.bootstrap_predictions(res.x_holdout).std(axis=0)
    np.testing.assert_allclose(res.seed_noise, np.sqrt(1e-18 + spread**2))
    np.testing.assert_allclose(res.z_scores, (res.predicted - res.y_holdout) / res.seed_noise)
    without = extrapolation_check(X, y, holdout=2, bootstrap=0, seed_noise=np.full(X.size, 1e-9))
    assert np.all(np.abs(without.z_scores) > np.abs(res.z_scores))


def test_a_miss_is_excused_by_the_observations_seed_noise_but_not_by_the_fits_spread():
    """excess: the smaller of |rel|/rtol and |miss|/(n_sigma · observed noise); a wide bootstrap band lowers z only."""
    rng = np.random.default_rng(0)
    y = power_law(X) * np.exp(0.03 * rng.standard_normal(X.size))
    noisy_fit = extrapolation_check(X, y, holdout=2, bootstrap=100, seed_noise=np.full(X.size, 1e-9))
    no_band = extrapolation_check(X, y, holdout=2, bootstrap=0, seed_noise=np.full(X.size, 1e-9))
    np.testing.assert_allclose(noisy_fit.excess(0.001), no_band.excess(0.001))
    np.testing.assert_allclose(noisy_fit.excess(0.001), np.abs(noisy_fit.rel_errors) / 0.001)
    noisy_observation = extrapolation_check(X, y, holdout=2, bootstrap=100, seed_noise=np.full(X.size, 10.0))
    np.testing.assert_allclose(noisy_observation.excess(0.001),
                               np.abs(noisy_observation.predicted - noisy_observation.y_holdout) / 30.0)


def test_holdout_takes_all_seeds_of_the_largest_size():
    x = np.repeat(X, 2)
    y = power_law(x) * np.exp(0.002 * np.tile([1.0, -1.0], X.size))
    res = extrapolation_check(x, y, holdout=1, bootstrap=0)
    np.testing.assert_array_equal(res.x_holdout, [X[-1], X[-1]])
    assert res.band_lo is None and res.in_band is None and res.flagged is None


@pytest.mark.parametrize(
    "x, y, kwargs, match",
    [
        (X[:2], power_law(X[:2]), {}, "3 parameters but only 2 distinct points"),
        (np.repeat(X[:2], 3), power_law(np.repeat(X[:2], 3)), {}, "only 2 distinct points"),
        (X[:1], power_law(X[:1]), {"fit_E": False}, "2 parameters but only 1"),
        (X, -power_law(X), {}, "y must be strictly positive"),
        (-X, power_law(X), {}, "x must be strictly positive"),
        (X, np.where(np.arange(8) == 3, np.nan, power_law(X)), {}, "y contains NaN"),
        (X, power_law(X)[:-1], {}, "mismatched lengths"),
        (X.reshape(2, 4), power_law(X).reshape(2, 4), {}, "must be 1-D"),
        (X, power_law(X), {"bootstrap": -1}, "bootstrap must be >= 0"),
    ],
)
def test_fit_power_law_rejects_bad_input(x, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(x, y, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"holdout": 0}, "holdout must be between 1 and 7"),
        ({"holdout": 8}, "holdout must be between"),
        ({"holdout": 6}, "3 parameters but only 2 distinct points"),
        ({"seed_noise": np.zeros(8)}, "seed_noise must be strictly positive"),
        ({"seed_noise": np.ones(3)}, "mismatched lengths"),
    ],
)
def test_extrapolation_check_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        extrapolation_check(X, power_law(X), bootstrap=0, **kwargs)
