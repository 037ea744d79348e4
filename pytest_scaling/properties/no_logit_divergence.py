"""No logit divergence (Wortsman et al.'s attention- and output-logit instabilities): up to the top LR of the stability
sweep, no run's max attention logit or |log Z| may pass its cap or stop being finite, nor |log Z| drift up with nothing
in the objective to pull it back (docs/design.md, "Logit divergence")."""

from __future__ import annotations

import math
from itertools import cycle
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from .. import metrics
from ..assertions import assert_no_logit_divergence
from ..family import ModelFamily
from ..grids import StabilityGrid
from ..objective import MIN_PULL, log_z_pull
from ..placement import place
from ..property import Panel, Property
from ..report import drawing
from ..report.model import is_number
from ..train import RunResult
from ._arguments import grid_or_tier, require_check_arguments
from ._fixes import STABILITY_FIXES
from ._runs import json_losses
from ._stability import STABILITY_GRIDS, stability_sweep, stability_sweeps

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _probe_series(steps: list[int], values: Any) -> np.ndarray:
    """A probe series over every probe step of the config; steps after a run diverged read +inf."""
    return np.array(list(values) + [np.inf] * (len(steps) - len(values)))


#: The record's note when no run of a sweep recorded an attention logit: the attention series is not checked.
NO_ATTENTION = ("not applicable: no attention layer found (no scaled_dot_product_attention, nn.MultiheadAttention "
                "or record_attention_logits call)")


def _logit_trends(run: RunResult, steps: list[int], grid: StabilityGrid, attention: bool) -> dict[str, metrics.LogitTrend]:
    """The run's max attention logit (max over layers; left out when ``attention`` is False: the model has no
    attention layer) and |mean log Z| per probe step, as trends."""
    trends: dict[str, metrics.LogitTrend] = {}
    if attention:
        probed = run.probes.get("attention_logit_max", {})
        max_attention = np.max(list(probed.values()), axis=0) if probed else []
        trends["attention logit"] = metrics.logit_trend(steps, _probe_series(steps, max_attention),
                                                        cap=grid.attention_logit_cap)
    log_z = np.abs(run.probes.get("output", {}).get("log_z_mean", []))
    trends["|log Z|"] = metrics.logit_trend(steps, _probe_series(steps, log_z), cap=grid.log_z_cap,
                                           max_drift=grid.max_log_z_drift)
    return trends


def criterion_fraction(trend: metrics.LogitTrend, cap: float, max_drift: float) -> float:
    """The check's value for one series: the largest fraction of a failure criterion it reached (its cap, its drift
    bound; 1 = at it, +inf: diverged), so the value exceeds 1 exactly when the series fails and a baseline compares it
    like every other value. ``max_drift`` inf leaves the drift out (a drift the objective pulls back on is not a
    failure). Growth below the cap is not a failure either (see ``no_logit_divergence``)."""
    return max(trend.max_abs / cap, trend.drift / max_drift)


def _unresolved_reason(grew: dict[str, metrics.LogitTrend], drifted: list[str], drift: float, bound: float,
                       pull: float | None, steps: int, cap_of: dict[str, float]) -> str | None:
    """The inconclusive verdict of series that neither diverged nor drifted unchecked: growth through the second half
    below the cap, and a |log Z| drift that the objective pulls back on; None when there are none."""
    parts = []
    if grew:
        name, trend = max(grew.items(), key=lambda item: item[1].final / cap_of[item[0]])
        parts.append(f"{len(grew)} series grew through the second half without nearing their cap (e.g. {name}: "
                     f"{trend.mid:.3g} at mid-run, {trend.final:.3g} at the end, cap {cap_of[name]:g}): at this horizon "
                     "growth below the cap does not tell logits that settle (a correct qk-layernorm GPT's, as its "
                     "gains grow) from logits that diverge on a longer run")
    if drifted:
        parts.append(f"|log Z| drifted up to {drift:.2f} nats from its start (bound {bound:g}) in {len(drifted)} run(s), "
                     f"and the objective pulls it back (z-loss {pull:.2g}, measured); a z-loss acts over about c·steps, "
                     f"so over {steps} steps a weak one and none drift alike")
    if not parts:
        return None
    return f"inconclusive at this budget: {'; '.join(parts)} (docs/design.md, \"Logit divergence\")"


