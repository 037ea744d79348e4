"""Transformer stability properties (Wortsman et al.): LR sensitivity, qk-layernorm's effect, no logit divergence."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from .. import metrics
from ..assertions import assert_lr_sensitivity, assert_no_logit_divergence
from ..family import ModelFamily
from ..objective import MIN_PULL, log_z_pull
from ..placement import place
from ..properties import PROPERTIES
from ..sweep import SweepResult
from ..tiers import StabilityGrid
from ..train import OptimizerSpec, RunResult, TrainConfig
from ._arguments import grid_or_tier, require_check_arguments
from ._records import json_losses


def stability_optimizer(weight_decay: float) -> OptimizerSpec:
    """Wortsman et al.'s optimizer: AdamW beta=(0.9, 0.95), eps 1e-8, weight decay independent of the LR."""
    return OptimizerSpec(betas=(0.9, 0.95), eps=1e-8, weight_decay=weight_decay, independent_wd=True)


def _stability_config(grid: StabilityGrid) -> TrainConfig:
    """Wortsman et al.'s recipe: their optimizer, warmup + cosine, clip 1.0; attention and output logits probed every
    ``grid.probe_every`` steps."""
    return TrainConfig(steps=grid.steps, batch_size=grid.batch_size, optimizer=stability_optimizer(grid.weight_decay),
                       warmup=grid.warmup,
                       schedule="cosine", grad_clip=1.0, probe_every=grid.probe_every, probe_kinds=("attention", "output"))


def stability_sweep(scaling: Any, family: ModelFamily, grid: StabilityGrid) -> SweepResult:
    """One sweep config for both stability properties, so a cached session trains each family once (``grid`` placed)."""
    return scaling.sweep(family, widths=grid.widths or family.widths, lrs=grid.lrs, seeds=scaling.first_seeds(grid.seeds),
                         config=_stability_config(grid), stacking=grid.stacking)


def _sensitivity_record(family: ModelFamily, result: SweepResult, sensitivity: metrics.SensitivityResult) -> dict[str, Any]:
    """S per width with the seed-mean loss-vs-LR curves it comes from (S is always shown with them), and S in nats."""
    return {"family": family.name, "widths": list(result.widths), "lrs": list(result.lrs), "measure": sensitivity.label,
            "values": sensitivity.mean.tolist(), "nats": result.lr_sensitivity().mean.tolist(),
            "losses": json_losses(result.loss_table().mean(axis=-1))}


def _seed_sensitivity(result: SweepResult, grid: StabilityGrid) -> np.ndarray:
    """S of each seed's own loss-vs-LR curve, [width, seed]."""
    return result.lr_sensitivity(relative=grid.relative_sensitivity, per_seed=True).values


def lr_sensitivity(scaling: Any, family: ModelFamily, grid: StabilityGrid | None = None) -> metrics.SensitivityResult:
    """LR sensitivity S (Wortsman et al.) must stay under the tier's bound at every width: a stable recipe tolerates a wide LR range."""
    require_check_arguments("lr_sensitivity", grid, StabilityGrid, family=family)
    grid, placed = place(scaling, family, grid_or_tier(scaling, "lr_sensitivity", grid))
    result = stability_sweep(scaling, family, grid)
    sensitivity = result.lr_sensitivity(relative=grid.relative_sensitivity)
    record = _sensitivity_record(family, result, sensitivity)
    PROPERTIES["lr_sensitivity"].record(scaling, record.pop("family"), value=float(sensitivity.mean.max()),
                                        threshold=grid.max_sensitivity,
                                        seed_values=_seed_sensitivity(result, grid).max(axis=0).tolist(), **record,
                                        recipe=result.recipe, **placed)
    return assert_lr_sensitivity(sensitivity, max_value=grid.max_sensitivity)


def qk_layernorm_lowers_sensitivity(scaling: Any, family_with: ModelFamily, family_without: ModelFamily,
                                    grid: StabilityGrid | None = None) -> metrics.SensitivityResult:
    """S with qk-layernorm must be lower than without at every width: bounding attention logits is what keeps high LRs trainable."""
    require_check_arguments("qk_layernorm_lowers_sensitivity", grid, StabilityGrid,
                            family_with=family_with, family_without=family_without)
    # Both variants sweep the grid placed on the one with qk-layernorm, so their curves compare point by point.
    grid, placed = place(scaling, family_with, grid_or_tier(scaling, "qk_layernorm_lowers_sensitivity", grid))
    results = [stability_sweep(scaling, family, grid) for family in (family_with, family_without)]
    with_qkln, without_qkln = (result.lr_sensitivity(relative=grid.relative_sensitivity) for result in results)
    # The value is the largest S(with) − S(without) over widths: negative when qk-layernorm lowers S everywhere.
    seed_values = (_seed_sensitivity(results[0], grid) - _seed_sensitivity(results[1], grid)).max(axis=0)
    PROPERTIES["qk_layernorm_lowers_sensitivity"].record(
        scaling, family_with.name, value=float((with_qkln.mean - without_qkln.mean).max()), threshold=0.0,
        seed_values=seed_values.tolist(),
        with_qk_layernorm=_sensitivity_record(family_with, results[0], with_qkln),
        without_qk_layernorm=_sensitivity_record(family_without, results[1], without_qkln), recipe=results[0].recipe,
        **placed)
    return assert_lr_sensitivity(with_qkln, max_value=None, lower_than=without_qkln)


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
    require_check_arguments("no_logit_divergence", grid, StabilityGrid, family=family)
    grid, placed = place(scaling, family, grid_or_tier(scaling, "no_logit_divergence", grid))
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
    PROPERTIES["no_logit_divergence"].record(
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
