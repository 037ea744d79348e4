"""What the suite costs on a family, said before anything trains (docs/design.md, "Cost").

Each property lists the sweeps its check will ask for (``Property.sweeps``), placed through a planning session that
trains nothing: relative LRs on an anchor of 1 (the LR-range step has not run), widths and seeds as the check will
place them. A run is one (family, width, LR, seed, training config): the cache key's content, so a run that an
earlier property asks for costs a later one nothing (cached or not: ``--scaling-no-cache`` shares runs within the
session). A run's seconds are its set-up plus its steps at the step time measured on this family, width and batch
size, on this machine, with the session's threads (``time_run``: a few steps of the real training loop, one run
unstacked). The plan is an uncached session's: runs already in the cache cost nothing when they come.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tabulate import tabulate

from .family import ModelFamily
from .grids import LRRangeGrid, log10_grid
from .members import unstackable_reason
from .placement import range_step
from .property import Property
from .report.table import duration
from .session import first_seeds
from .stacking import PROBE_STEPS, time_steps
from .sweep import SweepRequest
from .train import TrainConfig

#: The predicted seconds of ``runs`` runs of ``family`` at ``width`` under ``config``, trained as a sweep trains them
#: (``stacking``: the request's).
Timer = Callable[[ModelFamily, int, TrainConfig, int, str], float]
#: The largest stack the plan times: a sweep may stack more, which the plan then slightly overprices.
STACK_PROBE = 16


class PlanningSession:
    """Stands in for the ``scaling`` session while a property lists its sweeps: LRs placed on an anchor of 1, the
    session's tier and seeds; it trains nothing."""

    def __init__(self, tier: Any, seeds: Sequence[int]) -> None:
        self.tier, self.seeds = tier, list(seeds)
        self.anchored: dict[str, set[int]] = {}  # family name -> the widths its LR-range steps are asked for

    def lr_bracket(self, family: ModelFamily, width: int | None = None) -> Any:
        self.anchored.setdefault(family.name, set()).add(family.base_width if width is None else width)
        return _UnitAnchor()

    def first_seeds(self, n: int | None) -> list[int]:
        return first_seeds(self.seeds, n)


class _UnitAnchor:
    anchor = 1.0

    def to_record(self) -> dict[str, Any]:
        return {"anchor": None}


@dataclass(frozen=True)
class PropertyCost:
    """One property's share of the plan: what it sweeps, how many runs it asks for, how many of them no earlier
    property asked for, and their predicted seconds; ``note``: why it trains nothing (not asserted, not applicable);
    ``over_budget``: held to the budget, it does not fit after the properties before it and does not run."""

    name: str
    widths: tuple[int, ...] = ()
    lrs: int = 0
    seeds: int = 0
    steps: tuple[int, ...] = ()
    runs: int = 0
    new_runs: int = 0
    seconds: float = 0.0
    note: str = ""
    over_budget: bool = False


@dataclass(frozen=True)
class SuiteCost:
    """The plan of one family in one tier: the LR-range step and each property, against the budget (the tier's, or
    ``--scaling-budget``'s, which ``held`` it: what does not fit does not run)."""

    family: str
    tier: str
    budget_s: float
    properties: tuple[PropertyCost, ...]
    held: bool = False

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.properties if not p.over_budget)

    @property
    def runs(self) -> int:
        return sum(p.new_runs for p in self.properties if not p.over_budget)

    def over_budget(self) -> dict[str, str]:
        """Each property left out to hold the budget, with its one-line reason."""
        spent = 0.0
        reasons = {}
        for cost in self.properties:
            if cost.over_budget:
                reasons[cost.name] = (f"inconclusive at this budget: {cost.name}'s runs are predicted at "
                                      f"{duration(cost.seconds)} after {duration(spent)} for what runs before it, over "
                                      f"the {duration(self.budget_s)} budget (--scaling-budget); a larger one runs it")
            else:
                spent += cost.seconds
        return reasons

    def table(self) -> str:
        """The plan as a terminal table, its total against the budget on the last line."""
        rows = [[p.name, _span(p.widths), p.lrs or "", p.seeds or "", _span(p.steps), p.runs or "", p.new_runs or "",
                 f"over budget ({duration(p.seconds)})" if p.over_budget else duration(p.seconds) if p.runs else p.note]
                for p in self.properties]
        head = ["property", "widths", "LRs", "seeds", "steps", "runs", "new", "predicted"]
        verdict = "within" if self.seconds <= self.budget_s else "OVER"
        budget = "--scaling-budget" if self.held else "the tier's budget"
        return (f"plan for {self.family} ({self.tier} tier; an uncached session on this machine):\n"
                f"{tabulate(rows, head, tablefmt='simple')}\n"
                f"total {self.runs} runs, {duration(self.seconds)}: {verdict} {budget} of {duration(self.budget_s)}")

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "tier": self.tier, "budget_s": self.budget_s, "held": self.held,
                "seconds": self.seconds, "runs": self.runs, "properties": [dataclasses.asdict(p) for p in self.properties]}


def _span(values: Iterable[int]) -> str:
    values = sorted(set(values))
    if not values:
        return ""
    return str(values[0]) if len(values) == 1 else f"{values[0]}..{values[-1]}"


