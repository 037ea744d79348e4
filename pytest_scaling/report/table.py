"""The one-row-per-record table shared by the markdown report and the terminal summary."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

HEADERS: tuple[str, ...] = ("test", "property", "value", "CI", "threshold", "baseline", "Δ", "status")


def _number(value: Any) -> str:
    """A number in 4 significant digits; anything else (null included) as "-" or its text."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _ci(ci: Any) -> str:
    """A CI as "[low, high]", or "-"."""
    return f"[{_number(ci[0])}, {_number(ci[1])}]" if isinstance(ci, list) and len(ci) == 2 else "-"


def row(record: dict[str, Any]) -> list[str]:
    """One record's cells, in HEADERS order."""
    base = record["baseline"] or {}
    baseline = f"{_number(base['value'])} ± {_number(base['band'])}" if base else "-"
    delta = f"{base['delta']:+.3g}" if base else "-"
    return [record["test"], record["property"] or "-", _number(record["value"]), _ci(record["ci"]),
            _number(record["threshold"]), baseline, delta, record["status"]]


def table(report: dict[str, Any], tablefmt: str) -> str:
    """The records of ``report`` as a tabulate table in ``tablefmt``."""
    return tabulate([row(record) for record in report["records"]], headers=HEADERS, tablefmt=tablefmt,
                    disable_numparse=True)
