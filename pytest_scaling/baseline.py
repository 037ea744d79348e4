"""Baselines: save a report's metrics with their measured seed noise, and judge a new report against them.

What "worse" means is what the record says, as its property declares it (``Property.worse``): for a ``higher`` property
the change is ``new − base``, for a ``higher_abs`` one ``|new| − |base|``. The change is divided by the noise of
the difference, ``σ = √(σ_base² + σ_new²)``, where each σ is the standard error of that run's value measured from
its per-seed values (``seed_noise``), floored at ``RESOLUTION`` of the property's threshold: one seed measures no
noise, and two seeds can agree by chance. A record whose test passed is *regressed* when ``z = change / σ >
Z_FLAG`` and *improved* when ``z < −Z_FLAG``; a change inside the seed noise never flags.

Only records whose test passed are saved; a baseline compares with records of the same name, and only when its
tier and device are this run's (otherwise nothing is comparable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pytest_scaling.property import worse_of
from pytest_scaling.report.model import SCHEMA_VERSION, is_number

#: A change is flagged when it exceeds this many standard deviations of the seed noise of the difference.
Z_FLAG = 3.0
#: The noise floor, as a fraction of the property's threshold: the smallest change the suite resolves.
RESOLUTION = 0.02
#: The noise floor of a record without a numeric threshold.
ABSOLUTE_FLOOR = 1e-3
COMPARABLE_ON: tuple[str, ...] = ("tier", "device")
VERDICTS: tuple[str, ...] = ("regressed", "improved")
#: Properties renamed since a baseline may have been saved: old name -> new, so the old record still compares.
RENAMED: dict[str, str] = {"depth": "depth_sensitivity"}


def noise_floor(threshold: Any) -> float:
    """The smallest noise a value is credited with: RESOLUTION of |threshold|, or ABSOLUTE_FLOOR without one."""
    return RESOLUTION * abs(threshold) if is_number(threshold) and threshold != 0 else ABSOLUTE_FLOOR


def _noise(entry: dict[str, Any], floor: float) -> float:
    noise = entry.get("noise")
    return max(float(noise), floor) if is_number(noise) and math.isfinite(noise) else floor


def z_score(new: dict[str, Any], base: dict[str, Any], worse: str) -> float:
    """How many noise σ ``new``'s value moved in the worse direction from ``base``'s (negative: better)."""
    change = abs(new["value"]) - abs(base["value"]) if worse == "higher_abs" else new["value"] - base["value"]
    threshold = new.get("threshold")
    floor = noise_floor(threshold if is_number(threshold) else base.get("threshold"))
    return change / math.hypot(_noise(base, floor), _noise(new, floor))


def verdict(z: float) -> str | None:
    """"regressed", "improved" or None (within the seed noise) for a z-score."""
    if z > Z_FLAG:
        return "regressed"
    if z < -Z_FLAG:
        return "improved"
    return None


def make_baseline(report: dict[str, Any]) -> dict[str, Any]:
    """A baseline document from a report: per passing record with a numeric value, its value, noise and direction."""
    metrics = {
        record["name"]: {"test": record["test"], "property": record["property"], "value": record["value"],
                         "noise": record.get("noise"), "seed_values": record.get("seed_values"),
                         "threshold": record["threshold"], "worse": worse_of(record.get("worse"))}
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
                notes.append(f"{verdict_name} beyond {Z_FLAG:g}σ of seed noise against the baseline: {', '.join(names)}")
        return notes


def _current_name(record_name: str) -> str:
    """A baseline record's name (``property[family]``) under its property's current name."""
    prop, bracket, family = record_name.partition("[")
    return f"{RENAMED.get(prop, prop)}{bracket}{family}"


def compare(report: dict[str, Any], baseline: dict[str, Any]) -> Comparison:
    """Fill each comparable record's ``baseline`` (value, noise, delta, z) and, where its test passed, turn its status
    to regressed or improved.

    Any earlier comparison in ``report`` is undone first, so a saved report can be compared again.
    """
    for record in report["records"]:
        record["baseline"] = None
        if record["status"] in VERDICTS:
            record["status"] = "pass"
    comparison = Comparison(warning=mismatch(baseline, report["environment"]))
    if comparison.warning:
        return comparison
    metrics = {_current_name(name): entry for name, entry in baseline["metrics"].items()}
    for record in report["records"]:
        base = metrics.get(record["name"])
        if not isinstance(base, dict) or not is_number(base.get("value")) or not is_number(record["value"]):
            continue
        worse = worse_of(record.get("worse") or base.get("worse"))
        z = z_score(record, base, worse)
        record["baseline"] = {"value": base["value"], "noise": base.get("noise"), "delta": record["value"] - base["value"],
                              "z": z}
        found = verdict(z)
        if found and record["status"] == "pass":
            record["status"] = found
            (comparison.regressed if found == "regressed" else comparison.improved).append(record["name"])
    return comparison
