"""The HTML report: one self-contained file, the records table and per record a matplotlib figure inlined as a PNG.

The figure is the record's property's (``Property.figure``, drawn where the record holds the data its panels need);
a record without that data gets its value against its threshold and baseline, and one without a value gets none.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import TYPE_CHECKING, Any

from pytest_scaling.diagnosis import Diagnosis
from pytest_scaling.report import drawing
from pytest_scaling.report.markdown import environment_line, plan_lines
from pytest_scaling.report.model import ci_bounds, is_number
from pytest_scaling.report.table import HEADERS, by_family, row, table

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from pytest_scaling.property import Panel

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;font-size:.9em;display:block;overflow-x:auto;max-width:100%}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}"
         "img{max-width:100%}section{margin:2em 0}")


def _plot_value(axes: Axes, record: dict[str, Any]) -> None:
    """The value with its CI, against ± the threshold and the baseline's band."""
    bounds = ci_bounds(record["ci"])
    error = [[record["value"] - bounds[0]], [bounds[1] - record["value"]]] if bounds else None
    axes.errorbar([0], [record["value"]], yerr=error, fmt="o", capsize=6, label="value")
    if is_number(record["threshold"]):
        for sign in (1, -1):
            axes.axhline(sign * record["threshold"], color="red", linestyle="--")
    drawing.baseline_span(axes, record)
    axes.set(xticks=[], ylabel=record["property"] or "value", title=record["name"])
    axes.legend(fontsize="small")


def _plot_diagnosis(axes: Axes, record: dict[str, Any]) -> None:
    """The property's value as written and with each tried intervention (|value| where either sign is worse), against
    its threshold: green passed, red failed, grey no verdict."""
    diagnosis = Diagnosis.from_dict(record["data"]["diagnosis"])
    trials = [diagnosis.as_written, *diagnosis.trials]
    absolute = diagnosis.worse == "higher_abs"
    values = drawing.floats(abs(t.value) if absolute and t.value is not None else t.value for t in trials)
    colours = ["tab:green" if t.passed else "tab:red" if t.passed is False else "grey" for t in trials]
    positions = list(range(len(trials)))[::-1]
    axes.barh(positions, [0.0 if math.isnan(v) else v for v in values], color=colours)
    axes.set_yticks(positions, [t.summary for t in trials], fontsize="small")
    if is_number(diagnosis.threshold):
        axes.axvline(abs(diagnosis.threshold), color="red", linestyle="--", label="threshold")
        axes.legend(fontsize="small")
    axes.set(xlabel=f"{'|' + diagnosis.property + '|' if absolute else diagnosis.property}",
             title=f"diagnosis: {diagnosis.property} per intervention")


def property_figure(name: str | None) -> tuple[tuple[Panel, tuple[str, ...]], ...]:
    """The panels of the property named ``name`` and the record keys each needs; none for a record of no property."""
    from pytest_scaling.properties import PROPERTIES  # the registry imports torch: only when a figure is drawn

    return PROPERTIES[name].figure if name in PROPERTIES else ()


def _panels(record: dict[str, Any]) -> list[Panel]:
    """The panels for a record: its property's whose data is present, else the value panel if it has a value; and
    the diagnosis panel where the record carries a diagnosis."""
    panels = [plot for plot, keys in property_figure(record["property"]) if all(key in record["data"] for key in keys)]
    if not panels and is_number(record["value"]):
        panels = [_plot_value]
    if isinstance(record["data"].get("diagnosis"), dict):
        panels.append(_plot_diagnosis)
    return panels


def figure(record: dict[str, Any]) -> str | None:
    """The record's figure as a base64 PNG data URI, or None when there is nothing to draw."""
    panels = _panels(record)
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(panels), 3.6), layout="constrained")
    for plot, axes in zip(panels, fig.subplots(1, len(panels), squeeze=False)[0]):
        plot(axes, record)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure_html(record: dict[str, Any]) -> str:
    """The record's figure as an <img>, or a note saying why there is none (recorded data a figure cannot use
    is noted, not fatal: the rest of the report still renders)."""
    try:
        image = figure(record)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        return f"<p>(no figure: the recorded data does not fit one: {html.escape(str(exc))})</p>"
    return f'<img alt="{html.escape(record["name"])}" src="{image}">' if image else "<p>(no figure data recorded)</p>"


def _diagnosis_html(record: dict[str, Any]) -> str:
    """The record's diagnosis (table and conclusion), or nothing when it carries none."""
    data = record["data"].get("diagnosis")
    if not isinstance(data, dict):
        return ""
    diagnosis = Diagnosis.from_dict(data)
    return f"<h3>Diagnosis</h3>{diagnosis.table('html')}<p><b>{html.escape(diagnosis.conclusion())}</b></p>"


def _section(record: dict[str, Any]) -> str:
    """One record's heading, its table cells in one line (status in bold), its diagnosis if any, and its figure."""
    title = html.escape(f"{record['test']} — {record['name']}")
    cells = dict(zip(HEADERS[1:], row(record)[1:]))
    status = html.escape(cells.pop("status"))
    facts = " · ".join(html.escape(f"{header} {cell}") for header, cell in cells.items() if cell != "-")
    return (f"<section><h2>{title}</h2><p><b>{status}</b> · {facts}</p>{_diagnosis_html(record)}"
            f"{_figure_html(record)}</section>")


def render(report: dict[str, Any]) -> str:
    """The report as a self-contained HTML page (no external URLs)."""
    body = [f"<h1>Scaling report</h1><p>{html.escape(environment_line(report['environment']))}</p>",
            *(f"<p>{html.escape(line)}</p>" for line in plan_lines(report["environment"]))]
    if report["records"]:
        body.extend(f"<h3>family {html.escape(family)} ({len(records)} records)</h3>{table(records, 'html')}"
                    for family, records in by_family(report))
    body.extend(_section(record) for record in report["records"])
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Scaling report</title>'
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
