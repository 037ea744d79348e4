"""assert_* checks on fit and metric results: each returns the result on success and raises an
AssertionError whose message is a small table of the evidence, the threshold, and a hint of what to try.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import numpy as np
from tabulate import tabulate

from .decay import DecayTimescales
from .fit import ExtrapolationResult, PowerLawFit
from .model_facts import lr_rule, model_facts
from .metrics import (CoordCheckResult, CoordVerdict, CurveShiftResult, EpsilonResult, LogitTrend, SensitivityResult,
                      TransferResult, WidthTrend, depth_coord_excess)

WIDEN_GRID = "widen the LR grid"
#: Starts the line of a failure that names possible causes nobody tested: the suite's diagnosis replaces it.
HINT_PREFIX = "untested hint"


def _num(value: float | None) -> str:
    """A table cell: 4 significant digits, '—' for missing."""
    return "—" if value is None else f"{value:.4g}"


def _hint(seen: str, ask: str) -> str:
    """What the evidence shows (a description), then what might cause it: a question, labelled as one."""
    return f"{seen}\n{HINT_PREFIX} (a question, not a finding; --scaling-diagnose tests the usual fixes): {ask}"


def _fail(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]], facts: Sequence[str], hint: str) -> NoReturn:
    """Raise the failure: title, evidence table, facts, then ``hint`` (see ``_hint``)."""
    table = tabulate(rows, headers=list(headers), tablefmt="simple", disable_numparse=True)
    raise AssertionError("\n".join([title, "", table, "", *facts, hint]))


def _mup_lr_questions(model: Mapping[str, Any] | None) -> tuple[str, list[str]]:
    """What the model reading (``model_facts.read_model``) rules out among μP's usual LR causes, as a clause for what
    was seen, and the questions left to ask."""
    reading = dict(model or {})
    found, asks = [], []
    if lr_rule(reading, "hidden") == "η/m":
        found.append("hidden LR η/m")
    else:
        asks.append("is the hidden-layer LR scaled by 1/m?")
    if lr_rule(reading, "output") == "η/m":
        found.append("readout LR η/m")
        asks.append("is the readout initialised with variance 1/fan_in² (or zero)?")
    else:
        asks.append("is the readout zero-initialised (or variance 1/fan_in²) and multiplied by 1/m in the forward pass?")
    return (f" ({', '.join(found)} as read from the optimizer, so not that)" if found else ""), asks


def assert_lr_transfer(result: TransferResult, *, max_abs_slope: float = 0.25,
                       model: Mapping[str, Any] | None = None) -> TransferResult:
    """η* must not move with width: |slope of log2 η* on log2 width| ≤ max_abs_slope (0.25: DESIGN §4's μP bound).

    Fails, with "widen the LR grid", when any (width, seed) optimum sits on a grid edge: dropping
    those cells would hide exactly the drift this checks.
    """
    per_seed = [", ".join("edge" if np.isnan(v) else f"{v:.2f}" for v in row) for row in result.log2_lr_opt]
    rows = [[_num(width), "—" if np.isnan(mean) else f"{mean:.2f}", per_seed[w], f"{result.n_conclusive[w]}/{result.n_seeds}"]
            for w, (width, mean) in enumerate(zip(result.widths, result.mean_log2_lr))]
    headers = ["width", "η* (log2, mean)", "η* (log2) per seed", "seeds"]
    ci = "—" if result.ci is None else f"[{result.ci[0]:.3f}, {result.ci[1]:.3f}]"
    slope = "—" if result.slope is None else f"{result.slope:.3f}"
    facts = [f"slope of log2 η* on log2 width: {slope} (95% CI over seeds {ci}); threshold |slope| ≤ {max_abs_slope}"]
    if result.inconclusive or result.inconclusive_cells:
        facts += [f"width {_num(w)} seed {s}: {why}" for w, s, why in result.inconclusive_cells]
        _fail("LR transfer inconclusive: the LR grid does not bracket every optimum", headers, rows,
              facts + ([result.reason] if result.reason else []),
              f"an optimum sits on the LR grid's edge: {WIDEN_GRID} (extend it past the edge named above)")
    assert result.slope is not None
    if abs(result.slope) > max_abs_slope:
        checked, asks = _mup_lr_questions(model)
        hint = (_hint("the optimum drifts like SP: η* falls as width grows" + checked, " ".join(asks))
                if result.slope < 0 else
                _hint("the optimum rises with width", "is a 1/m LR or multiplier applied to a layer that should not "
                      "scale (input weights, biases, norm gains)?"))
        _fail("LR transfer failed: the optimal LR moves with width", headers, rows, facts, hint)
    return result


def assert_coord_check(result: CoordCheckResult, *, max_abs_slope: float = 0.15, two_sided: bool = True,
                       verdicts: Sequence[CoordVerdict] = (), expected_at_init: Sequence[float | None] | None = None,
                       model: Mapping[str, Any] | None = None) -> CoordCheckResult:
    """Activation sizes must not scale with width: |slope of log size on log width| ≤ max_abs_slope for every layer and step.

    0.15 is the μP bound (SP's readout reaches ≈ 0.5-1 after one step). Layers are in forward order, the last being
    the readout. ``two_sided=False`` fails on growth only. Cells exactly 0 at some width (a zero-initialised layer
    before its first update) have no slope and are skipped; a layer exactly 0 at every step fails: it never moved, so
    it is dead, and nothing about its scaling was checked. With ``verdicts`` (``checks.coord_check``: the
    parametrization up to every layer's first update, the training dynamics after) those decide instead, each on its
    own line; ``expected_at_init`` is each row's slope at init μP predicts (``metrics.coord_excess``), and ``model``
    (``model_facts.read_model``) is what the hint reads before it asks about a cause.
    """
    if verdicts:
        return _assert_coord_verdicts(result, verdicts, expected_at_init or [None] * len(result.layers), model or {})
    slopes = result.slopes
    excess = np.where(result.measured, np.abs(slopes) if two_sided else slopes, -np.inf)
    worst = np.unravel_index(np.argmax(excess), slopes.shape)
    if excess[worst] <= max_abs_slope:
        return _no_dead_layers(result, "coordinate check failed: a layer never moves off 0")
    headers, rows, layer, step = _coord_table(result, worst)
    bound = f"|slope| ≤ {max_abs_slope}" if two_sided else f"slope ≤ +{max_abs_slope} (growth only)"
    facts = [f"widths {', '.join(_num(w) for w in result.widths)}; worst: {layer} at step {step}, "
             f"slope {slopes[worst]:+.3f}; threshold {bound}", *_zero_facts(result)]
    failing = excess > max_abs_slope
    facts.append(_first_to_grow(result, failing))
    _fail("coordinate check failed: activation size scales with width", headers, rows, facts,
          _coord_hint(result, failing, {}))


def verdict_line(verdict: CoordVerdict) -> str:
    """One verdict on one line: its steps, worst cell, value against its bound with the seeds' noise, and status."""
    steps = "-".join(str(t) for t in (verdict.steps[0], verdict.steps[-1])) if len(verdict.steps) > 1 else str(verdict.steps[0])
    where = f" at {verdict.worst[0]} step {verdict.worst[1]}" if verdict.worst else ""
    status = {"pass": "pass", "fail": "FAIL", "unresolved": "inconclusive (within noise of the bound)"}[verdict.status]
    seeds = ", ".join(f"{v:+.3f}" for v in verdict.seed_values)
    noise = f"noise ±{verdict.noise:.3f}" if len(verdict.seed_values) > 1 else "one seed: no noise estimate"
    return (f"steps {steps} ({verdict.name}): worst slope {verdict.value:+.3f}{where}; bound {verdict.bound:g}; "
            f"seeds {seeds}, {noise}: {status}")


def _assert_coord_verdicts(result: CoordCheckResult, verdicts: Sequence[CoordVerdict],
                           expected_at_init: Sequence[float | None], model: Mapping[str, Any]) -> CoordCheckResult:
    """Fail when a verdict fails (a dead layer fails too); the message has one line per verdict."""
    failed = [v for v in verdicts if v.status == "fail"]
    if not failed:
        return _no_dead_layers(result, "coordinate check failed: a layer never moves off 0")
    verdict = failed[0]
    columns = np.isin(np.asarray(result.steps), verdict.steps)
    predicted = np.array([np.nan if e is None else e for e in expected_at_init], dtype=float)[:, None]
    at_init = ~np.isnan(predicted) & (np.asarray(result.steps) == 0)[None, :]
    signed = np.where(at_init, np.abs(result.slopes - np.nan_to_num(predicted)), result.slopes)
    failing = np.where(np.isnan(signed), False, signed > verdict.bound) & columns[None, :]
    layer, step = verdict.worst or (result.layers[0], result.steps[0])
    headers, rows, _, _ = _coord_table(result, (result.layers.index(layer), result.steps.index(step)))
    facts = [f"widths {', '.join(_num(w) for w in result.widths)}", *map(verdict_line, verdicts), *_zero_facts(result),
             _first_to_grow(result, failing), *model_facts(dict(model))]
    span = f"steps {verdicts[0].steps[0]}-{verdicts[0].steps[-1]}"
    title = (f"coordinate check failed: the parametrization scales with width ({span})" if verdict is verdicts[0] else
             f"coordinate check failed: activations grow with width in training (the parametrization, {span}, "
             "passes)")
    _fail(title, headers, rows, facts, _coord_hint(result, failing, model, expected_at_init))


def _first_to_grow(result: CoordCheckResult, failing: np.ndarray) -> str:
    """Growth spreads from where it starts, forwards through the layers and, via the gradients, backwards over the
    next steps: the likeliest cause is the first failing layer (forward order) at the earliest failing step."""
    earliest = int(np.flatnonzero(failing.any(axis=0))[0])
    first = int(np.flatnonzero(failing[:, earliest])[0])
    return f"the first to grow: {result.layers[first]} at step {result.steps[earliest]}"


def _coord_hint(result: CoordCheckResult, failing: np.ndarray, model: Mapping[str, Any],
                expected_at_init: Sequence[float | None] = ()) -> str:
    """What the first failing cell suggests, asking only about causes the model reading did not rule out."""
    earliest = int(np.flatnonzero(failing.any(axis=0))[0])
    first = int(np.flatnonzero(failing[:, earliest])[0])
    layer, step = result.layers[first], result.steps[earliest]
    predicted = expected_at_init[first] if step == 0 and first < len(expected_at_init) else None
    slope = result.slopes[first, earliest] - (predicted or 0.0)
    hidden_ok = lr_rule(dict(model), "hidden") == "η/m"
    hidden_ask = [] if hidden_ok else ["is the hidden-layer LR scaled by 1/m?"]
    checked = "; hidden LR η/m as read from the optimizer, so not that" if hidden_ok else ""
    if layer.endswith(" (attention logits)") and step == 0 and predicted:
        seen = (f"{layer} at init: slope {result.slopes[first, earliest]:+.2f} where μP's 1/d_head gives "
                f"{predicted:+.2f} for independent q and k (the head size grows with width)")
        asks, checked = ["are attention logits scaled by 1/d_head (μP), not 1/sqrt(d_head)?"], ""
    elif slope < 0:
        seen = f"{layer} shrinks with width at step {step}"
        asks = ["is its init std independent of width (an input layer's is 1, not 1/√width)?"] if step == 0 else \
            ["is an LR or multiplier scaled down twice?"]
    elif step == 0:
        seen, asks = "activations already scale with width at initialisation", [
            "is the init variance 1/fan_in (1/fan_in² or zero for the readout)?"]
    elif first == len(result.layers) - 1:
        readout_checked, asks = _mup_lr_questions(model)
        seen, asks, checked = "the output layer grows with width first" + readout_checked, asks[-1:], ""
        if (layer, result.steps[0]) in result.zero_cells:  # exactly 0 at init: its init is not the cause
            seen += "; the readout is exactly 0 at init"
            asks = (["does a multiplier between the last layer and the logits grow with width?"]
                    if lr_rule(dict(model), "output") == "η/m" else
                    ["is the readout multiplied by 1/m in the forward pass (or its LR η/m)?"])
    elif "attn" in layer or "attention" in layer:
        seen = f"attention grows with width first, at {layer}"
        asks = ["are attention logits scaled by 1/d_head (μP), not 1/sqrt(d_head)?", *hidden_ask]
    else:
        seen = f"hidden activations grow with width first, at {layer}"
        asks = hidden_ask or [f"does a multiplier or a normalisation inside {layer}'s path change with width?"]
    return _hint(seen + checked, " ".join(asks))


def _coord_table(result: CoordCheckResult, worst: tuple) -> tuple[list[str], list[list[str]], str, int]:
    """The slope table of a coordinate check (one row per layer, one column per step; cells exactly 0 at some width
    read "0 (exact)") and its worst cell's layer and step."""
    headers = ["layer", *(f"t={t}" for t in result.steps), "max |slope|"]
    rows = [[name, *(f"{s:+.3f}" if ok else "0 (exact)" for s, ok in zip(slopes, measured)),
             f"{np.max(np.abs(slopes[measured])):.3f}" if measured.any() else "—"]
            for name, slopes, measured in zip(result.layers, result.slopes, result.measured)]
    return headers, rows, result.layers[worst[0]], result.steps[int(worst[1])]


def _zero_facts(result: CoordCheckResult) -> list[str]:
    """Fact lines naming the cells left out for a size of exactly 0, and the layers exactly 0 throughout."""
    dead = result.dead_layers
    cells = [f"{layer} at t={step}" for layer, step in result.zero_cells if layer not in dead]
    return ([f"exactly 0 at some width, so no slope: {', '.join(cells)}"] if cells else []) + (
        [f"exactly 0 at every step (dead: never moved, never checked): {', '.join(dead)}"] if dead else [])


def _no_dead_layers(result: CoordCheckResult, title: str) -> CoordCheckResult:
    """A coordinate check whose measured cells passed still fails when a layer is exactly 0 in every cell."""
    if not result.dead_layers:
        return result
    headers, rows, _, _ = _coord_table(result, (0, 0))
    _fail(title, headers, rows, _zero_facts(result),
          "a layer that stays exactly 0 gets no update: is it zero-initialised together with the layer it multiplies "
          "(query and key both 0, or a zero readout with a zero layer before it), or frozen (LR 0)?")


def assert_depth_coord_check(result: CoordCheckResult, *, max_abs_slope: float = 0.3) -> CoordCheckResult:
    """The residual stream the readout reads must not scale with depth at init (|slope of log size on log depth| ≤
    max_abs_slope) nor grow with depth in training (slope ≤ max_abs_slope at every later step).

    ``result`` comes from ``coord_slopes`` with depths in place of widths, one row per width. Growth at step 0 is
    the branches adding up at initialisation (no 1/√L), growth after it their updates adding up (no depth scaling
    of the blocks' LR). After step 0 a stream that shrinks with depth is not a Depth-μP mistake: a shallow model's
    blocks move more on their own (their interactions within a block are Depth-μP's finite-depth correction), so at
    a large LR its stream grows faster than a deep one's (docs/design.md, "Depth coordinate check"). Cells exactly 0
    at some depth are skipped and a stream exactly 0 at every step fails, as in ``assert_coord_check``.
    """
    value, worst = depth_coord_excess(result)
    if worst is None or value <= max_abs_slope:
        return _no_dead_layers(result, "depth coordinate check failed: the residual stream is exactly 0 throughout")
    cell = (result.layers.index(worst[0]), result.steps.index(worst[1]))
    slope = float(result.slopes[cell])
    headers, rows, layer, step = _coord_table(result, cell)
    facts = [f"depths {', '.join(_num(d) for d in result.widths)}; worst: {layer} at step {step}, "
             f"slope {slope:+.3f}; threshold |slope| ≤ {max_abs_slope} at step 0, slope ≤ {max_abs_slope} after it",
             *_zero_facts(result)]
    if step == 0 and slope > 0:
        hint = _hint("the residual branches add up at initialisation",
                     "is each branch scaled by 1/√L (families.gpt(residual_scale='1/sqrt(L)'))?")
    elif slope > 0:
        hint = _hint("the blocks' updates add up over depth", "is each residual branch scaled by 1/√L and the "
                     "blocks' LR by (L / L_base)^-1/2 (Depth-μP: families.gpt(residual_scale='depth-mup'), "
                     "parametrization.with_depth_lr)?")
    else:
        hint = _hint("the residual stream shrinks with depth at initialisation",
                     "is a branch multiplier scaled down twice (1/L where Depth-μP has 1/√L)?")
    _fail("depth coordinate check failed: the residual stream scales with depth", headers, rows, facts, hint)


def _assert_curve_transfer(result: CurveShiftResult, *, size_name: str, context: str, max_abs_slope: float,
                           hint_falls: str, hint_rises: str, seen_falls: str = "") -> CurveShiftResult:
    """|slope of the loss-vs-LR curve's log2-LR shift on log2 size| ≤ max_abs_slope, with a table of the shifts."""
    if abs(result.slope) <= max_abs_slope:
        return result
    rows = [[_num(size), f"{mean:+.2f}", ", ".join(f"{v:+.2f}" for v in per_seed)]
            for size, mean, per_seed in zip(result.sizes, result.mean_shift, result.shift)]
    facts = [f"{context}slope of the curve's shift (log2 LR) on log2 {size_name} {result.slope:+.3f}; "
             f"threshold |slope| ≤ {max_abs_slope}"]
    _fail(f"LR transfer across {size_name} failed: the loss-vs-LR curve moves with {size_name}",
          [size_name, "shift (log2 LR, mean)", "shift per seed"], rows, facts,
          _hint(f"the optimal LR falls as {size_name} grows{seen_falls}", hint_falls) if result.slope < 0 else
          _hint(f"the optimal LR rises as {size_name} grows", hint_rises))


def assert_lr_curve_transfer(result: CurveShiftResult, *, max_abs_slope: float,
                             model: Mapping[str, Any] | None = None) -> CurveShiftResult:
    """The loss-vs-LR curve must not move along the LR axis with width: |slope of its log2-LR shift on log2 width| ≤
    max_abs_slope. The shift uses the whole curve (``metrics.curve_shift``), since the top of a curve is often flat.
    ``model`` (``model_facts.read_model``) keeps the hint from asking about what it read."""
    checked, asks = _mup_lr_questions(model)
    return _assert_curve_transfer(
        result, size_name="width", context="", max_abs_slope=max_abs_slope, seen_falls=checked,
        hint_falls=" ".join(asks),
        hint_rises="is a layer's LR or init scaled down twice?")


def assert_depth_lr_transfer(result: CurveShiftResult, *, width: float, max_abs_slope: float) -> CurveShiftResult:
    """The loss-vs-LR curve must not move along the LR axis with depth: |slope of its log2-LR shift on log2 depth| ≤
    max_abs_slope. The shift uses the whole curve (``metrics.curve_shift``), since the top of a curve is often flat."""
    return _assert_curve_transfer(
        result, size_name="depth", context=f"width {_num(width)}: ", max_abs_slope=max_abs_slope,
        hint_falls="do the blocks' updates add up: are the blocks' LR scaled by (L / L_base)^-1/2 with 1/√L "
                   "branches (Depth-μP: families.gpt(residual_scale='depth-mup'))?",
        hint_rises="is the blocks' LR or their branch multiplier scaled down twice?")


def _fit_summary(fit: PowerLawFit) -> str:
    parts = [f"{name}={getattr(fit, name):.4g}" + (f" [{fit.ci[name][0]:.4g}, {fit.ci[name][1]:.4g}]" if name in fit.ci else "")
             for name in PowerLawFit.PARAMS if name != "E" or fit.fit_E]
    law = "E + A·x^-alpha" if fit.fit_E else "A·x^-alpha"
    return f"fit L = {law} on {fit.n} points: " + ", ".join(parts) + f", R² (log) = {fit.r2:.4f}"


def assert_power_law(fit: PowerLawFit, *, min_r2: float = 0.98,
                     alpha_range: tuple[float, float] | None = None) -> PowerLawFit:
    """The losses must follow the power law: R² in log space ≥ min_r2 and, if given, α within alpha_range.

    0.98 leaves room for ~1% seed noise on a few points spanning a 2-3× loss range.
    """
    r2_ok = bool(fit.r2 >= min_r2)  # NaN fails
    alpha_ok = alpha_range is None or alpha_range[0] <= fit.alpha <= alpha_range[1]
    if r2_ok and alpha_ok:
        return fit
    rows = [[_num(x), _num(y), _num(float(fit.predict(x))), f"{r:+.4f}"] for x, y, r in zip(fit.x, fit.y, fit.residuals)]
    facts = [_fit_summary(fit), f"threshold: R² ≥ {min_r2}" + (f", alpha in {list(alpha_range)}" if alpha_range else "")]
    hint = (_hint("the losses bend away from a power law", "is each size's loss its best-LR loss (Metz), are the "
                  "smallest sizes in the power-law regime, and did every size train equally long?") if not r2_ok else
            _hint("the exponent is outside the expected range", "what does x measure (parameters, width, compute)?"))
    _fail("power law check failed", ["x", "L", "fitted", "log residual"], rows, facts, hint)


def assert_extrapolation(result: ExtrapolationResult, *, rtol: float = 0.01, require_in_band: bool = False) -> ExtrapolationResult:
    """The fit must predict the held-out largest sizes: no point may miss by more than rtol (relative error) *and* by
    more than n_sigma of its noise (``ExtrapolationResult.excess``), and (require_in_band) every held-out point must lie
    inside the bootstrap band.

    Both, because an observation is itself noisy: on a task whose seed-to-seed spread at the largest size exceeds rtol,
    a miss within that spread says nothing against the law. The default is the cpu tier's ``max_rel_error``.
    """
    excess = result.excess(rtol)
    off_band = require_in_band and (result.in_band is None or not bool(np.all(result.in_band)))
    if not (np.any(excess > 1) or off_band):
        return result
    rows = []
    for k, (x, y, p, rel) in enumerate(zip(result.x_holdout, result.y_holdout, result.predicted, result.rel_errors)):
        band = "—" if result.band_lo is None else f"[{result.band_lo[k]:.4g}, {result.band_hi[k]:.4g}]"
        inside = "—" if result.in_band is None else ("yes" if result.in_band[k] else "no")
        z = "—" if result.z_scores is None else f"{result.z_scores[k]:+.1f}"
        rows.append([_num(x), _num(y), _num(p), f"{rel:+.2%}", band, inside, z])
    facts = [_fit_summary(result.fit),
             f"max |relative error| {result.max_rel_error:.2%}; a point fails beyond {rtol:.2%} and beyond "
             f"{result.n_sigma:g}σ of its observed loss's seed noise; z counts the fit's own spread too"]
    hint = _hint("the held-out sizes leave the fitted curve", "is each size's loss its best-LR loss (at a fixed LR, "
                 "SP drifts off), and did the largest sizes train as long relative to their size?")
    _fail("extrapolation check failed: the power law does not predict the held-out sizes",
          ["x", "observed", "predicted", "rel. error", "95% band", "in band", "z (σ)"], rows, facts, hint)


def assert_lr_sensitivity(values_or_result: SensitivityResult | float | Sequence[float], *, max_value: float | None = 0.1,
                          max_growth_per_doubling: float | None = None,
                          lower_than: SensitivityResult | None = None) -> SensitivityResult | float | Sequence[float]:
    """LR sensitivity S (Wortsman et al.) must be ≤ max_value at every size; optionally grow by at most
    max_growth_per_doubling per doubling of size, and be lower than a reference variant's at every size.

    0.1 sits between the measured 0.03 (μP GPT with qk-layernorm) and 0.3-0.44 without it (DESIGN §5);
    it is in loss units, so recalibrate for other tasks.
    """
    if isinstance(values_or_result, SensitivityResult):
        res = values_or_result
        labels, means, per_seed = [_num(z) for z in res.sizes], res.mean, res.values
        size_header, growth, name = res.size_name, res.growth_per_doubling, res.label
    else:
        means = np.atleast_1d(np.asarray(values_or_result, dtype=float))
        labels, per_seed, size_header, growth, name = [str(i) for i in range(means.size)], means[:, None], "#", None, "S"
        if max_growth_per_doubling is not None or lower_than is not None:
            raise ValueError("growth and comparison checks need a SensitivityResult (sizes), not bare values")
    problems = []
    if max_value is not None and not np.all(means <= max_value):
        problems.append(f"{name} exceeds {max_value} (max {np.max(means):.4g})")
    if max_growth_per_doubling is not None and growth is not None and growth > max_growth_per_doubling:
        problems.append(f"{name} grows {growth:.4g} per doubling of {size_header} > {max_growth_per_doubling}")
    if lower_than is not None:
        if lower_than.sizes.shape != res.sizes.shape or not np.allclose(lower_than.sizes, res.sizes):
            raise ValueError("lower_than must cover the same sizes")
        if not np.all(means < lower_than.mean):
            problems.append(f"{name} is not lower than the reference variant at every size")
    if not problems:
        return values_or_result
    headers = [size_header, f"{name} (mean)", f"{name} per seed"] + ([f"reference {name}"] if lower_than is not None else [])
    rows = [[label, _num(m), ", ".join(_num(v) for v in per_seed[i])]
            + ([_num(lower_than.mean[i])] if lower_than is not None else [])
            for i, (label, m) in enumerate(zip(labels, means))]
    facts = problems + ([f"growth per doubling of {size_header}: {growth:.4g}"] if growth is not None else [])
    hint = _hint("the loss is sensitive to the LR (see the loss-vs-LR curves for diverged runs)",
                 "does the model lack qk-layernorm or z-loss, or scale a layer's LR wrongly?")
    _fail("LR sensitivity check failed", headers, rows, facts, hint)


def assert_no_logit_divergence(trends: LogitTrend | Mapping[str, LogitTrend] | Sequence[LogitTrend], *,
                               allow_growth: bool = False,
                               drift_fails: bool = True) -> LogitTrend | Mapping[str, LogitTrend] | Sequence[LogitTrend]:
    """No series may diverge (non-finite or past its cap), drift (|value| in the second half too far above its start;
    unless ``drift_fails`` is False: something pulls it back) nor, unless allow_growth, keep growing through the
    second half."""
    named = (trends.items() if isinstance(trends, Mapping) else
             [("series", trends)] if isinstance(trends, LogitTrend) else
             [(f"series {i}", t) for i, t in enumerate(trends)])
    named = list(named)
    bad = [name for name, t in named if t.diverged or (t.drifted and drift_fails) or (t.growing and not allow_growth)]
    if not bad:
        return trends
    rows = [[name, _num(t.final), _num(t.max_abs), _num(t.drift), _num(t.mid), _num(t.rise),
             "DIVERGED" if t.diverged else ("DRIFTED" if t.drifted and drift_fails else
                                            ("growing" if t.growing else "drifted, held" if t.drifted else "ok"))]
            for name, t in named]
    facts = [f"failing: {', '.join(bad)}" + ("" if allow_growth else "; sustained growth counts as failure")]
    hint = _hint("logits grow without bound or log Z drifts from 0 with nothing in the objective to pull it back",
                 "does the model lack qk-layernorm (it bounds the attention logits) or a z-loss (nothing else in "
                 "cross-entropy holds log Z)?")
    _fail("logit divergence", ["series", "final", "max |value|", "drift (2nd half)", "mid-run", "rise (2nd half)",
                               "status"], rows, facts, hint)


def assert_wider_is_better(result: WidthTrend, *, rtol: float = 0.01, model: Mapping[str, Any] | None = None) -> WidthTrend:
    """At a fixed LR the loss must not rise with width by more than rtol (relative) between any narrower and wider model.

    1% allows seed noise in a mean over a few seeds; calibrate per tier.
    """
    if result.max_rel_increase <= rtol:
        return result
    best_before = np.minimum.accumulate(result.mean_loss)
    rows = [[_num(w), _num(loss), "—" if i == 0 else f"{(loss - best_before[i - 1]) / abs(best_before[i - 1]):+.2%}"]
            for i, (w, loss) in enumerate(zip(result.widths, result.mean_loss))]
    assert result.worst_pair is not None  # a relative rise above rtol >= 0 has a pair
    i, j = result.worst_pair
    facts = [f"worst: width {_num(result.widths[j])} is {result.max_rel_increase:.2%} above width {_num(result.widths[i])}; "
             f"threshold ≤ {rtol:.2%}; slope {_num(result.slope_per_doubling)} per doubling"]
    checked, asks = _mup_lr_questions(model)
    hint = _hint("wider is worse at a fixed LR: the optimum drifts with width" + checked, " ".join(asks))
    _fail("wider is not better", ["width", "loss", "vs best narrower"], rows, facts, hint)


def assert_adam_epsilon(result: EpsilonResult, *, max_frac_below_eps: float = 0.25, min_rms_ratio: float = 10.0) -> EpsilonResult:
    """At the largest width, for every layer and LR, Adam's ε must stay out of the update m̂/(√v̂ + ε): at most
    max_frac_below_eps of the coordinates may have √v̂ < ε, and the RMS of √v̂ must be ≥ min_rms_ratio·ε.

    Gradient RMS falls with width (Everett et al.), so the largest width is asserted and a ratio of 10
    keeps a decade of headroom for wider runs. The fraction counts coordinates whose gradient is exactly
    zero too (columns fed by dead ReLU units: up to 5% of an MLP hidden layer, measured), hence 0.25, not 0. Cells
    without a probed run (diverged) are not asserted.
    """
    frac, ratio = result.frac_below_eps[:, -1, :], result.rms_ratio[:, -1, :]
    too_many, too_close = frac > max_frac_below_eps, ratio < min_rms_ratio  # NaN compares False: not asserted
    if not np.any(too_many | too_close):
        return result
    width, failing = result.widths[-1], np.any(too_many | too_close, axis=1)
    rows = []
    for i in sorted(range(len(result.layers)), key=lambda i: not failing[i]):
        j = int(np.lexsort((-np.nan_to_num(ratio[i], nan=np.inf), np.nan_to_num(frac[i], nan=-1.0)))[-1])  # worst LR
        status = ", ".join(why for why, bad in (("fraction", too_many[i, j]), ("RMS/ε", too_close[i, j])) if bad) or "ok"
        rows.append([result.layers[i], _num(result.sqrt_v_rms[i, -1, j]), _num(result.eps[i]), _num(ratio[i, j]),
                     _num(frac[i, j]), _num(width), _num(result.lrs[j]), status])
    slope = np.nanmedian(result.rms_slope) if np.any(np.isfinite(result.rms_slope)) else np.nan
    facts = [f"width {_num(width)}: {int(failing.sum())} of {len(result.layers)} layers fail at some LR of "
             f"{', '.join(_num(lr) for lr in result.lrs)} (each row: the layer's worst LR)",
             f"threshold: fraction of coordinates with √v̂ < ε ≤ {max_frac_below_eps}, RMS of √v̂ ≥ {min_rms_ratio:g}·ε",
             f"slope of log2 RMS of √v̂ per doubling of width: {_num(slope)} (median over layers, widths "
             f"{', '.join(_num(w) for w in result.widths)}; negative: wider runs sit closer to ε)"]
    hint = _hint("ε is within reach of the gradients' size, so it shrinks the updates", "would an ε well below the "
                 "smallest RMS of √v̂ in the table, or pytest_scaling.optim.AdamAtan2 (no ε), fix it?")
    _fail("Adam epsilon check failed: ε is not small against the gradients",
          ["layer", "√v̂ RMS", "ε", "√v̂ RMS / ε", "fraction √v̂ < ε", "width", "lr", "fails on"], rows, facts, hint)


def assert_weight_decay(result: DecayTimescales, *, max_abs_slope: float = 0.5) -> DecayTimescales:
    """Each decayed parameter's timescale τ = 1/(fraction removed a step) may change with width by at most
    ``max_abs_slope`` per doubling (log2 τ on log2 width). 0.5 sits halfway between a decay independent of the LR (0)
    and one coupled to a μP hidden LR that falls as 1/m (+1); a parameter decayed at some widths only fails."""
    worst = result.max_abs_slope
    if worst is None or worst <= max_abs_slope:
        return result
    order = sorted(range(len(result.names)), key=lambda i: -abs(result.slopes[i]))
    failing = [i for i in order if abs(result.slopes[i]) > max_abs_slope]
    rows = [[result.names[i], *(_num(t) for t in result.timescale[i]), f"{result.slopes[i]:+.2f}"]
            for i in order[:max(len(failing), 3)][:12]]
    facts = [f"{len(failing)} of {len(result.names)} decayed parameters change timescale with width at LR "
             f"{_num(result.lr)} (rows: the largest |slope| first, at most 12); threshold |slope| ≤ {max_abs_slope}",
             "τ: steps over which weight decay alone shrinks a parameter by a factor e (∞: not decayed)"]
    hint = _hint("the decay's timescale follows the width-scaled LR", "is the decay coupled to the LR (torch "
                 "AdamW's weight_decay multiplies the group's LR)? weight_decay = λ / group_lr makes lr·weight_decay "
                 "the same at every width")
    _fail("weight decay's timescale changes with width", ["parameter", *(f"τ at {_num(w)}" for w in result.widths),
                                                            "slope"], rows, facts, hint)


def assert_depth_sensitivity(sensitivity: SensitivityResult, optimum: TransferResult, *, width: float,
                             max_growth_per_doubling: float) -> SensitivityResult:
    """LR sensitivity over depths (one width) may grow by at most max_growth_per_doubling per doubling of depth.

    ``optimum`` (η* per depth) is evidence only: without depth scaling of the LR, η* falls with depth either way.
    """
    growth = sensitivity.growth_per_doubling
    if growth is None or growth <= max_growth_per_doubling:
        return sensitivity
    rows = [[_num(depth), _num(s), "—" if np.isnan(eta) else f"{eta:.2f}",
             ", ".join("edge" if np.isnan(v) else f"{v:.2f}" for v in optimum.log2_lr_opt[i])]
            for i, (depth, s, eta) in enumerate(zip(sensitivity.sizes, sensitivity.mean, optimum.mean_log2_lr))]
    slope = "—" if optimum.slope is None else f"{optimum.slope:.3f}"
    facts = [f"width {_num(width)}: S grows {growth:.4g} per doubling of depth; threshold ≤ {max_growth_per_doubling}",
             f"slope of log2 η* on log2 depth: {slope}"]
    hint = _hint("deep stacks lose the high LRs (see the deepest model's loss-vs-LR curve)", "is each residual "
                 "branch scaled by 1/√L and the blocks' LR by L^-1/2 (Depth-μP; families.gpt(residual_scale='depth-mup'))?")
    _fail("depth check failed: LR sensitivity grows with depth", ["depth", "S", "η* (log2, mean)", "η* (log2) per seed"],
          rows, facts, hint)
