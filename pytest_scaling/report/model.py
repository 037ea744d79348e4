"""The versioned JSON schema shared by reports and baselines: building it from records, and loading it back checked.

A report is ``{"schema_version", "kind": "report", "environment", "records": [...]}``; each record
holds ``name``, ``test`` (the pytest node id, or the name when recorded outside a test), ``status``
(one of STATUSES), the standard fields ``property``, ``family``, ``value``, ``ci`` ([low, high] or null),
``threshold``, ``worse`` (which way the value is worse: "higher" or "higher_abs"), ``seed_values`` (the value
measured on each seed alone, or null) and ``noise`` (the value's standard error from those, or null),
``baseline`` (null, or ``{"value", "noise", "delta", "z"}``) and ``data``: every other recorded value (the plot
data), so a report can be re-rendered or compared later.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 2
STANDARD_FIELDS: tuple[str, ...] = ("property", "family", "value", "ci", "threshold", "worse", "seed_values", "noise")
#: pass / fail: the test's outcome; inconclusive: the test was skipped, or the record was made outside a test;
#: regressed / improved: a passing test's value moved beyond the seed noise of its baseline (see pytest_scaling.baseline);
#: n/a: the property does not apply to the family; skipped: the suite class leaves it out (the record says why).
STATUSES: tuple[str, ...] = ("pass", "fail", "regressed", "improved", "inconclusive", "n/a", "skipped")


class ReportError(Exception):
    """A report or baseline that cannot be read or written; its message is one line for the user."""


def git_commit(directory: Path) -> str | None:
    """The commit checked out in ``directory``, or None outside a git work tree (or without git)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def environment(tier: str, device: str, directory: Path, precision: str = "fp32",
                threads: str | None = None, plans: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Where the numbers came from: tier, device type, precision ("fp32" or "bf16 autocast"), torch version, the
    CPU threads trained with and why (``threads.ThreadPlan.describe``; null on a GPU), git commit (null if unknown),
    and each suite family's plan as stated before training (``cost.SuiteCost.to_dict``; null without suite tests)."""
    import torch

    return {"tier": tier, "device": device, "precision": precision, "torch": torch.__version__, "threads": threads,
            "commit": git_commit(directory), "plans": plans}


def make_record(raw: dict[str, Any], status: str) -> dict[str, Any]:
    """One report record from a ``ScalingSession`` record (``name``, ``test``, ``values``) and its test's status."""
    values = dict(raw["values"])
    if values.get("applicable") is False:
        status = "n/a"
    elif values.get("left_out") is True:
        status = "skipped"
    record: dict[str, Any] = {"name": raw["name"], "test": raw.get("test") or raw["name"], "status": status}
    record.update({key: values.pop(key, None) for key in STANDARD_FIELDS})
    record["baseline"] = None
    record["data"] = values
    return record


def make_report(records: Iterable[dict[str, Any]], env: dict[str, Any]) -> dict[str, Any]:
    """A report document from report records and the environment."""
    return {"schema_version": SCHEMA_VERSION, "kind": "report", "environment": env, "records": list(records)}


def is_number(value: Any) -> bool:
    """True for an int or float value (JSON has no other numbers; bools are not metrics)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def ci_bounds(ci: Any) -> tuple[float, float] | None:
    """A recorded CI as (low, high), or None when it is missing or not two numbers."""
    if isinstance(ci, list) and len(ci) == 2 and all(is_number(bound) for bound in ci):
        return ci[0], ci[1]
    return None


def dump_json(document: dict[str, Any]) -> str:
    """A report or baseline as indented JSON text (reviewable in a diff)."""
    return json.dumps(document, indent=2) + "\n"


def write_text(path: Path, text: str) -> None:
    """Write a report or baseline file, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def load(path: str | Path, kind: str) -> dict[str, Any]:
    """Read a ``kind`` ("report" or "baseline") document, raising ReportError with one line if it is unusable."""
    what = f"scaling {kind} {path}"
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"{what}: cannot read it: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{what}: not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(document, dict) or document.get("kind") != kind:
        raise ReportError(f"{what}: not a {kind} file (no \"kind\": \"{kind}\")")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise ReportError(f"{what}: schema version {document.get('schema_version')!r}, this pytest-scaling reads "
                          f"{SCHEMA_VERSION}; save it again")
    key = "records" if kind == "report" else "metrics"
    if not isinstance(document.get(key), (list if kind == "report" else dict)) or not isinstance(
            document.get("environment"), dict):
        raise ReportError(f"{what}: malformed (\"{key}\" or \"environment\" missing or of the wrong type)")
    return document
