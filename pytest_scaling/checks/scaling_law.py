"""Power law and held-out extrapolation: does the loss at the best LR follow E + A·N^-α across sizes,
and does a fit on the smaller sizes predict the largest?

N is the number of non-input parameters (Kaplan et al.'s non-embedding count: every parameter whose
width role is not "input"). The loss per size is the seed mean at the LR chosen by ``lr_policy``:
``"per_width"`` tunes it at each width (Metz: judge a scaling law on its best case), ``"tuned_at_smallest"``
keeps the LR tuned at the narrowest width — the habit that makes an SP model's curve look fine on small
sizes and mislead at the large one. Diverged runs count as the initial loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..assertions import assert_extrapolates, assert_power_law
from ..fit import ExtrapolationResult, PowerLawFit, extrapolation_check, fit_power_law
from ..family import ModelFamily
from ..placement import place
from ..properties import PROPERTIES
from ..tiers import PowerLawGrid, RelativeWidths
from ..train import TrainConfig
from ._arguments import grid_or_tier, require_check_arguments

LRPolicy = Literal["per_width", "tuned_at_smallest"]
LR_POLICIES: tuple[str, ...] = ("per_width", "tuned_at_smallest")
_BOOTSTRAP = 200


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


def size_losses(scaling: Any, family: ModelFamily, grid: PowerLawGrid | None = None,
                lr_policy: LRPolicy = "per_width") -> SizeLosses:
    """Sweep the grid and reduce it to one loss per size at the LR ``lr_policy`` picks."""
    require_check_arguments("size_losses", grid, PowerLawGrid, family=family)
    if lr_policy not in LR_POLICIES:
        raise ValueError(f"lr_policy must be one of {', '.join(LR_POLICIES)}, got {lr_policy!r}")
    grid, placed = place(scaling, family, grid_or_tier(scaling, "power_law", grid))
    result = scaling.sweep(family, widths=grid.widths or family.widths, lrs=grid.lrs, seeds=scaling.first_seeds(grid.seeds),
                           config=TrainConfig(steps=grid.steps, batch_size=grid.batch_size))
    table = result.loss_table()  # [width, lr, seed]
    initial = result.initial_losses()[:, None, :]
    table = np.where(np.isfinite(table) & (table <= initial), table, initial)
    mean = table.mean(axis=-1)
    if lr_policy == "per_width":
        best = np.argmin(mean, axis=1)
    else:
        best = np.full(len(result.widths), int(np.argmin(mean[0])))
    rows = np.arange(len(result.widths))
    return SizeLosses(widths=result.widths, sizes=np.array([non_input_parameters(family, w) for w in result.widths], float),
                      lrs=np.array(result.lrs)[best], per_seed=table[rows, best], mean=mean[rows, best], std=table[rows, best].std(axis=-1, ddof=1)
                      if table.shape[-1] > 1 else np.full(len(rows), np.nan), n_seeds=table.shape[-1], lr_policy=lr_policy,
                      placed={**placed, "recipe": result.recipe})


def _standard_error(points: SizeLosses) -> np.ndarray | None:
    """Standard error of each size's seed mean, from the seed variance pooled over sizes: with 2-3 seeds a
    per-size std is itself too noisy to judge a residual by (measured: 0.0006 to 0.008 between sizes of one sweep)."""
    if np.isnan(points.std).any():
        return None
    pooled = np.sqrt(np.mean(points.std**2))
    return np.full(len(points.widths), pooled / np.sqrt(points.n_seeds)) if pooled > 0 else None


def _require_widths(family: ModelFamily, grid: PowerLawGrid, needed: int, what: str) -> None:
    """Fail before any training when the grid has too few widths for the fit (E, A and α need three sizes)."""
    widths = grid.widths.multipliers if isinstance(grid.widths, RelativeWidths) else grid.widths or family.widths
    if len(set(widths)) < needed:
        raise ValueError(f"{what} needs at least {needed} distinct widths, got {len(set(widths))}: {tuple(widths)}")


def _data(points: SizeLosses) -> dict[str, Any]:
    """The points behind a power-law record (what the report plots)."""
    return {"widths": list(points.widths), "sizes": points.sizes.tolist(), "losses": points.mean.tolist(),
            "seed_std": [None if np.isnan(s) else float(s) for s in points.std], "lrs": points.lrs.tolist(),
            "lr_policy": points.lr_policy, **points.placed}


def _fit_data(fit: PowerLawFit) -> dict[str, Any]:
    return {"E": fit.E, "A": fit.A, "alpha": fit.alpha, "r2": fit.r2}


def power_law(scaling: Any, family: ModelFamily, grid: PowerLawGrid | None = None,
              lr_policy: LRPolicy = "per_width") -> PowerLawFit:
    """The best-LR loss against size must follow E + A·N^-α (R² in log space at least the tier's bound)."""
    require_check_arguments("power_law", grid, PowerLawGrid, family=family)
    grid = grid_or_tier(scaling, "power_law", grid)
    _require_widths(family, grid, 3, "the power-law check")
    points = size_losses(scaling, family, grid, lr_policy)
    fit = fit_power_law(points.sizes, points.mean)
    # Recorded as 1 − R², ideally 0, so that a larger value is worse.
    seed_values = [1.0 - fit_power_law(points.sizes, losses).r2 for losses in points.per_seed.T]
    PROPERTIES["power_law"].record(scaling, family.name, value=1.0 - fit.r2, threshold=1.0 - grid.min_r2,
                                   seed_values=seed_values, fit=_fit_data(fit), **_data(points))
    return assert_power_law(fit, min_r2=grid.min_r2)


def extrapolates(scaling: Any, family: ModelFamily, grid: PowerLawGrid | None = None,
                 lr_policy: LRPolicy = "per_width") -> ExtrapolationResult:
    """A power law fitted without the largest ``grid.holdout`` sizes must predict them: relative error within
    the tier's bound and no residual beyond ``grid.n_sigma`` of seed noise."""
    require_check_arguments("extrapolates", grid, PowerLawGrid, family=family)
    grid = grid_or_tier(scaling, "extrapolation", grid)
    _require_widths(family, grid, 3 + grid.holdout, f"the extrapolation check (holding out {grid.holdout})")
    points = size_losses(scaling, family, grid, lr_policy)
    result = extrapolation_check(points.sizes, points.mean, holdout=grid.holdout, bootstrap=_BOOTSTRAP,
                                 seed_noise=_standard_error(points), n_sigma=grid.n_sigma)
    # The value is how far past its bounds the worst held-out point is (ExtrapolationResult.excess: 1 = at them); a
    # seed alone has no seed noise, so its value is its relative error over the tolerance.
    seed_values = [float(extrapolation_check(points.sizes, losses, holdout=grid.holdout, bootstrap=0)
                         .excess(grid.max_rel_error).max()) for losses in points.per_seed.T]
    PROPERTIES["extrapolation"].record(scaling, family.name, value=float(result.excess(grid.max_rel_error).max()),
                   threshold=1.0, max_rel_error=result.max_rel_error, rtol=grid.max_rel_error,
                   seed_values=seed_values, fit=_fit_data(result.fit), holdout=grid.holdout, predicted=result.predicted.tolist(),
                   band=[result.band_lo.tolist(), result.band_hi.tolist()] if result.band_lo is not None else None,
                   z_scores=result.z_scores.tolist() if result.z_scores is not None else None, **_data(points))
    return assert_extrapolates(result, rtol=grid.max_rel_error)
