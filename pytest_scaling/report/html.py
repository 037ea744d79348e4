"""The HTML report: one self-contained file, the records table and per record a matplotlib figure inlined as a PNG.

The figure is chosen by the record's property and the data it holds (see FIGURES); a record without
that data gets its value against its threshold and baseline, and one without a value gets none.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Any, Callable

from pytest_scaling.report.markdown import environment_line
from pytest_scaling.report.model import ci_bounds, is_number
from pytest_scaling.report.table import HEADERS, number, row, table

if TYPE_CHECKING:
    from matplotlib.axes import Axes

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}"
         "img{max-width:100%}section{margin:2em 0}")


def _mean(values: list[Any]) -> float:
    """Mean of the non-null numbers in ``values`` (NaN when there are none: a diverged or missing run)."""
    numbers = [value for value in values if is_number(value)]
    return sum(numbers) / len(numbers) if numbers else float("nan")


def _width_axis(axes: Axes) -> None:
    """A log2 width axis labelled with plain numbers (widths are powers of two)."""
    from matplotlib.ticker import ScalarFormatter

    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("width")


def _plot_lr_transfer(axes: Axes, record: dict[str, Any]) -> None:
    """Seed-mean final loss against LR, one line per width coloured by width: the muP transfer picture."""
    from matplotlib import colormaps

    data = record["data"]
    cmap = colormaps["viridis"]
    for i, (width, row) in enumerate(zip(data["widths"], data["losses"])):
        axes.plot(data["lrs"], [_mean(seeds) for seeds in row], "o-", color=cmap(i / max(len(data["widths"]) - 1, 1)),
                  label=f"width {width}")
    axes.set(xscale="log", xlabel="learning rate", ylabel="final loss", title="loss vs LR by width")
    axes.legend(fontsize="small")


def _plot_optimal_lr(axes: Axes, record: dict[str, Any]) -> None:
    """log2 of the optimal LR against width, with the recorded slope."""
    data = record["data"]
    axes.plot(data["widths"], data["mean_log2_lr"], "o-")
    _width_axis(axes)
    axes.set(ylabel="log2 optimal LR", title=f"η* vs width (slope {number(record['value'])})")


def _plot_coord_check(axes: Axes, record: dict[str, Any]) -> None:
    """Per layer, the slope of log activation size on log width at each step, within ± the threshold."""
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    data = record["data"]
    colours = colormaps["tab20"]
    for i, (layer, slopes) in enumerate(zip(data["layers"], data["slopes"])):
        axes.plot(range(1, len(slopes) + 1), slopes, "o-", color=colours(i % 20), label=layer)
    if is_number(record["threshold"]):
        axes.axhline(record["threshold"], color="red", linestyle="--", label="threshold")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(xlabel="step", ylabel="slope of log size on log width", title="coordinate check per layer")
    axes.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))


def _plot_width_losses(axes: Axes, record: dict[str, Any]) -> None:
    """Loss against width at one LR."""
    data = record["data"]
    axes.plot(data["widths"], data["losses"], "o-")
    _width_axis(axes)
    axes.set(ylabel="final loss", title="loss vs width at the tuned LR")


def _plot_value(axes: Axes, record: dict[str, Any]) -> None:
    """The value with its CI, against ± the threshold and the baseline's band."""
    bounds = ci_bounds(record["ci"])
    error = [[record["value"] - bounds[0]], [bounds[1] - record["value"]]] if bounds else None
    axes.errorbar([0], [record["value"]], yerr=error, fmt="o", capsize=6, label="value")
    if is_number(record["threshold"]):
        for sign in (1, -1):
            axes.axhline(sign * record["threshold"], color="red", linestyle="--")
    if record["baseline"]:
        base = record["baseline"]
        axes.axhspan(base["value"] - base["band"], base["value"] + base["band"], color="grey", alpha=0.3,
                     label="baseline")
    axes.set(xticks=[], ylabel=record["property"] or "value", title=record["name"])
    axes.legend(fontsize="small")


#: Per property, the panels drawn and the data keys each needs.
FIGURES: dict[str, tuple[tuple[Callable[[Axes, dict[str, Any]], None], tuple[str, ...]], ...]] = {
    "lr_transfer": ((_plot_lr_transfer, ("widths", "lrs", "losses")), (_plot_optimal_lr, ("widths", "mean_log2_lr"))),
    "coord_check": ((_plot_coord_check, ("layers", "slopes")),),
    "wider_is_better": ((_plot_width_losses, ("widths", "losses")),),
}


def _panels(record: dict[str, Any]) -> list[Callable[[Axes, dict[str, Any]], None]]:
    """The panels for a record: its property's whose data is present, else the value panel if it has a value."""
    panels = [plot for plot, keys in FIGURES.get(record["property"], ()) if all(key in record["data"] for key in keys)]
    if not panels and is_number(record["value"]):
        panels = [_plot_value]
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


def _section(record: dict[str, Any]) -> str:
    """One record's heading, its table cells in one line (status in bold), and its figure."""
    title = html.escape(f"{record['test']} — {record['name']}")
    cells = dict(zip(HEADERS[1:], row(record)[1:]))
    status = html.escape(cells.pop("status"))
    facts = " · ".join(html.escape(f"{header} {cell}") for header, cell in cells.items() if cell != "-")
    return f"<section><h2>{title}</h2><p><b>{status}</b> · {facts}</p>{_figure_html(record)}</section>"


def render(report: dict[str, Any]) -> str:
    """The report as a self-contained HTML page (no external URLs)."""
    body = [f"<h1>Scaling report</h1><p>{html.escape(environment_line(report['environment']))}</p>"]
    if report["records"]:
        body.append(table(report, "html"))
    body.extend(_section(record) for record in report["records"])
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Scaling report</title>'
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
