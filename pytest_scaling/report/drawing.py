"""Drawing helpers shared by the properties' figure panels (each property module draws its own record): colours in
order, legends, a threshold line, the baseline's band, width and size axes, loss-vs-LR curves, power-law points.

Each takes matplotlib axes; matplotlib itself is imported where a figure is drawn (``report.html``), and these
import no torch."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from pytest_scaling.baseline import Z_FLAG
from pytest_scaling.report.model import is_number
from pytest_scaling.report.table import number

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def seed_mean(values: list[Any]) -> float:
    """Mean of the non-null numbers in ``values`` (NaN when there are none: a diverged or missing run)."""
    numbers = [value for value in values if is_number(value)]
    return sum(numbers) / len(numbers) if numbers else float("nan")


def floats(values: Iterable[Any]) -> list[float]:
    """Values as floats, anything not a finite number (None: diverged or missing) as NaN, which plots as a gap."""
    return [float(value) if is_number(value) and math.isfinite(value) else math.nan for value in values]


def colours(count: int, name: str = "viridis") -> list[Any]:
    """``count`` colours spread over a sequential colormap, so an ordered series (widths, LRs) reads in order;
    the map's last fifth (pale yellow in viridis and plasma) is left out as too faint on white."""
    from matplotlib import colormaps

    cmap = colormaps[name]
    return [cmap(0.8 * i / max(count - 1, 1)) for i in range(count)]


def legend(axes: Axes) -> None:
    """A small legend inside the axes, or outside on the right when it has too many entries to sit on the lines."""
    if len(axes.get_legend_handles_labels()[0]) > 6:
        axes.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        axes.legend(fontsize="small")


def mark_diverged(axes: Axes, xs: list[float], colour: Any) -> None:
    """Crosses on the top edge at ``xs``: a diverged run has no value to plot, but it must not just vanish."""
    if xs:
        axes.plot(xs, [1.0] * len(xs), "x", color=colour, transform=axes.get_xaxis_transform(), clip_on=False)


def threshold_line(axes: Axes, threshold: Any, label: str = "threshold") -> None:
    """The bound a value must stay under, as a red dashed line (none when it is not a number)."""
    if is_number(threshold):
        axes.axhline(threshold, color="red", linestyle="--", label=label)


def flag_band(base: dict[str, Any]) -> float:
    """Half-width of the band within which a change of the baseline's value is seed noise (Z_FLAG of its σ)."""
    return Z_FLAG * base["noise"] if is_number(base.get("noise")) else 0.0


def baseline_span(axes: Axes, record: dict[str, Any], label: str = "baseline") -> None:
    """The baseline's value ± Z_FLAG σ of its seed noise as a grey span, where the record was compared with one."""
    if record["baseline"]:
        base = record["baseline"]
        band = flag_band(base)
        axes.axhspan(base["value"] - band, base["value"] + band, color="grey", alpha=0.3, label=label)


def baseline_note(record: dict[str, Any]) -> str:
    """The baseline's value and the change's z for a title, where the plotted quantity is not the record's value."""
    base = record["baseline"]
    return f"\nbaseline {number(base['value'])}, z {base['z']:+.1f}" if base else ""


def width_axis(axes: Axes) -> None:
    """A log2 width axis labelled with plain numbers (widths are powers of two)."""
    from matplotlib.ticker import ScalarFormatter

    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("width")


def loss_curves(axes: Axes, widths: list[Any], lrs: list[float], rows: list[list[Any]],
                      title: str = "loss vs LR by width", size_name: str = "width") -> None:
    """Final loss against LR, one line per width (or other size) coloured in order; a diverged point (None) is a gap
    in its line and a cross on the top edge."""
    any_diverged = False
    for width, width_losses, colour in zip(widths, rows, colours(len(widths))):
        losses = floats(width_losses)
        axes.plot(lrs, losses, "o-", color=colour, label=f"{size_name} {width}")
        diverged = [lr for lr, loss in zip(lrs, losses) if math.isnan(loss)]
        mark_diverged(axes, diverged, colour)
        any_diverged = any_diverged or bool(diverged)
    if any_diverged:
        axes.plot([], [], "x", color="grey", label="diverged")
    axes.set(xscale="log", xlabel="learning rate", ylabel="final loss", title=title)
    legend(axes)


def lr_curves(axes: Axes, record: dict[str, Any]) -> None:
    """Seed-mean final loss against LR, one line per width coloured by width: the muP transfer picture."""
    data = record["data"]
    loss_curves(axes, data["widths"], data["lrs"], [[seed_mean(seeds) for seeds in row] for row in data["losses"]])


def power_law_is_fitted(fit: dict[str, Any]) -> bool:
    """Whether a recorded fit has finite E, A and α (a failed fit records NaN or null)."""
    return all(is_number(fit.get(key)) and math.isfinite(fit[key]) for key in ("E", "A", "alpha"))


def power_law_curve(axes: Axes, fit: dict[str, Any], low: float, high: float, **style: Any) -> None:
    """The fitted E + A·N^-α from N = ``low`` to ``high``."""
    sizes = np.geomspace(low, high, 100)
    axes.plot(sizes, fit["E"] + fit["A"] * sizes ** -fit["alpha"], **style)


def size_points(axes: Axes, sizes: list[float], losses: list[Any], std: list[Any], **style: Any) -> None:
    """Seed-mean losses against size with seed-std error bars (none where the std is missing)."""
    error = [0.0 if math.isnan(value) else value for value in floats(std)]
    axes.errorbar(sizes, floats(losses), yerr=error, fmt="o", capsize=3, **style)


def size_axes(axes: Axes, fit: dict[str, Any], title: str) -> None:
    """Log-log loss against size, with the fit's irreducible loss E as a dashed line when it is positive."""
    from matplotlib.ticker import FormatStrFormatter

    if power_law_is_fitted(fit) and fit["E"] > 0:
        axes.axhline(fit["E"], color="grey", linestyle="--", label=f"E = {number(float(fit['E']))}")
    axes.set(xscale="log", yscale="log", xlabel="parameters N (non-input)", ylabel="final loss", title=title)
    for formatter in (axes.yaxis.set_major_formatter, axes.yaxis.set_minor_formatter):
        formatter(FormatStrFormatter("%g"))
    legend(axes)


def sensitivity_by_width(axes: Axes, record: dict[str, Any], curves: dict[str, dict[str, Any]]) -> None:
    """LR sensitivity S against width, one line per labelled curve, under the record's threshold and baseline."""
    for label, curve in curves.items():
        axes.plot(curve["widths"], floats(curve["values"]), "o-", label=label)
    threshold_line(axes, record["threshold"])
    baseline_span(axes, record, "baseline (max S)")
    width_axis(axes)
    axes.set(ylabel="LR sensitivity S", title="LR sensitivity vs width")
    legend(axes)


def named_lines(axes: Axes, xs: list[Any], series: dict[str, list[Any]], named: Iterable[str]) -> None:
    """One line per series against ``xs``, coloured in order, only the ``named`` ones in the legend (a Transformer has
    dozens of layers)."""
    named = set(named)
    for (name, values), colour in zip(series.items(), colours(len(series))):
        axes.plot(xs, floats(values), "o-", color=colour, markersize=3, label=name if name in named else None)


#: How many of the lines a per-layer or per-parameter panel names in its legend: a Transformer has dozens.
LAYERS_NAMED = 5

