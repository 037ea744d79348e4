"""The HTML report: one self-contained file, the records table and per record a matplotlib figure inlined as a PNG.

The figure is chosen by the record's property and the data it holds (see FIGURES); a record without
that data gets its value against its threshold and baseline, and one without a value gets none.
"""

from __future__ import annotations

import base64
import html
import io
import math
from itertools import cycle
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from pytest_scaling.diagnosis import Diagnosis
from pytest_scaling.report.markdown import environment_line
from pytest_scaling.report.model import ci_bounds, is_number
from pytest_scaling.baseline import Z_FLAG
from pytest_scaling.report.table import HEADERS, by_family, number, row, table

if TYPE_CHECKING:
    from matplotlib.axes import Axes

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;font-size:.9em;display:block;overflow-x:auto;max-width:100%}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}"
         "img{max-width:100%}section{margin:2em 0}")


#: A figure panel: draws one record's data on the axes it is given.
Panel = Callable[["Axes", dict[str, Any]], None]


def _mean(values: list[Any]) -> float:
    """Mean of the non-null numbers in ``values`` (NaN when there are none: a diverged or missing run)."""
    numbers = [value for value in values if is_number(value)]
    return sum(numbers) / len(numbers) if numbers else float("nan")


def _floats(values: Iterable[Any]) -> list[float]:
    """Values as floats, anything not a finite number (None: diverged or missing) as NaN, which plots as a gap."""
    return [float(value) if is_number(value) and math.isfinite(value) else math.nan for value in values]


def _colours(count: int, name: str = "viridis") -> list[Any]:
    """``count`` colours spread over a sequential colormap, so an ordered series (widths, LRs) reads in order;
    the map's last fifth (pale yellow in viridis and plasma) is left out as too faint on white."""
    from matplotlib import colormaps

    cmap = colormaps[name]
    return [cmap(0.8 * i / max(count - 1, 1)) for i in range(count)]


def _legend(axes: Axes) -> None:
    """A small legend inside the axes, or outside on the right when it has too many entries to sit on the lines."""
    if len(axes.get_legend_handles_labels()[0]) > 6:
        axes.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        axes.legend(fontsize="small")


def _mark_diverged(axes: Axes, xs: list[float], colour: Any) -> None:
    """Crosses on the top edge at ``xs``: a diverged run has no value to plot, but it must not just vanish."""
    if xs:
        axes.plot(xs, [1.0] * len(xs), "x", color=colour, transform=axes.get_xaxis_transform(), clip_on=False)


def _threshold_line(axes: Axes, threshold: Any, label: str = "threshold") -> None:
    """The bound a value must stay under, as a red dashed line (none when it is not a number)."""
    if is_number(threshold):
        axes.axhline(threshold, color="red", linestyle="--", label=label)


def _flag_band(base: dict[str, Any]) -> float:
    """Half-width of the band within which a change of the baseline's value is seed noise (Z_FLAG of its σ)."""
    return Z_FLAG * base["noise"] if is_number(base.get("noise")) else 0.0


def _baseline_span(axes: Axes, record: dict[str, Any], label: str = "baseline") -> None:
    """The baseline's value ± Z_FLAG σ of its seed noise as a grey span, where the record was compared with one."""
    if record["baseline"]:
        base = record["baseline"]
        band = _flag_band(base)
        axes.axhspan(base["value"] - band, base["value"] + band, color="grey", alpha=0.3, label=label)


def _baseline_note(record: dict[str, Any]) -> str:
    """The baseline's value and the change's z for a title, where the plotted quantity is not the record's value."""
    base = record["baseline"]
    return f"\nbaseline {number(base['value'])}, z {base['z']:+.1f}" if base else ""


def _width_axis(axes: Axes) -> None:
    """A log2 width axis labelled with plain numbers (widths are powers of two)."""
    from matplotlib.ticker import ScalarFormatter

    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("width")


