"""The markdown report: a GitHub table of the records that fits a PR comment or a step summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pytest_scaling.report.table import table


def environment_line(env: dict[str, Any]) -> str:
    """The environment in one line: tier, device, torch and the short commit."""
    commit = (env.get("commit") or "unknown")[:12]
    return (f"tier `{env.get('tier')}` · device `{env.get('device')}` · torch `{env.get('torch')}` · "
            f"commit `{commit}`")


def render(report: dict[str, Any]) -> str:
    """The report as markdown: heading, environment, status counts, then the records table."""
    counts = Counter(record["status"] for record in report["records"])
    tally = ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "no records"
    parts = ["## Scaling report", "", environment_line(report["environment"]), "", f"**{tally}**", ""]
    if report["records"]:
        parts += [table(report, "github"), ""]
    return "\n".join(parts)