def no_logit_divergence(scaling: Any, family: ModelFamily, grid: StabilityGrid | None = None) -> dict[str, metrics.LogitTrend]:
    """Up to the tier's eta_max no run's max attention logit or |log Z| may diverge (pass its cap, or stop being
    finite), nor |log Z| drift away from 0 (its second half too far above its start) with nothing in the objective to
    pull it back: Wortsman et al.'s attention- and output-logit instabilities. Inconclusive rather than failed: a
    series that keeps growing below its cap (a correct qk-layernorm GPT's max attention logit rose 23 → 44 at the
    top LR as its gains grew; without qk-layernorm the logits pass the cap of 1e3 within the same 250 steps), and a
    drift under a z-loss (``objective.log_z_pull`` > 0: at the tier's horizon a z-loss of 1e-4 and none drift alike).
    A model without attention layers has its |log Z| checked alone (the record says attention is not applicable)."""
    require_check_arguments(PROPERTY.name, grid, StabilityGrid, family=family)
    grid, placed = place(scaling, family, grid_or_tier(scaling, PROPERTY, grid))
    result = stability_sweep(scaling, family, grid)
    steps = [t for t in range(result.config.steps) if result.config.probes_at(t)]
    # A run that diverged before its first probe has no attention series either: only a sweep where none has one
    # has no attention layer.
    attention = any(run.probes.get("attention_logit_max") for run in result.runs.values())
    by_run = {key: _logit_trends(run, steps, grid, attention) for key, run in sorted(result.runs.items())}
    named = [(f"w={w} lr={lr:.3g} seed={s} {series}", series, trend)
             for (w, lr, s), run_trends in by_run.items() for series, trend in run_trends.items()]
    trends = {name: trend for name, _, trend in named}
    drifted = [name for name, t in trends.items() if t.drifted and not t.diverged]
    pull = log_z_pull(family) if drifted else None
    drift_fails = pull is None or pull < MIN_PULL
    drift_bound = grid.max_log_z_drift if drift_fails else math.inf
    caps = {"attention logit": (grid.attention_logit_cap, math.inf), "|log Z|": (grid.log_z_cap, drift_bound)}
    used = {key: max((criterion_fraction(trend, *caps[series]) for series, trend in run_trends.items()), default=0.0)
            for key, run_trends in by_run.items()}
    grew = {name: trend for name, _, trend in named if trend.growing and not trend.diverged}
    cap_of = {name: caps[series][0] for name, series, _ in named if name in grew}
    inconclusive = _unresolved_reason(grew, [] if drift_fails else drifted,
                                      max((trends[name].drift for name in drifted), default=0.0),
                                      grid.max_log_z_drift, pull, result.config.steps, cap_of)
    PROPERTY.record(
        scaling, family.name, value=max(used.values(), default=0.0), threshold=1.0,
        seed_values=[max(v for (_, _, s), v in used.items() if s == seed) for seed in result.seeds],
        caps={"attention_logit_cap": grid.attention_logit_cap, "log_z_cap": grid.log_z_cap,
              "max_log_z_drift": grid.max_log_z_drift if math.isfinite(grid.max_log_z_drift) else None},
        max_abs={name: t.max_abs if np.isfinite(t.max_abs) else None for name, t in trends.items()},
        drift={name: t.drift if np.isfinite(t.drift) else None for name, t in trends.items()},
        diverged=[name for name, t in trends.items() if t.diverged or (t.drifted and drift_fails)],
        growing=list(grew), steps=steps,
        runs=[{"width": w, "lr": lr, "seed": s} for w, lr, s in by_run],
        series={series: json_losses(np.array([run_trends[series].values for run_trends in by_run.values()]))
                for series in next(iter(by_run.values()), {})},
        **({} if pull is None else {"log_z_pull": pull}),
        **({} if inconclusive is None else {"reason": inconclusive}),
        **({} if attention else {"attention": NO_ATTENTION}), recipe=result.recipe, **placed)
    assert_no_logit_divergence(trends, drift_fails=drift_fails, allow_growth=True)
    if inconclusive is not None:
        pytest.skip(inconclusive)
    return trends


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
        colours = dict(zip(lrs, drawing.colours(len(lrs), "plasma")))
        markers = dict(zip(widths, cycle("os^Dv")))
        for run, run_values in zip(data["runs"], data["series"][series]):
            values = drawing.floats(run_values)
            colour = colours[run["lr"]]
            axes.plot(data["steps"], values, "-", marker=markers[run["width"]], markersize=3, color=colour, alpha=0.8)
            drawing.mark_diverged(axes, [step for step, value in zip(data["steps"], values) if math.isnan(value)][:1], colour)
        cap, label, scale = LOGIT_SERIES[series]
        caps = record["data"].get("caps", {})
        drawing.threshold_line(axes, caps.get(cap), "cap")
        drift = caps.get(LOGIT_DRIFT.get(series, ""))
        starts = [abs(v) for row in data["series"][series] for v in drawing.floats(row)[:1] if math.isfinite(v)]
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


PROPERTY = Property(
    "no_logit_divergence", "attention and output logits neither diverge nor drift up to the top LR", "higher",
    check=no_logit_divergence, grids=STABILITY_GRIDS, sweeps=stability_sweeps, interventions=STABILITY_FIXES,
    figure=tuple((_logit_panel(series, legend=series == "|log Z|"), ("steps", "runs", "series"))
                 for series in LOGIT_SERIES),
    measures="the same runs as `lr_sensitivity`: max attention logit and |log Z| per probe step",
    fails_when=lambda g: (f"either passes its cap ({g.attention_logit_cap:g}, {g.log_z_cap:g}) or stops being finite; "
                          f"or |log Z| drifts in the second half more than {g.max_log_z_drift:g} nats above its start "
                          "with nothing in the objective to pull it back (`objective.log_z_pull`); *inconclusive* at "
                          "this budget: that drift under a z-loss, or a series still growing below its cap"),
)