def _plot_loss_curves(axes: Axes, widths: list[Any], lrs: list[float], rows: list[list[Any]],
                      title: str = "loss vs LR by width", size_name: str = "width") -> None:
    """Final loss against LR, one line per width (or other size) coloured in order; a diverged point (None) is a gap
    in its line and a cross on the top edge."""
    any_diverged = False
    for width, width_losses, colour in zip(widths, rows, _colours(len(widths))):
        losses = _floats(width_losses)
        axes.plot(lrs, losses, "o-", color=colour, label=f"{size_name} {width}")
        diverged = [lr for lr, loss in zip(lrs, losses) if math.isnan(loss)]
        _mark_diverged(axes, diverged, colour)
        any_diverged = any_diverged or bool(diverged)
    if any_diverged:
        axes.plot([], [], "x", color="grey", label="diverged")
    axes.set(xscale="log", xlabel="learning rate", ylabel="final loss", title=title)
    _legend(axes)


def _plot_lr_transfer(axes: Axes, record: dict[str, Any]) -> None:
    """Seed-mean final loss against LR, one line per width coloured by width: the muP transfer picture."""
    data = record["data"]
    _plot_loss_curves(axes, data["widths"], data["lrs"], [[_mean(seeds) for seeds in row] for row in data["losses"]])


def _plot_optimal_lr(axes: Axes, record: dict[str, Any]) -> None:
    """log2 of the optimal LR against width, with the recorded slope."""
    data = record["data"]
    axes.plot(data["widths"], data["mean_log2_lr"], "o-")
    _width_axis(axes)
    axes.set(ylabel="log2 optimal LR", title=f"η* vs width (slope {number(record['value'])})")


def _plot_coord_check(axes: Axes, record: dict[str, Any]) -> None:
    """Per layer, the slope of log activation size on log width at each step, within ± the threshold; a dotted line
    ends the parametrization verdict's steps (the training dynamics' follow)."""
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    data = record["data"]
    colours = colormaps["tab20"]
    steps = data.get("steps") or list(range(1, len(data["slopes"][0]) + 1))  # records before verdicts began at step 1
    for i, (layer, slopes) in enumerate(zip(data["layers"], data["slopes"])):
        axes.plot(steps, slopes, "o-", color=colours(i % 20), label=layer)
    _threshold_line(axes, record["threshold"])
    for verdict in data.get("verdicts", [])[:-1]:
        axes.axvline(verdict["steps"][-1] + 0.5, color="grey", linestyle=":", label=f"end of {verdict['name']}")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(xlabel="step", ylabel="slope of log size on log width", title="coordinate check per layer")
    axes.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))


def _plot_width_losses(axes: Axes, record: dict[str, Any]) -> None:
    """Loss against width at one LR."""
    data = record["data"]
    axes.plot(data["widths"], data["losses"], "o-")
    _width_axis(axes)
    axes.set(ylabel="final loss", title="loss vs width at the tuned LR")


def _power_law_is_fitted(fit: dict[str, Any]) -> bool:
    """Whether a recorded fit has finite E, A and α (a failed fit records NaN or null)."""
    return all(is_number(fit.get(key)) and math.isfinite(fit[key]) for key in ("E", "A", "alpha"))


def _plot_power_law_curve(axes: Axes, fit: dict[str, Any], low: float, high: float, **style: Any) -> None:
    """The fitted E + A·N^-α from N = ``low`` to ``high``."""
    sizes = np.geomspace(low, high, 100)
    axes.plot(sizes, fit["E"] + fit["A"] * sizes ** -fit["alpha"], **style)


def _plot_size_points(axes: Axes, sizes: list[float], losses: list[Any], std: list[Any], **style: Any) -> None:
    """Seed-mean losses against size with seed-std error bars (none where the std is missing)."""
    error = [0.0 if math.isnan(value) else value for value in _floats(std)]
    axes.errorbar(sizes, _floats(losses), yerr=error, fmt="o", capsize=3, **style)


def _size_axes(axes: Axes, fit: dict[str, Any], title: str) -> None:
    """Log-log loss against size, with the fit's irreducible loss E as a dashed line when it is positive."""
    from matplotlib.ticker import FormatStrFormatter

    if _power_law_is_fitted(fit) and fit["E"] > 0:
        axes.axhline(fit["E"], color="grey", linestyle="--", label=f"E = {number(float(fit['E']))}")
    axes.set(xscale="log", yscale="log", xlabel="parameters N (non-input)", ylabel="final loss", title=title)
    for formatter in (axes.yaxis.set_major_formatter, axes.yaxis.set_minor_formatter):
        formatter(FormatStrFormatter("%g"))
    _legend(axes)


