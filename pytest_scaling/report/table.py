"""The records as tables, one per family: shared by the terminal summary, the markdown and the HTML report.

A row is one record: what it measured, its value with the seed noise of that value, the threshold, the baseline's
value and the change in units of seed noise (z), and the status. The test's node id is left to the JSON and HTML
report, so a row fits a 120-column terminal.
"""

from __future__ import annotations

from typing import Any, Iterator

from tabulate import tabulate

from pytest_scaling.report.model import is_number

HEADERS: tuple[str, ...] = ("record", "value", "± noise", "threshold", "baseline", "z", "status")


def number(value: Any) -> str:
    """A number in 4 significant digits; anything else (null included) as "-" or its text."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def label(record: dict[str, Any]) -> str:
    """What a row measured: the record's name without its ``[family]`` suffix (the family heads its table)."""
    suffix = f"[{record['family']}]"
    name = record["name"]
    return name[: -len(suffix)] if record["family"] and name.endswith(suffix) and len(name) > len(suffix) else name


def row(record: dict[str, Any]) -> list[str]:
    """One record's cells, in HEADERS order."""
    base = record["baseline"] or {}
    z = f"{base['z']:+.1f}" if is_number(base.get("z")) else "-"
    return [label(record), number(record["value"]), number(record.get("noise")), number(record["threshold"]),
            number(base.get("value")) if base else "-", z, record["status"]]


def by_family(report: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The records grouped by family, families in the order they first appear ("-" for records without one)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in report["records"]:
        groups.setdefault(record["family"] or "-", []).append(record)
    yield from groups.items()


def table(records: list[dict[str, Any]], tablefmt: str) -> str:
    """``records`` as a tabulate table in ``tablefmt``."""
    return tabulate([row(record) for record in records], headers=HEADERS, tablefmt=tablefmt, disable_numparse=True)


def grouped(report: dict[str, Any], tablefmt: str, heading: str = "family {family} ({count} records)") -> str:
    """One table per family, each under ``heading`` (formatted with the family and its record count)."""
    parts = [f"{heading.format(family=family, count=len(records))}\n{table(records, tablefmt)}"
             for family, records in by_family(report)]
    return "\n\n".join(parts)


def duration(seconds: float) -> str:
    """``seconds`` as 42 s or 3m 20s."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s"
