"""The sweep shared by ``power_law`` and ``extrapolation``: its grid per tier and the reduction of its runs to one loss
per size at the best LR.

N is the number of non-input parameters (Kaplan et al.'s non-embedding count: every parameter whose width role is not
"input"). The loss per size is the seed mean at the LR chosen by ``lr_policy``: ``"per_width"`` tunes it at each width
(Metz: judge a scaling law on its best case), ``"tuned_at_smallest"`` keeps the LR tuned at the narrowest width — the
habit that makes an SP model's curve look fine on small sizes and mislead at the large one. Diverged runs count as the
initial loss.

``"per_width"`` does not train the whole LR grid at every width: it starts each width at the grid's three LRs around
the anchor and adds the next LR outward while the best seed mean sits at an edge of those trained (``next_lrs``), so
it ends at a minimum with both flanks trained, which on a curve with one minimum is the whole grid's (docs/design.md,
"Cost").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..family import ModelFamily
from ..fit import PowerLawFit
from ..grids import PowerLawGrid, RelativeLRs, RelativeWidths
from ..placement import place
from ..sweep import SweepRequest
from ..train import TrainConfig

#: The cpu tier uses the transfer grid's steps, batch and (a subset of its) LRs, so the widths both sweep train once.
#: Widths from base/2 in steps of 1.5x and 4/3x, over 3 seeds: on the zoo's clean GPT, base/4 (width 8) sits off the
#: law (loss 1.96 against 1.52 at 16) and bent the fit, so that every seed pair's held-out width beat its prediction by
#: 1.0-2.1% (excess up to 1.23); two seeds left 1 − R² at up to 0.0155 of 0.02. Measured in benchmarks/RESULTS.md
#: ("Calibration of the zoo's clean model"). The smoke tier cannot resolve a fit: it does not assert them.
POWER_LAW_GRIDS: dict[str, PowerLawGrid] = {
    "cpu": PowerLawGrid(widths=RelativeWidths((0.5, 0.75, 1, 1.5, 2, 3, 4)), lrs=RelativeLRs(-3, 2), steps=100,
                        batch_size=32, min_r2=0.98, holdout=1, max_rel_error=0.01, seeds=3),
    "gpu": PowerLawGrid(widths=RelativeWidths((1, 2, 4, 8, 16, 32)), lrs=RelativeLRs(-4, 3), steps=1000, batch_size=256,
                        min_r2=0.98, holdout=1, max_rel_error=0.01),
}

LRPolicy = Literal["per_width", "tuned_at_smallest"]
LR_POLICIES: tuple[str, ...] = ("per_width", "tuned_at_smallest")


@dataclass(frozen=True)
class SizeLosses:
    """Per width: the parameter count N, the chosen LR, and each seed's final loss there, with their mean and std."""

    widths: tuple[int, ...]
    sizes: np.ndarray
    lrs: np.ndarray
    per_seed: np.ndarray  # [width, seed]
    mean: np.ndarray
    std: np.ndarray
    n_seeds: int
    lr_policy: str
    placed: dict[str, Any]  # the grid's placement on the family (pytest_scaling.placement) and the runs' recipe


def non_input_parameters(family: ModelFamily, width: int) -> int:
    """Parameters of the model at ``width`` outside the input (embedding) role."""
    roles = family.roles.params
    return sum(p.numel() for name, p in family.build(width).named_parameters() if roles[name].role != "input")


def _request(scaling: Any, family: ModelFamily, grid: PowerLawGrid, widths: tuple[int, ...],
             lrs: tuple[float, ...]) -> SweepRequest:
    """Runs of a placed power-law grid at ``widths`` x ``lrs``: constant-LR Adam."""
    return SweepRequest(family, widths, lrs, tuple(scaling.first_seeds(grid.seeds)),
                        TrainConfig(steps=grid.steps, batch_size=grid.batch_size))


def _start(lrs: RelativeLRs | tuple[float, ...]) -> list[int]:
    """The grid indices a per-width search starts from: the anchor's (the middle of an absolute grid) and one a side."""
    count = len(lrs) if isinstance(lrs, tuple) else int(round((lrs.hi - lrs.lo) / lrs.step)) + 1
    centre = count // 2 if isinstance(lrs, tuple) else min(max(int(round(-lrs.lo / lrs.step)), 0), count - 1)
    return [i for i in (centre - 1, centre, centre + 1) if 0 <= i < count]


def next_lrs(losses: dict[int, float], count: int) -> list[int]:
    """The grid indices to train next at one width, from the seed-mean ``losses`` trained so far (index → loss) on a
    grid of ``count`` LRs: the next one outward where the best is at the lowest or highest trained index; none once
    it has a trained neighbour on each side (or is the grid's end)."""
    best = min(losses, key=lambda i: (losses[i], i))
    low, high = min(losses), max(losses)
    return [i for i, edge in ((best - 1, best == low), (best + 1, best == high)) if edge and 0 <= i < count]


