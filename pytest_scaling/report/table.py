"""The one-row-per-record table shared by the markdown report and the terminal summary."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from pytest_scaling.report.model import ci_bounds

HEADERS: tuple[str, ...] = ("test", "property", "value", "CI", "threshold", "baseline", "Δ", "status")


def number(value: Any) -> str:
    """A number in 4 significant digits; anything else (null included) as "-" or its text."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _ci(ci: Any) -> str:
    """A CI as "[low, high]", or "-"."""
    bounds = ci_bounds(ci)
    return f"[{number(bounds[0])}, {number(bounds[1])}]" if bounds else "-"


def row(record: dict[str, Any]) -> list[str]:
    """One record's cells, in HEADERS order."""
    base = record["baseline"] or {}
    baseline = f"{number(base['value'])} ± {number(base['band'])}" if base else "-"
    delta = f"{base['delta']:+.3g}" if base else "-"
    return [record["test"], record["property"] or "-", number(record["value"]), _ci(record["ci"]),
            number(record["threshold"]), baseline, delta, record["status"]]


def table(report: dict[str, Any], tablefmt: str) -> str:
    """The records of ``report`` as a tabulate table in ``tablefmt``."""
    return tabulate([row(record) for record in report["records"]], headers=HEADERS, tablefmt=tablefmt,
                    disable_numparse=True)
