"""Baseline rules without a pytest run: noise bands, what "worse" means, what a baseline keeps."""

from __future__ import annotations

import pytest

from pytest_scaling.baseline import DEFAULT_ABSOLUTE_BAND, make_baseline, noise_band, verdict
from pytest_scaling.report.model import make_record, make_report

ENV = {"tier": "cpu", "device": "cpu", "torch": "2.x", "commit": None}


@pytest.mark.parametrize(
    ("value", "ci", "band"),
    [(0.1, [0.05, 0.25], 0.1), (0.5, None, 0.05), (-0.5, None, 0.05), (0.0, None, DEFAULT_ABSOLUTE_BAND)],
)
def test_the_band_is_the_ci_half_width_else_relative_with_a_floor(value: float, ci: list[float] | None,
                                                                  band: float) -> None:
    assert noise_band(value, ci) == pytest.approx(band)


@pytest.mark.parametrize(
    ("value", "base", "expected"),
    [(0.3, 0.1, "regressed"), (-0.3, 0.1, "regressed"), (0.3, -0.1, "regressed"), (0.0, 0.2, "improved"),
     (-0.15, 0.1, None), (0.1, -0.1, None)],
)
def test_a_larger_magnitude_is_worse_whatever_the_sign(value: float, base: float, expected: str | None) -> None:
    assert verdict(value, base, band=0.1) == expected


def test_a_baseline_keeps_passing_records_with_numeric_values_only() -> None:
    raw = [{"name": "kept", "test": "t::a", "values": {"property": "lr_transfer", "value": 0.1}},
           {"name": "failed", "test": "t::b", "values": {"value": 0.2}},
           {"name": "no value", "test": "t::c", "values": {"losses": [1.0]}},
           {"name": "outside a test", "test": None, "values": {"value": 0.3}}]
    statuses = ["pass", "fail", "pass", "inconclusive"]
    report = make_report([make_record(record, status) for record, status in zip(raw, statuses)], ENV)
    assert report["records"][3]["test"] == "outside a test"
    baseline = make_baseline(report)
    assert baseline["environment"] == ENV
    kept = {"test": "t::a", "property": "lr_transfer", "value": 0.1, "band": pytest.approx(0.01)}
    assert baseline["metrics"] == {"kept": kept}