def size_sweeps(scaling: Any, family: ModelFamily, grid: PowerLawGrid, lr_policy: LRPolicy = "per_width") -> list[SweepRequest]:
    """What a power-law grid asks for on ``family`` before any result is in (the cost plan's view of ``size_losses``):
    the whole grid, or under ``"per_width"`` its search's first round, which on a clean family's curve is most of it."""
    first = _start(grid.lrs) if lr_policy == "per_width" else None
    grid = place(scaling, family, grid)[0]
    lrs = tuple(grid.lrs) if first is None else tuple(grid.lrs[i] for i in first)
    return [_request(scaling, family, grid, tuple(grid.widths or family.widths), lrs)]


def size_losses(scaling: Any, family: ModelFamily, grid: PowerLawGrid, lr_policy: LRPolicy = "per_width") -> SizeLosses:
    """Sweep the grid (placed on ``family``) and reduce it to one loss per size at the LR ``lr_policy`` picks."""
    if lr_policy not in LR_POLICIES:
        raise ValueError(f"lr_policy must be one of {', '.join(LR_POLICIES)}, got {lr_policy!r}")
    start = _start(grid.lrs) if lr_policy == "per_width" else None
    grid, placed = place(scaling, family, grid)
    widths, lrs = tuple(grid.widths or family.widths), tuple(grid.lrs)
    table, recipe = _losses(scaling, family, grid, widths, lrs, start)
    mean = table.mean(axis=-1)
    mean = np.where(np.isnan(mean), np.inf, mean)  # an LR the search did not train
    best = np.argmin(mean, axis=1) if lr_policy == "per_width" else np.full(len(widths), int(np.argmin(mean[0])))
    rows = np.arange(len(widths))
    trained = {str(w): [lrs[i] for i in np.flatnonzero(np.isfinite(mean[row]))] for row, w in enumerate(widths)}
    return SizeLosses(widths=widths, sizes=np.array([non_input_parameters(family, w) for w in widths], float),
                      lrs=np.array(lrs)[best], per_seed=table[rows, best], mean=mean[rows, best], std=table[rows, best].std(axis=-1, ddof=1)
                      if table.shape[-1] > 1 else np.full(len(rows), np.nan), n_seeds=table.shape[-1], lr_policy=lr_policy,
                      placed={**placed, "recipe": recipe, "lrs_trained": trained})


def _losses(scaling: Any, family: ModelFamily, grid: PowerLawGrid, widths: tuple[int, ...], lrs: tuple[float, ...],
            start: list[int] | None) -> tuple[np.ndarray, list[str]]:
    """Final losses [width, lr, seed] (a diverged run, or one that ended above its initial loss, counted as that; NaN
    where not trained) and the runs' recipe: the whole grid (``start`` None), or each width searched from ``start``."""
    table = np.full((len(widths), len(lrs), len(scaling.first_seeds(grid.seeds))), np.nan)
    todo = {w: list(range(len(lrs))) if start is None else start for w in widths}
    recipe: list[str] = []
    while todo:
        rounds: dict[tuple[int, ...], tuple[int, ...]] = {}  # LR indices -> the widths that train them next
        for w, indices in todo.items():
            rounds[tuple(indices)] = rounds.get(tuple(indices), ()) + (w,)
        for indices, at in rounds.items():
            result = _request(scaling, family, grid, at, tuple(lrs[i] for i in indices)).run(scaling)
            recipe = recipe or result.recipe
            losses, initial = result.loss_table(), result.initial_losses()[:, None, :]
            table[np.ix_([widths.index(w) for w in at], indices)] = np.where(np.isfinite(losses) & (losses <= initial),
                                                                            losses, initial)
        if start is None:
            break
        mean = table.mean(axis=-1)
        todo = {w: found for row, w in enumerate(widths)
                if (found := next_lrs({i: mean[row, i] for i in np.flatnonzero(~np.isnan(mean[row]))}, len(lrs)))}
    return table, recipe


def standard_error(points: SizeLosses) -> np.ndarray | None:
    """Standard error of each size's seed mean, from the seed variance pooled over sizes: with 2-3 seeds a
    per-size std is itself too noisy to judge a residual by (measured: 0.0006 to 0.008 between sizes of one sweep)."""
    if np.isnan(points.std).any():
        return None
    pooled = np.sqrt(np.mean(points.std**2))
    return np.full(len(points.widths), pooled / np.sqrt(points.n_seeds)) if pooled > 0 else None


def require_widths(family: ModelFamily, grid: PowerLawGrid, needed: int, what: str) -> None:
    """Fail before any training when the grid has too few widths for the fit (E, A and α need three sizes)."""
    widths = grid.widths.multipliers if isinstance(grid.widths, RelativeWidths) else grid.widths or family.widths
    if len(set(widths)) < needed:
        raise ValueError(f"{what} needs at least {needed} distinct widths, got {len(set(widths))}: {tuple(widths)}")


def points_data(points: SizeLosses) -> dict[str, Any]:
    """The points behind a power-law record (what the report plots)."""
    return {"widths": list(points.widths), "sizes": points.sizes.tolist(), "losses": points.mean.tolist(),
            "seed_std": [None if np.isnan(s) else float(s) for s in points.std], "lrs": points.lrs.tolist(),
            "lr_policy": points.lr_policy, **points.placed}


def fit_data(fit: PowerLawFit) -> dict[str, Any]:
    """A fit's parameters and R² for a record."""
    return {"E": fit.E, "A": fit.A, "alpha": fit.alpha, "r2": fit.r2}
