"""The property registry: one entry per scaling property the suite asserts (DESIGN.md §1b).

An entry names the property (the record name's prefix, the marker's ``property=``, the packaged suite's test
``test_<name>``), says what it asserts in one line, which way a change of its recorded value is *worse* (what a
baseline comparison flags), which tier grid it runs on, the library check that runs it, and what it needs from a
family (a depth factory). Checks record through :meth:`Property.record`, so a record carries the property's
direction and the seed-to-seed noise of its value, which is what a baseline judges a change against.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Worse = Literal["higher", "higher_abs"]
#: "higher": a larger value is worse, for values that are errors or bounded-above quantities (S, 1 − R², a relative
#: error) and for signed growth (a coordinate slope, the growth of S with depth: falling is fine).
#: "higher_abs": a value farther from 0 either way is worse (an LR-transfer slope: drifting up or down both break it).
WORSE: tuple[str, ...] = ("higher", "higher_abs")


#: A verdict within this many standard errors of its threshold is not decided (docs/design.md, "Calibration").
NOISE_SIGMAS = 2.0


def seed_noise(seed_values: Sequence[float | None] | None) -> float | None:
    """The standard error of a value measured on these seeds: the sample std of the per-seed values over √n.

    None with fewer than two finite per-seed values: one seed measures no noise."""
    finite = [float(v) for v in seed_values or () if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return None
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    return std / math.sqrt(len(finite))


@dataclass(frozen=True)
class Property:
    """One scaling property: how it is named, judged, run and recorded.

    ``grid`` is the attribute of :class:`pytest_scaling.tiers.Tier` holding its grid (None on a tier: not asserted
    there); ``check`` the library function in ``pytest_scaling.checks`` that runs it, called as
    ``check(scaling, family)``; ``needs_depth``: it sweeps depths through the family's ``at_depth``;
    ``interventions``: the known fixes (``pytest_scaling.interventions``) a diagnosis tries when it fails, most likely first.
    ``measures``: what it is asserted on, in words, and ``fails_when(grid)``: its failure condition with a tier grid's
    numbers; the README's suite and threshold tables are generated from them (``pytest_scaling.readme_tables``).
    ``judges_own_noise``: its check decides a value within noise of its threshold itself (adding seeds), so
    ``within_noise`` leaves it alone; ``seed_spread_is_noise`` False: its per-seed values are another estimator
    than its value (a fit to one seed's curve against the fit to the seed mean), so their spread is not its noise.
    """

    name: str
    summary: str
    worse: Worse
    grid: str
    check: str
    needs_depth: bool = False
    in_suite: bool = True
    interventions: tuple[str, ...] = ()
    judges_own_noise: bool = False
    seed_spread_is_noise: bool = True
    measures: str = ""
    fails_when: Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        if self.worse not in WORSE:
            raise ValueError(f"property {self.name!r}: worse must be one of {WORSE}, got {self.worse!r}")

    def record_name(self, family: str) -> str:
        """The record's name in reports and baselines: ``property[family]``."""
        return f"{self.name}[{family}]"

    def run(self, scaling: Any, family: Any, grid: Any = None) -> Any:
        """Run the property's check on ``family`` with ``grid``, or the tier's grid when None."""
        return getattr(importlib.import_module("pytest_scaling.checks"), self.check)(scaling, family, grid)

    def within_noise(self, record: dict[str, Any], sigmas: float = NOISE_SIGMAS) -> str | None:
        """Why a recorded verdict is a coin flip: its value within ``sigmas`` standard errors of its seeds (the
        record's ``noise``) of its threshold, in one line; None when it is decided (or has no noise estimate)."""
        value, threshold, noise = record.get("value"), record.get("threshold"), record.get("noise")
        if self.judges_own_noise or not self.seed_spread_is_noise or value is None or threshold is None or not noise:
            return None
        judged = abs(value) if self.worse == "higher_abs" else value
        if abs(judged - threshold) > sigmas * noise:
            return None
        seeds = ", ".join("—" if v is None else f"{v:.4g}" for v in record.get("seed_values") or ())
        return (f"inconclusive: within noise of the threshold: {self.name} {value:.4g} ± {noise:.2g} (standard error "
                f"over seeds: {seeds}) against {threshold:g}; more seeds (--scaling-seeds) would decide it")

    def record(self, scaling: Any, family: str, *, value: float | None, threshold: float | None,
               seed_values: Sequence[float | None] | None = None, ci: Sequence[float] | None = None,
               **data: Any) -> None:
        """Record the property's verdict evidence on ``scaling``: its value, threshold, the value measured on each
        seed alone (``seed_values``, from which its noise is estimated) and the plot data."""
        per_seed = None if seed_values is None else [_finite_or_none(v) for v in seed_values]
        scaling.record(self.record_name(family), property=self.name, family=family, value=_finite_or_none(value),
                       threshold=threshold, ci=None if ci is None else [float(c) for c in ci], worse=self.worse,
                       seed_values=per_seed, noise=seed_noise(per_seed), **data)


def _finite_or_none(value: float | None) -> float | None:
    """A float for JSON, None for a missing or non-finite value (a diverged run's +inf reads as no value)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _properties(*entries: Property) -> dict[str, Property]:
    return {entry.name: entry for entry in entries}


#: What a failure of each kind of property is diagnosed with, most likely cause first.
_MUP_FIXES = ("zero_readout", "readout_multiplier", "mup_hidden_lr", "attention_1_over_d")
_LAW_FIXES = ("zero_readout", "readout_multiplier", "mup_hidden_lr")
_STABILITY_FIXES = ("qk_layernorm", "z_loss", "attention_1_over_d", "readout_multiplier")
_DEPTH_FIXES = ("residual_1_over_sqrt_depth",)
#: The depth property is LR sensitivity across depths: the stability fixes can restore it too.
_DEPTH_SENSITIVITY_FIXES = (*_DEPTH_FIXES, "qk_layernorm", "z_loss")

PROPERTIES: dict[str, Property] = _properties(
    Property("coord_check", "no layer's activation size grows with width in the first Adam steps", "higher",
             grid="coord_check", check="coord_check", interventions=_MUP_FIXES, judges_own_noise=True,
             measures="every parameterised layer's mean |output| (the readout's after any multiplier written after "
                      "it; the logits as their own row when no module makes them) and each attention module's mean "
                      "|logit|, one run per width at the anchor LR, sizes averaged over the seeds; two verdicts, each "
                      "on its own line (docs/design.md, \"Coordinate check\")",
             fails_when=lambda g: (f"*parametrization* (steps 0 to every layer's first update): a layer grows with width "
                                   f"(log-log slope > {g.max_abs_slope:g}), or at step 0 a layer μP keeps Θ(1) shrinks "
                                   f"(slope < −{g.max_abs_slope:g}); *training dynamics* (the later steps): a layer "
                                   f"grows through every one of them (slope > {g.later_bound:g})")),
    Property("lr_curve_transfer", "the loss-vs-LR curve does not move along the LR axis as width grows", "higher_abs",
             grid="curve_transfer", check="lr_curve_transfer", interventions=_MUP_FIXES,
             measures="the seed-mean loss-vs-LR curve per width (Adam at a constant LR): its log2-LR shift from the "
                      "narrowest width's, fitted on both flanks (`metrics.curve_shift`); η* per width recorded",
             fails_when=lambda g: f"|slope of the shift on log2 width| > {g.max_abs_slope:g}"),
    Property("lr_transfer", "the optimal LR (η*) does not drift with width", "higher_abs",
             grid="lr_transfer", check="lr_transfer", in_suite=False, interventions=_MUP_FIXES,
             measures="the optimal LR η* per width, fitted to the seed-mean loss-vs-LR curve",
             fails_when=lambda g: f"|slope of log2 η* on log2 width| > {g.max_abs_slope:g}"),
    Property("wider_is_better", "at the LR tuned at the narrowest width, loss does not rise with width", "higher",
             grid="curve_transfer", check="wider_is_better", interventions=_MUP_FIXES,
             measures="the same sweep as `lr_curve_transfer`, at the LR tuned at the narrowest width",
             fails_when=lambda g: f"a wider model is more than {g.wider_rtol:.0%} worse"),
    Property("power_law", "the best-LR loss follows E + A·N^-α across widths", "higher",
             grid="power_law", check="power_law", interventions=_LAW_FIXES, seed_spread_is_noise=False,
             measures="the best-LR loss per width against N (non-input parameters), fitted as E + A·N^-α in log space",
             fails_when=lambda g: f"R² (log) < {g.min_r2:g} (recorded as 1 − R²)"),
    Property("extrapolation", "a power law fitted without the largest width predicts it", "higher",
             grid="power_law", check="extrapolates", interventions=_LAW_FIXES, seed_spread_is_noise=False,
             measures="the same law fitted without the largest width, predicting it",
             fails_when=lambda g: (f"it misses by more than {g.max_rel_error:.0%} *and* by more than {g.n_sigma:g}σ of "
                                   "the held-out loss's own seed noise; recorded as the excess over both bounds "
                                   "(1 = at them)")),
    Property("lr_sensitivity", "LR sensitivity (Wortsman et al.) stays bounded at every width", "higher",
             grid="stability", check="lr_sensitivity", interventions=_STABILITY_FIXES[:3],
             measures="LR sensitivity S (Wortsman et al.) per width under their recipe (AdamW β (0.9, 0.95), warmup "
                      "+ cosine, clip 1, independent weight decay), as a fraction of the curve's depth L0 − L*, which "
                      "carries across tasks",
             fails_when=lambda g: (f"S / (L0 − L*) > {g.max_sensitivity:g} at any width" if g.relative_sensitivity
                                   else f"S > {g.max_sensitivity:g} at any width")),
    Property("qk_layernorm_lowers_sensitivity", "qk-layernorm lowers LR sensitivity at every width", "higher",
             grid="stability", check="qk_layernorm_lowers_sensitivity", in_suite=False,
             measures="LR sensitivity of the family with and without qk-layernorm"),
    Property("no_logit_divergence", "attention and output logits neither diverge nor drift up to the top LR", "higher",
             grid="stability", check="no_logit_divergence", interventions=_STABILITY_FIXES,
             measures="the same runs as `lr_sensitivity`: max attention logit and |log Z| per probe step",
             fails_when=lambda g: (f"either passes its cap ({g.attention_logit_cap:g}, {g.log_z_cap:g}) or stops being "
                                   f"finite; or |log Z| drifts in the second half more than "
                                   f"{g.max_log_z_drift:g} nats above its start with nothing in the objective to pull "
                                   "it back (`objective.log_z_pull`); *inconclusive* at this budget: that drift under "
                                   "a z-loss, or a series still growing below its cap")),
    Property("adam_epsilon", "Adam's ε stays small against every layer's gradients at the largest width", "higher",
             grid="adam_epsilon", check="adam_epsilon", interventions=("lower_eps",),
             measures="per layer, late in training at the largest width: the RMS of √v̂ (Adam's denominator) against "
                      "its ε, and the fraction of coordinates with √v̂ < ε (a parameter the loss does not depend on, "
                      "such as a key's LayerNorm bias, is listed, not asserted)",
             fails_when=lambda g: (f"RMS of √v̂ < {g.min_rms_ratio:g}·ε or more than {g.max_frac_below_eps:.0%} of "
                                   "coordinates under ε; recorded as the largest fraction of a bound used")),
    Property("weight_decay", "weight decay forgets over the same number of steps (1/(ηλ)) at every width", "higher",
             grid="weight_decay", check="weight_decay", interventions=("decay_at_base_lr",),
             measures="per parameter, the fraction one step of the family's optimizer removes with every gradient "
                      "zero (parameters set to 1), at the anchor LR: weight decay's timescale τ = 1/(ηλ) in steps; "
                      "no training",
             fails_when=lambda g: (f"|slope of log τ on log width| > {g.max_abs_slope:g} for any parameter "
                                   "(torch AdamW's `weight_decay` on a μP hidden LR: +1)")),
    Property("depth_coord_check", "the residual stream's size does not scale with depth", "higher",
             grid="depth_coord", check="depth_coord_check", needs_depth=True, interventions=_DEPTH_FIXES,
             measures="the residual stream the readout reads (mean |input| of the last norm layer) per depth, "
                      "one run per depth and width at the anchor LR",
             fails_when=lambda g: (f"|slope of log size on log depth| > {g.max_abs_slope:g} at init, or growth > "
                                   f"{g.max_abs_slope:g} per doubling of depth at a later step, at any width")),
    Property("depth_lr_transfer", "the loss-vs-LR curve does not move along the LR axis as depth grows", "higher_abs",
             grid="depth_transfer", check="depth_lr_transfer", needs_depth=True, interventions=_DEPTH_FIXES,
             measures="the loss-vs-LR curve per depth, at the widest width",
             fails_when=lambda g: f"|slope of its shift on log2 depth| > {g.max_abs_slope:g}"),
    Property("depth", "LR sensitivity grows with depth by at most a bound per doubling", "higher",
             grid="depth", check="depth", needs_depth=True, interventions=_DEPTH_SENSITIVITY_FIXES,
             measures="S / (L0 − L*) per depth under the stability recipe",
             fails_when=lambda g: (f"it grows by more than {g.max_growth_per_doubling:g} per doubling of depth at any "
                                   "width")),
)

#: The properties the packaged suite asserts on every family, in the order it runs them.
SUITE: tuple[Property, ...] = tuple(entry for entry in PROPERTIES.values() if entry.in_suite)


def get(name: str) -> Property:
    """The registry entry of a property, by name; a one-line error naming the known ones otherwise."""
    try:
        return PROPERTIES[name]
    except KeyError:
        raise ValueError(f"unknown scaling property {name!r}; known: {', '.join(PROPERTIES)}") from None


def worse_of(property_name: str | None, recorded: Any = None) -> Worse:
    """Which way a record's value is worse: its property's declaration, else what the record says, else |x|."""
    if property_name in PROPERTIES:
        return PROPERTIES[property_name].worse
    return recorded if recorded in WORSE else "higher_abs"
