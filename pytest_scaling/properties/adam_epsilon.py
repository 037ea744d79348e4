"""Adam's ε against the denominator it is added to (Everett et al.): per layer, the RMS of √v̂ vs ε and the fraction
of coordinates with √v̂ < ε, late in training, asserted at the largest width (docs/design.md, "Adam ε")."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import metrics, model_facts
from .._result import jsonable
from ..assertions import assert_adam_epsilon
from ..family import ModelFamily
from ..grids import EpsilonGrid, RelativeLRs, RelativeWidths, half_decades
from ..placement import place
from ..property import Property
from ..report import drawing
from ..sweep import SweepRequest, SweepResult
from ..train import OptimizerSpec, TrainConfig
from ._arguments import grid_or_tier, require_check_arguments

if TYPE_CHECKING:
    from matplotlib.axes import Axes

GRIDS: dict[str, EpsilonGrid] = {
    "smoke": EpsilonGrid(widths=RelativeWidths((1, 2)), lrs=RelativeLRs(0, 0), steps=20, batch_size=8, probe_every=5,
                         max_frac_below_eps=0.25, min_rms_ratio=10.0, stacking="none", seeds=1),
    "cpu": EpsilonGrid(widths=RelativeWidths((1, 2)), lrs=half_decades(-2, 0), steps=100, batch_size=32, probe_every=10,
                       max_frac_below_eps=0.25, min_rms_ratio=10.0, stacking="none", seeds=1),
    "gpu": EpsilonGrid(widths=RelativeWidths((4, 8, 16, 32)), lrs=half_decades(-2, 0), steps=1000, batch_size=64,
                       probe_every=50, max_frac_below_eps=0.25, min_rms_ratio=10.0),
}


def _epsilon_config(grid: EpsilonGrid) -> TrainConfig:
    """AdamW at the grid's ε with a constant LR; only the Adam probe, every ``grid.probe_every`` steps and at the last."""
    return TrainConfig(steps=grid.steps, batch_size=grid.batch_size, optimizer=OptimizerSpec(eps=grid.eps),
                       probe_every=grid.probe_every, probe_kinds=("adam_state",))


def _request(scaling: Any, family: ModelFamily, grid: EpsilonGrid) -> SweepRequest:
    """The runs of a placed ε grid."""
    return SweepRequest(family, tuple(grid.widths or family.widths), tuple(grid.lrs),
                        tuple(scaling.first_seeds(grid.seeds)), _epsilon_config(grid), grid.stacking)


def _sweeps(scaling: Any, family: ModelFamily, grid: EpsilonGrid) -> list[SweepRequest]:
    """What the check asks for on ``family`` (nothing trains when its optimizer has no ε; the plan counts it)."""
    return [_request(scaling, family, place(scaling, family, grid)[0])]


def _layer_eps(family: ModelFamily, grid: EpsilonGrid) -> dict[str, float]:
    """ε per parameter of the optimizer the runs use: the grid's AdamW, or the ``eps`` of the family's own factory's groups.

    Parameters in groups without an ε (AdamAtan2, optimizers that are not Adam) are left out: no ε can swamp their updates.
    """
    model, _ = family.instantiate(family.base_width, 0)
    if family.optimizer is None:
        return {name: grid.eps for name, _ in model.named_parameters()}
    optimizer = family.optimizer(model, 1e-3)  # any LR: only the groups' ε are read
    eps_of = {id(p): group["eps"] for group in optimizer.param_groups if "eps" in group for p in group["params"]}
    return {name: eps_of[id(p)] for name, p in model.named_parameters() if id(p) in eps_of}