def _plot_power_law(axes: Axes, record: dict[str, Any]) -> None:
    """Best-LR loss against size with the fitted power law E + A·N^-α over the swept sizes."""
    data = record["data"]
    fit = data["fit"]
    _plot_size_points(axes, data["sizes"], data["losses"], data["seed_std"], color="C0", label="seed mean ± std")
    if _power_law_is_fitted(fit):
        _plot_power_law_curve(axes, fit, min(data["sizes"]), max(data["sizes"]), color="C0", label="E + A·N^-α")
    title = f"loss vs size: α = {number(fit.get('alpha'))}, R² = {number(fit.get('r2'))}{_baseline_note(record)}"
    _size_axes(axes, fit, title)


def _band_error(centres: list[float], low: list[Any], high: list[Any]) -> list[list[float]]:
    """Error-bar lengths below and above each centre for its [low, high] band (0 where a bound is missing)."""
    return [[0.0 if math.isnan(bound) else max(sign * (centre - bound), 0.0) for centre, bound in zip(centres, bounds)]
            for sign, bounds in ((1, _floats(low)), (-1, _floats(high)))]


def _plot_extrapolation(axes: Axes, record: dict[str, Any]) -> None:
    """The power law fitted without the largest sizes, extended to them: held-out losses (hollow) against the
    prediction and its band, each labelled with its relative error (and z-score from seed noise)."""
    data = record["data"]
    fit, sizes, losses, std = data["fit"], data["sizes"], data["losses"], data["seed_std"]
    cut = len(sizes) - data["holdout"]
    _plot_size_points(axes, sizes[:cut], losses[:cut], std[:cut], color="C0", label="fitted")
    _plot_size_points(axes, sizes[cut:], losses[cut:], std[cut:], color="C3", mfc="none", label="held out")
    if _power_law_is_fitted(fit):
        _plot_power_law_curve(axes, fit, min(sizes[:cut]), max(sizes[:cut]), color="C0", label="fit")
        _plot_power_law_curve(axes, fit, max(sizes[:cut]), 1.5 * max(sizes), color="C0", linestyle=":",
                              label="extrapolated")
    predicted = _floats(data["predicted"])
    band = data["band"]
    axes.errorbar(sizes[cut:], predicted, yerr=_band_error(predicted, *band) if band else None, fmt="_", markersize=12,
                  capsize=6, color="C1", label="predicted ± band" if band else "predicted")
    z_scores = _floats(data["z_scores"] or [math.nan] * len(predicted))
    for size, loss, guess, z in zip(sizes[cut:], _floats(losses[cut:]), predicted, z_scores):
        if not (math.isnan(loss) or math.isnan(guess)):
            note = f"{(guess - loss) / loss:+.2%}" + ("" if math.isnan(z) else f"\nz = {z:.1f}")
            axes.annotate(note, (size, loss), xytext=(-6, -4), textcoords="offset points", fontsize="x-small",
                          ha="right", va="top")
    title = (f"fit on {cut} sizes, {data['holdout']} held out: max |rel. error| "
             f"{number(record['value'])}{_baseline_note(record)}")
    _size_axes(axes, fit, title)


def _plot_sensitivity(axes: Axes, record: dict[str, Any], curves: dict[str, dict[str, Any]]) -> None:
    """LR sensitivity S against width, one line per labelled curve, under the record's threshold and baseline."""
    for label, curve in curves.items():
        axes.plot(curve["widths"], _floats(curve["values"]), "o-", label=label)
    _threshold_line(axes, record["threshold"])
    _baseline_span(axes, record, "baseline (max S)")
    _width_axis(axes)
    axes.set(ylabel="LR sensitivity S", title="LR sensitivity vs width")
    _legend(axes)


def _plot_lr_sensitivity(axes: Axes, record: dict[str, Any]) -> None:
    """S per width against the bound it must stay under."""
    _plot_sensitivity(axes, record, {"S": record["data"]})


def _plot_sensitivity_losses(axes: Axes, record: dict[str, Any]) -> None:
    """The seed-mean loss-vs-LR curves S is computed from."""
    data = record["data"]
    _plot_loss_curves(axes, data["widths"], data["lrs"], data["losses"])


QK_VARIANTS: dict[str, str] = {"with_qk_layernorm": "with qk-layernorm", "without_qk_layernorm": "without qk-layernorm"}


