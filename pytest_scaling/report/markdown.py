"""The markdown report: GitHub tables of the records and of each family's statuses, for a PR comment or step summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tabulate import tabulate

from pytest_scaling.diagnosis import Diagnosis
from pytest_scaling.report.model import STATUSES
from pytest_scaling.report.table import duration, grouped


def environment_line(env: dict[str, Any]) -> str:
    """The environment in one line: tier, device, precision and threads (where the report has them), torch and the
    short commit."""
    commit = (env.get("commit") or "unknown")[:12]
    precision = f" · precision `{env['precision']}`" if env.get("precision") else ""
    threads = f" · threads `{env['threads']}`" if env.get("threads") else ""
    return (f"tier `{env.get('tier')}` · device `{env.get('device')}`{precision}{threads} · torch `{env.get('torch')}` · "
            f"commit `{commit}`")


def plan_lines(env: dict[str, Any]) -> list[str]:
    """Each suite family's plan as stated before training, one line each: its runs and predicted time against the
    tier's budget (the per-property table is in the JSON report's ``environment.plans``)."""
    return [f"plan for {plan['family']} ({plan['suite']}): {plan['runs']} runs, predicted {duration(plan['seconds'])} "
            f"of the {plan['tier']} tier's {duration(plan['budget_s'])}" for plan in env.get("plans") or ()]


def _families(report: dict[str, Any]) -> str:
    """One row per family: how many of its records have each status."""
    counts: dict[str, Counter[str]] = {}
    for record in report["records"]:
        counts.setdefault(record["family"] or "-", Counter())[record["status"]] += 1
    rows = [[family, *(tally[status] for status in STATUSES)] for family, tally in counts.items()]
    return tabulate(rows, headers=("family", *STATUSES), tablefmt="github")


def diagnoses(report: dict[str, Any]) -> list[tuple[dict[str, Any], Diagnosis]]:
    """The records that carry a diagnosis (``--scaling-diagnose``), each with it."""
    return [(record, Diagnosis.from_dict(record["data"]["diagnosis"])) for record in report["records"]
            if isinstance(record.get("data"), dict) and isinstance(record["data"].get("diagnosis"), dict)]


def render(report: dict[str, Any]) -> str:
    """The report as markdown: heading, environment, status counts, the per-family status table, each family's
    records, then the diagnosis of each failing property that was diagnosed."""
    counts = Counter(record["status"] for record in report["records"])
    tally = ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "no records"
    plans = plan_lines(report["environment"])
    parts = ["## Scaling report", "", environment_line(report["environment"]), "", *(f"- {line}" for line in plans),
             *([""] if plans else []), f"**{tally}**", ""]
    if report["records"]:
        parts += [_families(report), "", grouped(report, "github", heading="### {family}"), ""]
    for record, diagnosis in diagnoses(report):
        parts += [f"### Diagnosis of {record['name']}", "", diagnosis.table("github"), "",
                  f"**{diagnosis.conclusion()}**", ""]
    return "\n".join(parts)