def _late_extremes(result: SweepResult, layers: list[str], seeds: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per [layer, width, lr]: the smallest RMS of √v̂ and the largest fraction below ε over the seeds (all, or
    ``seeds``) and the probe steps of the second half of training, where gradients are smallest; NaN where no run
    was probed that late."""
    shape = (len(layers), len(result.widths), len(result.lrs))
    rms, frac = np.full(shape, np.nan), np.full(shape, np.nan)
    for (width, lr, seed), run in result.runs.items():
        late = [i for i, t in enumerate(run.probe_step_list) if 2 * t >= result.config.steps]
        if not late or (seeds is not None and seed not in seeds):
            continue
        cell = (slice(None), result.widths.index(width), result.lrs.index(lr))
        run_rms = np.array([[run.probes["sqrt_v_rms"][layer][i] for i in late] for layer in layers])
        run_frac = np.array([[run.probes["frac_below_eps"][layer][i] for i in late] for layer in layers])
        rms[cell] = np.fmin(rms[cell], np.fmin.reduce(run_rms, axis=1))
        frac[cell] = np.fmax(frac[cell], np.fmax.reduce(run_frac, axis=1))
    return rms, frac


def _bound_used(margins: metrics.EpsilonResult, grid: EpsilonGrid) -> float:
    """The recorded value: how much of its bound the worst layer at the largest width uses, the larger of the fraction
    below ε over its bound and the RMS bound over the RMS of √v̂ in units of ε (1 = at a bound; larger fails)."""
    frac = np.fmax.reduce(margins.frac_below_eps[:, -1], axis=None)
    ratio = np.fmin.reduce(margins.rms_ratio[:, -1], axis=None)
    return float(max(frac / grid.max_frac_below_eps, grid.min_rms_ratio / ratio if ratio > 0 else np.inf))


def _not_applicable(scaling: Any, family: ModelFamily, reason: str) -> None:
    PROPERTY.record(scaling, family.name, value=None, threshold=None, applicable=False, reason=reason)


def adam_epsilon(scaling: Any, family: ModelFamily, grid: EpsilonGrid | None = None) -> metrics.EpsilonResult | None:
    """Adam's ε must stay small against every layer's √v̂ at the largest width late in training: gradients fall with
    width (Everett et al.), and once √v̂ nears ε the update m̂/(√v̂ + ε) shrinks with it. √v̂, not the current gradient,
    is what ε competes with: a gradient that fell late in training is still divided by the larger ones v̂ remembers.

    A parameter the loss does not depend on (``model_facts.loss_independent_parameters``: a key's bias under softmax)
    has a gradient of round-off at every width, whatever ε; it is recorded under ``no_gradient``, not asserted.

    Returns None, recorded as not applicable and without training, when the family's optimizer has no ε
    (AdamAtan2: a·atan2(m̂, b·√v̂) is invariant to the gradient scale), or after training when it keeps no Adam state.
    """
    require_check_arguments(PROPERTY.name, grid, EpsilonGrid, family=family)
    grid = grid_or_tier(scaling, PROPERTY, grid)
    layer_eps = _layer_eps(family, grid)
    if not layer_eps:
        _not_applicable(scaling, family, "the optimizer has no epsilon (e.g. AdamAtan2): its updates ignore the gradient scale")
        return None
    grid, placed = place(scaling, family, grid)
    result = _request(scaling, family, grid).run(scaling)
    probed = next(iter(result.runs.values())).probes.get("sqrt_v_rms", {})
    no_gradient = model_facts.loss_independent_parameters(family)
    layers = [name for name in probed if name in layer_eps and name not in no_gradient]
    if not layers:
        _not_applicable(scaling, family, "the optimizer keeps no Adam second moment to probe")
        return None
    margins = metrics.epsilon_margins(layers, result.widths, result.lrs, [layer_eps[name] for name in layers],
                                      *_late_extremes(result, layers))
    seed_margins = [metrics.epsilon_margins(layers, result.widths, result.lrs, [layer_eps[name] for name in layers],
                                            *_late_extremes(result, layers, (seed,))) for seed in result.seeds]
    PROPERTY.record(
        scaling, family.name, applicable=True, value=_bound_used(margins, grid), threshold=1.0,
        seed_values=[_bound_used(m, grid) for m in seed_margins],
        max_frac_below_eps=jsonable(np.fmax.reduce(margins.frac_below_eps[:, -1], axis=None)),
        frac_threshold=grid.max_frac_below_eps,
        min_rms_ratio=jsonable(np.fmin.reduce(margins.rms_ratio[:, -1], axis=None)),
        rms_ratio_threshold=grid.min_rms_ratio, steps=grid.steps, no_gradient=list(no_gradient), **margins.to_dict(),
        recipe=result.recipe, **placed)
    return assert_adam_epsilon(margins, max_frac_below_eps=grid.max_frac_below_eps, min_rms_ratio=grid.min_rms_ratio)


def _plot_epsilon_headroom(axes: Axes, record: dict[str, Any]) -> None:
    """Per layer, its smallest RMS of √v̂ over the LRs in units of Adam's ε against width (log-log): the headroom
    that shrinks as gradients fall with width, above the ratio the check requires."""
    data = record["data"]
    ratios = {layer: [min(drawing.floats(per_lr), default=math.nan) / eps for per_lr in rms]
              for layer, eps, rms in zip(data["layers"], data["eps"], data["sqrt_v_rms"])}
    # Only the layers closest to ε at the widest width are named: a Transformer has dozens.
    closest = sorted(ratios, key=lambda layer: (math.isnan(ratios[layer][-1]), ratios[layer][-1]))[:drawing.LAYERS_NAMED]
    drawing.named_lines(axes, data["widths"], ratios, closest)
    drawing.threshold_line(axes, data.get("rms_ratio_threshold"), "required ratio")
    drawing.width_axis(axes)
    axes.set(yscale="log", ylabel="RMS of √v̂ / ε (min over LRs)",
             title=f"Adam ε headroom per layer ({drawing.LAYERS_NAMED} closest named)")
    drawing.legend(axes)


PROPERTY = Property(
    "adam_epsilon", "Adam's ε stays small against every layer's gradients at the largest width", "higher",
    check=adam_epsilon, grids=GRIDS, sweeps=_sweeps, interventions=("lower_eps",),
    figure=((_plot_epsilon_headroom, ("layers", "widths", "eps", "sqrt_v_rms")),),
    measures="per layer, late in training at the largest width: the RMS of √v̂ (Adam's denominator) against its ε, "
             "and the fraction of coordinates with √v̂ < ε (a parameter the loss does not depend on, such as a key's "
             "LayerNorm bias, is listed, not asserted)",
    fails_when=lambda g: (f"RMS of √v̂ < {g.min_rms_ratio:g}·ε or more than {g.max_frac_below_eps:.0%} of coordinates "
                          "under ε; recorded as the largest fraction of a bound used"),
)