def _plot_qk_sensitivity(axes: Axes, record: dict[str, Any]) -> None:
    """S against width with and without qk-layernorm on one axes: the first must stay below the second."""
    _plot_sensitivity(axes, record, {label: record["data"][key] for key, label in QK_VARIANTS.items()})


def _qk_losses_panel(key: str) -> Panel:
    """The loss-vs-LR panel of one qk-layernorm variant, on the loss range of both so their panels compare."""

    def plot(axes: Axes, record: dict[str, Any]) -> None:
        variant = record["data"][key]
        _plot_loss_curves(axes, variant["widths"], variant["lrs"], variant["losses"],
                          title=f"loss vs LR {QK_VARIANTS[key]}")
        finite = [loss for name in QK_VARIANTS for row in record["data"][name]["losses"] for loss in _floats(row)
                  if not math.isnan(loss)]
        if finite:
            margin = 0.05 * (max(finite) - min(finite)) or 0.05
            axes.set_ylim(min(finite) - margin, max(finite) + margin)

    return plot


#: Per logit series recorded by no_logit_divergence: the key of its cap in the record's ``caps``, its axis label and y scale.
LOGIT_SERIES: dict[str, tuple[str, str, str]] = {
    "attention logit": ("attention_logit_cap", "max attention logit (over layers)", "log"),
    "|log Z|": ("log_z_cap", "|mean log Z| (output normaliser)", "linear"),
}
#: The key of the drift bound in the record's ``caps``, for the series that have one.
LOGIT_DRIFT: dict[str, str] = {"|log Z|": "max_log_z_drift"}


