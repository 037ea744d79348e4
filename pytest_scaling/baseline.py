"""Baselines: save a report's metrics with their noise bands, and compare a new report against them.

The rule for "worse", in one place: every property the suite records has a value that is a slope,
a sensitivity or an error, ideally zero, so a larger ``|value|`` is worse. A metric *regressed* when
``|new| > |base| + band`` and *improved* when ``|new| < |base| - band``.

The noise band of a metric is the half-width of its recorded CI when it has one, else
``max(DEFAULT_RELATIVE_BAND * |value|, DEFAULT_ABSOLUTE_BAND)``.

Only records whose test passed are saved; a baseline compares with records of the same name,
and only when its tier and device are this run's (otherwise nothing is comparable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_scaling.report.model import SCHEMA_VERSION, ci_bounds, is_number

DEFAULT_RELATIVE_BAND = 0.1
DEFAULT_ABSOLUTE_BAND = 1e-3
COMPARABLE_ON: tuple[str, ...] = ("tier", "device")
VERDICTS: tuple[str, ...] = ("regressed", "improved")


def noise_band(value: float, ci: Any) -> float:
    """The band within which a metric's change counts as noise (see the module docstring)."""
    bounds = ci_bounds(ci)
    if bounds is not None:
        return abs(bounds[1] - bounds[0]) / 2
    return max(DEFAULT_RELATIVE_BAND * abs(value), DEFAULT_ABSOLUTE_BAND)


def make_baseline(report: dict[str, Any]) -> dict[str, Any]:
    """A baseline document from a report: per passing record with a numeric value, that value and its band."""
    metrics = {
        record["name"]: {"test": record["test"], "property": record["property"], "value": record["value"],
                         "band": noise_band(record["value"], record["ci"])}
        for record in report["records"]
        if record["status"] == "pass" and is_number(record["value"])
    }
    return {"schema_version": SCHEMA_VERSION, "kind": "baseline", "environment": report["environment"],
            "metrics": metrics}


def mismatch(baseline: dict[str, Any], env: dict[str, Any]) -> str | None:
    """Why ``baseline`` is not comparable with a run in ``env`` (a differing tier or device), or None when it is."""
    differ = [f"{key} {baseline['environment'].get(key)} vs {env.get(key)}" for key in COMPARABLE_ON
              if baseline["environment"].get(key) != env.get(key)]
    return f"the baseline is from another {' and '.join(differ)} (baseline vs this run)" if differ else None


def verdict(value: float, base: float, band: float) -> str | None:
    """"regressed", "improved" or None (within the noise band) for ``value`` against ``base``."""
    change = abs(value) - abs(base)
    if change > band:
        return "regressed"
    if change < -band:
        return "improved"
    return None


@dataclass
class Comparison:
    """What comparing a report with a baseline found: names of regressed and improved records, and any warning."""

    regressed: list[str] = field(default_factory=list)
    improved: list[str] = field(default_factory=list)
    warning: str | None = None

    def notes(self) -> list[str]:
        """The lines that follow the records table: the warning, then the regressed and improved records by name."""
        notes = [f"warning: {self.warning}; nothing was compared"] if self.warning else []
        for verdict_name, names in zip(VERDICTS, (self.regressed, self.improved)):
            if names:
                notes.append(f"{verdict_name} beyond the baseline's noise band: {', '.join(names)}")
        return notes


def compare(report: dict[str, Any], baseline: dict[str, Any]) -> Comparison:
    """Fill each comparable record's ``baseline`` and, where it passed, turn its status to regressed or improved.

    Any earlier comparison in ``report`` is undone first, so a saved report can be compared again.
    """
    for record in report["records"]:
        record["baseline"] = None
        if record["status"] in VERDICTS:
            record["status"] = "pass"
    comparison = Comparison(warning=mismatch(baseline, report["environment"]))
    if comparison.warning:
        return comparison
    for record in report["records"]:
        base = baseline["metrics"].get(record["name"])
        if not isinstance(base, dict) or not is_number(base.get("value")) or not is_number(record["value"]):
            continue
        band = base["band"] if is_number(base.get("band")) else noise_band(base["value"], None)
        record["baseline"] = {"value": base["value"], "band": band, "delta": record["value"] - base["value"]}
        found = verdict(record["value"], base["value"], band)
        if found and record["status"] == "pass":
            record["status"] = found
            (comparison.regressed if found == "regressed" else comparison.improved).append(record["name"])
    return comparison
