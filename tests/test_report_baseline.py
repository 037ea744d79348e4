"""Baseline rules without a pytest run: seed noise, what "worse" means per property, what a baseline keeps."""

from __future__ import annotations

import math

import pytest

from pytest_scaling.baseline import ABSOLUTE_FLOOR, RESOLUTION, Z_FLAG, compare, make_baseline, noise_floor, verdict, z_score
from pytest_scaling.properties import PROPERTIES, seed_noise, worse_of
from pytest_scaling.report.model import make_record, make_report

ENV = {"tier": "cpu", "device": "cpu", "torch": "2.x", "commit": None}


def test_seed_noise_is_the_standard_error_of_the_per_seed_values() -> None:
    assert seed_noise([1.0, 3.0]) == pytest.approx(math.sqrt(2.0) / math.sqrt(2.0))
    assert seed_noise([0.1, 0.2, 0.3]) == pytest.approx(0.1 / math.sqrt(3))
    assert seed_noise([0.5]) is None and seed_noise(None) is None
    assert seed_noise([0.5, None, float("nan")]) is None  # one finite value measures no noise


@pytest.mark.parametrize(("threshold", "floor"), [(0.15, RESOLUTION * 0.15), (-0.2, RESOLUTION * 0.2),
                                                  (None, ABSOLUTE_FLOOR), (0.0, ABSOLUTE_FLOOR)])
def test_the_noise_floor_is_a_fraction_of_the_threshold(threshold: float | None, floor: float) -> None:
    assert noise_floor(threshold) == pytest.approx(floor)


def test_every_property_declares_which_way_is_worse() -> None:
    assert all(entry.worse in ("higher", "higher_abs") for entry in PROPERTIES.values())
    assert PROPERTIES["coord_check"].worse == "higher" and PROPERTIES["lr_curve_transfer"].worse == "higher_abs"
    assert PROPERTIES["depth_sensitivity"].worse == "higher"  # signed growth: S falling with depth is not a regression
    assert worse_of("higher") == "higher" and worse_of(None) == "higher_abs"  # a record of no property: |x|


def record(value: float, noise: float | None = 0.01, threshold: float = 0.15) -> dict:
    return {"value": value, "noise": noise, "threshold": threshold}


def test_a_signed_value_moving_up_is_worse_for_a_higher_property() -> None:
    # A coordinate-check slope from -0.3 to 0: towards the growth bound, so worse (|x| would call it better).
    z = z_score(record(0.0), record(-0.3), "higher")
    assert z == pytest.approx(0.3 / math.hypot(0.01, 0.01)) and verdict(z) == "regressed"
    assert verdict(z_score(record(-0.3), record(0.0), "higher")) == "improved"


def test_a_magnitude_moving_either_way_is_worse_for_a_higher_abs_property() -> None:
    assert verdict(z_score(record(-0.2), record(0.05), "higher_abs")) == "regressed"
    assert verdict(z_score(record(0.2), record(0.05), "higher_abs")) == "regressed"
    assert verdict(z_score(record(0.0), record(-0.2), "higher_abs")) == "improved"


def test_a_change_inside_the_seed_noise_never_flags() -> None:
    noisy = z_score(record(0.10, noise=0.02), record(0.05, noise=0.02), "higher")
    assert noisy == pytest.approx(0.05 / math.hypot(0.02, 0.02)) and verdict(noisy) is None
    # Without measured noise (one seed) the floor stands in: RESOLUTION of the threshold.
    floor = RESOLUTION * 0.15
    assert z_score(record(0.05 + 2 * floor, noise=None), record(0.05, noise=None), "higher") == pytest.approx(2 / math.sqrt(2))
    # The same change with a tiny measured noise still uses the floor, so two seeds agreeing by chance do not flag it.
    assert verdict(z_score(record(0.05 + 2 * floor, noise=1e-9), record(0.05, noise=1e-9), "higher")) is None
    assert verdict(Z_FLAG + 0.01) == "regressed" and verdict(Z_FLAG - 0.01) is None


def test_a_baseline_keeps_passing_records_with_numeric_values_and_their_noise() -> None:
    raw = [{"name": "kept", "test": "t::a", "values": {"property": "lr_curve_transfer", "value": 0.1, "threshold": 0.25,
                                                       "seed_values": [0.08, 0.12], "noise": 0.02}},
           {"name": "failed", "test": "t::b", "values": {"value": 0.2}},
           {"name": "no value", "test": "t::c", "values": {"losses": [1.0]}},
           {"name": "outside a test", "test": None, "values": {"value": 0.3}}]
    statuses = ["pass", "fail", "pass", "inconclusive"]
    report = make_report([make_record(record, status) for record, status in zip(raw, statuses)], ENV)
    assert report["records"][3]["test"] == "outside a test"
    baseline = make_baseline(report)
    assert baseline["environment"] == ENV
    assert baseline["metrics"] == {"kept": {"test": "t::a", "property": "lr_curve_transfer", "value": 0.1, "noise": 0.02,
                                            "seed_values": [0.08, 0.12], "threshold": 0.25, "worse": "higher_abs"}}


def test_compare_fills_z_and_flags_only_passing_records_beyond_the_noise() -> None:
    def report(value: float, status: str = "pass") -> dict:
        raw = {"name": "coord_check[f]", "test": "t", "values": {"property": "coord_check", "family": "f", "value": value,
                                                                 "threshold": 0.15, "noise": 0.005}}
        return make_report([make_record(raw, status)], ENV)

    baseline = make_baseline(report(0.02))
    regressed = report(0.1)
    comparison = compare(regressed, baseline)
    record = regressed["records"][0]
    assert comparison.regressed == ["coord_check[f]"] and record["status"] == "regressed"
    assert record["baseline"]["z"] == pytest.approx(0.08 / math.hypot(0.005, 0.005))
    failing = report(0.3, status="fail")
    assert compare(failing, baseline).regressed == [] and failing["records"][0]["status"] == "fail"
    same = report(0.025)
    assert compare(same, baseline).regressed == [] and same["records"][0]["status"] == "pass"


def test_a_baseline_saved_before_a_property_was_renamed_still_compares() -> None:
    def report(name: str, value: float) -> dict:
        raw = {"name": f"{name}[f]", "test": "t", "values": {"property": name, "family": "f", "value": value,
                                                             "threshold": 0.005, "noise": 1e-4, "worse": "higher"}}
        return make_report([make_record(raw, "pass")], ENV)

    baseline = make_baseline(report("depth", 0.001))
    renamed = report("depth_sensitivity", 0.004)
    assert compare(renamed, baseline).regressed == ["depth_sensitivity[f]"]