def _logit_panel(series: str, legend: bool) -> Panel:
    """One logit series against probe step, a line per run coloured by LR and marked by width, with its cap;
    a run that diverged ends where its values stop, with a cross on the top edge there."""

    def plot(axes: Axes, record: dict[str, Any]) -> None:
        from matplotlib.lines import Line2D

        data = record["data"]
        if series not in data["series"]:  # e.g. a model without attention: that part does not apply
            axes.text(0.5, 0.5, data.get("attention", f"no {series} recorded"), ha="center", va="center", wrap=True,
                      transform=axes.transAxes, fontsize="small")
            axes.set(xticks=[], yticks=[], title=f"{series} vs step")
            return
        lrs = sorted({run["lr"] for run in data["runs"]})
        widths = sorted({run["width"] for run in data["runs"]})
        colours = dict(zip(lrs, _colours(len(lrs), "plasma")))
        markers = dict(zip(widths, cycle("os^Dv")))
        for run, run_values in zip(data["runs"], data["series"][series]):
            values = _floats(run_values)
            colour = colours[run["lr"]]
            axes.plot(data["steps"], values, "-", marker=markers[run["width"]], markersize=3, color=colour, alpha=0.8)
            _mark_diverged(axes, [step for step, value in zip(data["steps"], values) if math.isnan(value)][:1], colour)
        cap, label, scale = LOGIT_SERIES[series]
        caps = record["data"].get("caps", {})
        _threshold_line(axes, caps.get(cap), "cap")
        drift = caps.get(LOGIT_DRIFT.get(series, ""))
        starts = [abs(v) for row in data["series"][series] for v in _floats(row)[:1] if math.isfinite(v)]
        if is_number(drift) and starts and data["steps"]:  # bounds the second half, above the runs' start
            steps = data["steps"]
            axes.hlines(float(np.median(starts)) + drift, steps[len(steps) // 2], steps[-1], color="red", linestyle=":")
        axes.set(yscale=scale, xlabel="step", ylabel=label, title=f"{series} vs step")
        if legend:
            handles = [Line2D([], [], color=colours[lr], label=f"lr {lr:.3g}") for lr in lrs]
            handles += [Line2D([], [], color="grey", marker=markers[w], linestyle="", label=f"width {w}") for w in widths]
            handles += [Line2D([], [], color="red", linestyle="--", label="cap"),
                        Line2D([], [], color="red", linestyle=":", label="start + drift bound (2nd half)"),
                        Line2D([], [], color="grey", marker="x", linestyle="", label="diverged")]
            axes.legend(handles=handles, fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))

    return plot


_EPSILON_LAYERS_NAMED = 5


def _plot_epsilon_headroom(axes: Axes, record: dict[str, Any]) -> None:
    """Per layer, its smallest RMS of √v̂ over the LRs in units of Adam's ε against width (log-log): the headroom
    that shrinks as gradients fall with width, above the ratio the check requires."""
    data = record["data"]
    ratios = {layer: [min(_floats(per_lr), default=math.nan) / eps for per_lr in rms]
              for layer, eps, rms in zip(data["layers"], data["eps"], data["sqrt_v_rms"])}
    # Only the layers closest to ε at the widest width are named: a Transformer has dozens.
    closest = sorted(ratios, key=lambda layer: (math.isnan(ratios[layer][-1]), ratios[layer][-1]))[:_EPSILON_LAYERS_NAMED]
    for (layer, values), colour in zip(ratios.items(), _colours(len(ratios))):
        axes.plot(data["widths"], values, "o-", color=colour, markersize=3, label=layer if layer in closest else None)
    _threshold_line(axes, data.get("rms_ratio_threshold"), "required ratio")
    _width_axis(axes)
    axes.set(yscale="log", ylabel="RMS of √v̂ / ε (min over LRs)",
             title=f"Adam ε headroom per layer ({_EPSILON_LAYERS_NAMED} closest named)")
    _legend(axes)


def _plot_decay_timescales(axes: Axes, record: dict[str, Any]) -> None:
    """Per decayed parameter, weight decay's timescale τ against width (log-log): flat when the decay does not follow a
    width-scaled LR; the parameters that move most are named."""
    data = record["data"]
    slopes = [abs(s) if is_number(s) else math.inf for s in data["slopes"]]
    named = sorted(range(len(slopes)), key=lambda i: -slopes[i])[:_EPSILON_LAYERS_NAMED]
    for i, (name, values, colour) in enumerate(zip(data["names"], data["timescale"], _colours(len(data["names"])))):
        axes.plot(data["widths"], _floats(values), "o-", color=colour, markersize=3, label=name if i in named else None)
    _width_axis(axes)
    axes.set(yscale="log", ylabel="decay timescale τ (steps)",
             title=f"weight decay's timescale per parameter (max |slope| {number(record['value'])})")
    _legend(axes)


def _plot_depth_sensitivity(axes: Axes, record: dict[str, Any]) -> None:
    """LR sensitivity S against depth, one line per width (each is asserted)."""
    data = record["data"]
    for width, colour, values in zip(data["widths"], _colours(len(data["widths"])), data["sensitivity"]):
        axes.plot(data["depths"], _floats(values), "o-", color=colour, label=f"width {width}")
    axes.set_xscale("log", base=2)
    axes.set(xticks=data["depths"], xticklabels=[str(d) for d in data["depths"]], xlabel="depth (layers)",
             ylabel="LR sensitivity S", title=f"S vs depth (growth {number(record['value'])} per doubling)")
    _legend(axes)


def _plot_depth_coord(axes: Axes, record: dict[str, Any]) -> None:
    """At the widest width, the residual stream's size against depth, one line per step (flat under Depth-μP)."""
    data = record["data"]
    sizes = data["sizes"][-1]  # [step][depth]
    for step, (colour, values) in enumerate(zip(_colours(len(sizes)), sizes)):
        axes.plot(data["depths"], _floats(values), "o-", color=colour, label=f"step {step}")
    axes.set_xscale("log", base=2)
    axes.set(xticks=data["depths"], xticklabels=[str(d) for d in data["depths"]], xlabel="depth (layers)",
             ylabel="mean |input| of the final norm",
             title=f"width {data['widths'][-1]}: residual stream vs depth\nmax |slope| {number(record['value'])}")
    _legend(axes)


def _plot_depth_transfer(axes: Axes, record: dict[str, Any]) -> None:
    """At the widest width, the seed-mean loss-vs-LR curve of each depth: under Depth-μP they lie on each other."""
    data = record["data"]
    _plot_loss_curves(axes, data["depths"], data["lrs"], [by_width[-1] for by_width in data["losses"]],
                      title=f"width {data['widths'][-1]}: loss vs LR by depth (shift slope {number(record['value'])})",
                      size_name="depth")


def _plot_value(axes: Axes, record: dict[str, Any]) -> None:
    """The value with its CI, against ± the threshold and the baseline's band."""
    bounds = ci_bounds(record["ci"])
    error = [[record["value"] - bounds[0]], [bounds[1] - record["value"]]] if bounds else None
    axes.errorbar([0], [record["value"]], yerr=error, fmt="o", capsize=6, label="value")
    if is_number(record["threshold"]):
        for sign in (1, -1):
            axes.axhline(sign * record["threshold"], color="red", linestyle="--")
    _baseline_span(axes, record)
    axes.set(xticks=[], ylabel=record["property"] or "value", title=record["name"])
    axes.legend(fontsize="small")


#: Per property, the panels drawn and the data keys each needs.
FIGURES: dict[str, tuple[tuple[Panel, tuple[str, ...]], ...]] = {
    "lr_transfer": ((_plot_lr_transfer, ("widths", "lrs", "losses")), (_plot_optimal_lr, ("widths", "mean_log2_lr"))),
    "lr_curve_transfer": ((_plot_lr_transfer, ("widths", "lrs", "losses")),),
    "coord_check": ((_plot_coord_check, ("layers", "slopes")),),
    "wider_is_better": ((_plot_width_losses, ("widths", "losses")),),
    "power_law": ((_plot_power_law, ("sizes", "losses", "seed_std", "fit")),),
    "extrapolation": ((_plot_extrapolation, ("sizes", "losses", "seed_std", "fit", "holdout", "predicted", "band",
                                             "z_scores")),),
    "lr_sensitivity": ((_plot_sensitivity_losses, ("widths", "lrs", "losses")),
                       (_plot_lr_sensitivity, ("widths", "values"))),
    "qk_layernorm_lowers_sensitivity": ((_plot_qk_sensitivity, tuple(QK_VARIANTS)),
                                        *((_qk_losses_panel(key), tuple(QK_VARIANTS)) for key in QK_VARIANTS)),
    "adam_epsilon": ((_plot_epsilon_headroom, ("layers", "widths", "eps", "sqrt_v_rms")),),
    "weight_decay": ((_plot_decay_timescales, ("names", "widths", "timescale", "slopes")),),
    "depth": ((_plot_depth_sensitivity, ("depths", "widths", "sensitivity")),),
    "depth_coord_check": ((_plot_depth_coord, ("depths", "widths", "sizes")),),
    "depth_lr_transfer": ((_plot_depth_transfer, ("depths", "widths", "lrs", "losses")),),
    "no_logit_divergence": tuple((_logit_panel(series, legend=series == "|log Z|"), ("steps", "runs", "series"))
                                 for series in LOGIT_SERIES),
}


def _plot_diagnosis(axes: Axes, record: dict[str, Any]) -> None:
    """The property's value as written and with each tried intervention (|value| where either sign is worse), against
    its threshold: green passed, red failed, grey no verdict."""
    diagnosis = Diagnosis.from_dict(record["data"]["diagnosis"])
    trials = [diagnosis.as_written, *diagnosis.trials]
    absolute = diagnosis.worse == "higher_abs"
    values = _floats(abs(t.value) if absolute and t.value is not None else t.value for t in trials)
    colours = ["tab:green" if t.passed else "tab:red" if t.passed is False else "grey" for t in trials]
    positions = list(range(len(trials)))[::-1]
    axes.barh(positions, [0.0 if math.isnan(v) else v for v in values], color=colours)
    axes.set_yticks(positions, [t.summary for t in trials], fontsize="small")
    if is_number(diagnosis.threshold):
        axes.axvline(abs(diagnosis.threshold), color="red", linestyle="--", label="threshold")
        axes.legend(fontsize="small")
    axes.set(xlabel=f"{'|' + diagnosis.property + '|' if absolute else diagnosis.property}",
             title=f"diagnosis: {diagnosis.property} per intervention")


def _panels(record: dict[str, Any]) -> list[Panel]:
    """The panels for a record: its property's whose data is present, else the value panel if it has a value; and
    the diagnosis panel where the record carries a diagnosis."""
    panels = [plot for plot, keys in FIGURES.get(record["property"], ()) if all(key in record["data"] for key in keys)]
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
    body = [f"<h1>Scaling report</h1><p>{html.escape(environment_line(report['environment']))}</p>"]
    if report["records"]:
        body.extend(f"<h3>family {html.escape(family)} ({len(records)} records)</h3>{table(records, 'html')}"
                    for family, records in by_family(report))
    body.extend(_section(record) for record in report["records"])
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Scaling report</title>'
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
