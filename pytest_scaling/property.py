"""A scaling property's declaration: its name, what it asserts, which way its value is worse, its check, its grid in
each tier, its figure, and how its record carries the seed-to-seed noise a baseline judges a change against.

Each property is one module of ``pytest_scaling.properties`` that declares a :class:`Property`; this module holds
only the type, with no torch or numpy, so that the plugin and the reports load it without training anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: A figure panel: draws one record's data (the record as the report holds it) on the axes it is given.
Panel = Callable[["Axes", dict[str, Any]], None]

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
    """One scaling property: how it is named, judged, run, recorded and drawn; its module in
    ``pytest_scaling.properties`` holds this declaration beside its check (docs/design.md, "The property model").

    ``check``: the library function that runs it, called as ``check(scaling, family, grid)`` (``grid`` None: the
    tier's); ``grids``: its grid in each tier by tier name (a tier without one does not assert it: its budget cannot
    resolve it); ``figure``: the report's panels, each a function drawing a record's data on matplotlib axes and the
    record keys it needs; ``sweeps(scaling, family, grid)``: the sweeps (``sweep.SweepRequest``) its check asks for,
    which the cost plan prices before anything trains (None: it trains nothing); ``needs_depth``: it sweeps depths through the family's ``at_depth``; ``interventions``: the
    known fixes (``pytest_scaling.interventions``) a diagnosis tries when it fails, most likely first.
    ``measures``: what it is asserted on, in words, and ``fails_when(grid)``: its failure condition with a tier grid's
    numbers; the README's suite and threshold tables are generated from them (``pytest_scaling.readme_tables``).
    ``judges_own_noise``: its check decides a value within noise of its threshold itself (adding seeds), so
    ``within_noise`` leaves it alone; ``seed_spread_is_noise`` False: its per-seed values are another estimator
    than its value (a fit to one seed's curve against the fit to the seed mean), so their spread is not its noise.
    """

    name: str
    summary: str
    worse: Worse
    check: Callable[..., Any]
    grids: Mapping[str, Any] = field(default_factory=dict)
    figure: tuple[tuple[Panel, tuple[str, ...]], ...] = ()
    sweeps: Callable[[Any, Any, Any], list[Any]] | None = None
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
        return self.check(scaling, family, grid)

    def grid_in(self, tier: Any) -> Any:
        """Its grid in ``tier`` (a :class:`pytest_scaling.tiers.Tier` or a tier's name); None: not asserted there."""
        return self.grids.get(tier if isinstance(tier, str) else tier.name)

    def not_asserted(self, tier: Any) -> str | None:
        """Why ``tier`` does not assert the property (one line), or None when it does."""
        if self.grid_in(tier) is None:
            return (f"inconclusive at this budget: the {tier.name} tier does not assert {self.name} "
                    "(its budget is too small to resolve it); run a larger tier")
        return None

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


def worse_of(recorded: Any) -> Worse:
    """Which way a record's value is worse: what the record says (every property records it), else |x|."""
    return recorded if recorded in WORSE else "higher_abs"