def time_run(device: torch.device) -> Timer:
    """A timer that prices runs as a sweep trains them (``stacking.plan_width``'s bill over two candidates): one by
    one, or stacked ``min(runs, STACK_PROBE)`` at a time where the family stacks and the runs are longer than the
    planner's probe; each candidate timed by ``time_steps`` (a few steps of the real training loop, measured once per
    process, so the sweeps reuse them)."""

    def timer(family: ModelFamily, width: int, config: TrainConfig, runs: int, stacking: str) -> float:
        sizes = [1]
        stack = min(runs, STACK_PROBE)
        if stacking != "none" and stack > 1 and config.steps > PROBE_STEPS and \
                unstackable_reason(family, width, [1e-3] * stack, list(range(stack))) is None:
            sizes.append(stack)
        bills = []
        for size in sizes:
            setup, per_step = time_steps(family, width, [(1e-3, seed) for seed in range(size)], config, device)
            bills.append(-(-runs // size) * (setup + config.steps * per_step))
        return min(bills)

    return timer


def lr_range_request(family: ModelFamily, grid: LRRangeGrid, widths: tuple[int, ...]) -> SweepRequest:
    """The LR-range steps' runs when their coarse scan needs no widening: one LR a decade, then ``per_decade`` a decade
    within a decade of the best (taken in the middle of the scan), at each of ``widths`` on the first seed."""
    coarse = log10_grid(grid.lo, grid.hi, 1)
    centre = round((grid.lo + grid.hi) / 2)
    fine = log10_grid(centre - 1, centre + 1, grid.per_decade)
    return SweepRequest(family, widths, tuple(sorted(set(coarse) | set(fine))), (0,),
                        TrainConfig(steps=grid.steps, batch_size=grid.batch_size))


def plan_suite(family: ModelFamily, tier: Any, seeds: Sequence[int], properties: Sequence[Property],
               grids: dict[str, Any], skip: dict[str, str], timer: Timer, budget_s: float | None = None) -> SuiteCost:
    """The plan of ``properties`` on ``family`` in ``tier``: ``grids`` replaces a property's tier grid and ``skip``
    leaves one out (a ``ScalingSuite``'s own), as the suite runs them. ``budget_s`` holds the plan to a budget: in
    the suite's order, a property whose new runs do not fit after those before it is marked ``over_budget`` and its
    runs are not counted as trained (a later property that shares them pays for them)."""
    session = PlanningSession(tier, seeds)
    notes = {prop.name: _not_run(prop, family, tier, skip) for prop in properties}
    asked = {prop.name: prop.sweeps(session, family, grids.get(prop.name) or prop.grid_in(tier))
             for prop in properties if notes[prop.name] is None and prop.sweeps is not None}
    # listing the sweeps placed them, which asked for the LR-range steps' widths (placement.place)
    anchored = tuple(sorted(session.anchored.get(family.name, {family.base_width})))
    seen: set[tuple[Any, ...]] = set()
    costs = [_price("LR-range step", [lr_range_request(family, range_step(family, tier), anchored)], seen, timer)]
    spent = costs[0].seconds
    for prop in properties:
        if notes[prop.name] is not None:
            costs.append(PropertyCost(prop.name, note=notes[prop.name]))
            continue
        requests = asked.get(prop.name, [])
        if not requests:
            costs.append(PropertyCost(prop.name, note="trains nothing"))
            continue
        trained_before = set(seen)
        cost = _price(prop.name, requests, seen, timer)
        if budget_s is not None and cost.seconds > 0 and spent + cost.seconds > budget_s:
            seen.intersection_update(trained_before)  # its runs will not train
            cost = dataclasses.replace(cost, over_budget=True)
        else:
            spent += cost.seconds
        costs.append(cost)
    return SuiteCost(family.name, tier.name, tier.budget_s if budget_s is None else budget_s, tuple(costs),
                     held=budget_s is not None)


def _not_run(prop: Property, family: ModelFamily, tier: Any, skip: dict[str, str]) -> str | None:
    if prop.name in skip:
        return "left out"
    if prop.needs_depth and family.at_depth is None:
        return "not applicable"
    if prop.grid_in(tier) is None:
        return "not asserted"
    return None


def _price(name: str, requests: list[SweepRequest], seen: set[tuple[Any, ...]], timer: Timer) -> PropertyCost:
    """The cost of ``requests``: every run counted, only those not in ``seen`` (added to it) priced."""
    runs, new, seconds = 0, 0, 0.0
    for request in requests:
        for width in request.widths:
            keys = [(request.family.name, width, lr, seed, repr(request.config)) for lr in request.lrs
                    for seed in request.seeds]
            fresh = [key for key in dict.fromkeys(keys) if key not in seen]
            seen.update(fresh)
            runs, new = runs + len(keys), new + len(fresh)
            if fresh:  # a sweep trains only the runs it cannot read back, stacked among themselves
                seconds += timer(request.family, width, request.config, len(fresh), request.stacking)
    return PropertyCost(name, widths=tuple(sorted({w for r in requests for w in r.widths})),
                        lrs=max(len(r.lrs) for r in requests), seeds=max(len(r.seeds) for r in requests),
                        steps=tuple(sorted({r.config.steps for r in requests})), runs=runs, new_runs=new,
                        seconds=seconds)

