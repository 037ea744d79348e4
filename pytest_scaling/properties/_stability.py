"""The stability sweep shared by ``lr_sensitivity``, ``no_logit_divergence`` and ``qk_layernorm_lowers_sensitivity``
(one grid per tier: a cached session trains each family once for all of them) and, on grids of their own, by
``depth_sensitivity`` and ``weight_decay``'s optimizer: Wortsman et al.'s recipe and the sensitivity evidence recorded."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import metrics
from ..family import ModelFamily
from ..grids import RelativeWidths, StabilityGrid, half_decades
from ..placement import place
from ..sweep import SweepRequest, SweepResult
from ..train import OptimizerSpec, TrainConfig
from ._runs import json_losses

#: Two decades around the anchor: S then measures what high LRs cost (qk-layernorm's effect), not how slowly a low LR
#: learns in 250 steps (a decade lower, that alone made S on a vocab-256 task 0.43 nats). The smoke tier cannot resolve
#: S or a logit's growth: it does not assert them.
STABILITY_GRIDS: dict[str, StabilityGrid] = {
    "cpu": StabilityGrid(widths=RelativeWidths((1, 2)), lrs=half_decades(-2, 2), steps=250, batch_size=32, warmup=25,
                         probe_every=25, max_sensitivity=0.1, attention_logit_cap=1e3, log_z_cap=20.0,
                         max_log_z_drift=3.0, seeds=1, relative_sensitivity=True),
    "gpu": StabilityGrid(widths=RelativeWidths((2, 4, 8, 16)), lrs=half_decades(-2, 2), steps=1000, batch_size=64,
                         warmup=100, probe_every=50, max_sensitivity=0.1, attention_logit_cap=1e3, log_z_cap=20.0,
                         max_log_z_drift=3.0, relative_sensitivity=True),
}


def stability_optimizer(weight_decay: float) -> OptimizerSpec:
    """Wortsman et al.'s optimizer: AdamW beta=(0.9, 0.95), eps 1e-8, weight decay independent of the LR."""
    return OptimizerSpec(betas=(0.9, 0.95), eps=1e-8, weight_decay=weight_decay, independent_wd=True)


def stability_config(grid: StabilityGrid) -> TrainConfig:
    """Wortsman et al.'s recipe: their optimizer, warmup + cosine, clip 1.0; attention and output logits probed every
    ``grid.probe_every`` steps."""
    return TrainConfig(steps=grid.steps, batch_size=grid.batch_size, optimizer=stability_optimizer(grid.weight_decay),
                       warmup=grid.warmup, schedule="cosine", grad_clip=1.0, probe_every=grid.probe_every,
                       probe_kinds=("attention", "output"))


def stability_request(scaling: Any, family: ModelFamily, grid: StabilityGrid) -> SweepRequest:
    """The stability runs of ``family`` on ``grid`` (placed)."""
    return SweepRequest(family, tuple(grid.widths or family.widths), tuple(grid.lrs), tuple(scaling.first_seeds(grid.seeds)),
                        stability_config(grid), grid.stacking)


def stability_sweep(scaling: Any, family: ModelFamily, grid: StabilityGrid) -> SweepResult:
    """The stability runs of ``family`` on ``grid`` (placed), trained or read from the session's cache."""
    return stability_request(scaling, family, grid).run(scaling)


def stability_sweeps(scaling: Any, family: ModelFamily, grid: StabilityGrid) -> list[SweepRequest]:
    """What a stability grid asks for on ``family`` (the cost plan's view of ``stability_sweep``)."""
    return [stability_request(scaling, family, place(scaling, family, grid)[0])]


def sensitivity_record(family: ModelFamily, result: SweepResult, sensitivity: metrics.SensitivityResult) -> dict[str, Any]:
    """S per width with the seed-mean loss-vs-LR curves it comes from (S is always shown with them), and S in nats."""
    return {"family": family.name, "widths": list(result.widths), "lrs": list(result.lrs), "measure": sensitivity.label,
            "values": sensitivity.mean.tolist(), "nats": result.lr_sensitivity().mean.tolist(),
            "losses": json_losses(result.loss_table().mean(axis=-1))}


def seed_sensitivity(result: SweepResult, grid: StabilityGrid) -> np.ndarray:
    """S of each seed's own loss-vs-LR curve, [width, seed]."""
    return result.lr_sensitivity(relative=grid.relative_sensitivity, per_seed=True).values
