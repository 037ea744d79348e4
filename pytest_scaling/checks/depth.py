"""Depth: the stability sweep repeated over depths; LR sensitivity may grow with depth only up to the tier's bound."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from .. import metrics
from ..assertions import assert_depth_sensitivity
from ..family import ModelFamily
from ..tiers import DepthGrid
from ._records import json_losses
from .stability import stability_sweep


def depth(scaling: Any, build_family: Callable[[int], ModelFamily],
          grid: DepthGrid | None = None) -> metrics.SensitivityResult:
    """LR sensitivity S (Wortsman et al.) at the sweep's widest width may grow by at most the tier's bound per doubling
    of depth: unscaled residual branches add up, so a deep stack's high-LR runs break while 1/√L keeps them trainable.

    ``build_family(n_layers)`` gives the family at one depth; each is swept like ``lr_sensitivity`` (the grid's
    ``sweep``). S and η* per depth are recorded at every width; the widest is asserted, since a narrow model's S
    grows with depth either way (measured at width 32). η* is evidence only: it falls with depth either way too.
    """
    grid = grid or scaling.tier.depth
    if grid is None:
        pytest.skip(f"tier {scaling.tier.name!r} has no depth grid: no depth bound holds over seeds at its budget yet "
                    "(benchmarks/RESULTS.md); pass grid=DepthGrid(...) to check your own")
    families = [build_family(n_layers) for n_layers in grid.depths]
    results = [stability_sweep(scaling, family, grid.sweep) for family in families]
    tables = np.stack([result.loss_table() for result in results])  # [depth, width, lr, seed]
    initial = np.stack([result.initial_losses() for result in results])  # [depth, width, seed]
    widths = results[0].widths
    sensitivity = [metrics.lr_sensitivity_by_size(grid.depths, results[0].lrs, tables[:, w].mean(axis=-1, keepdims=True),
                                                  initial[:, w].mean(axis=-1, keepdims=True), size_name="depth")
                   for w in range(len(widths))]
    optimum = [metrics.lr_transfer(grid.depths, results[0].lrs, tables[:, w], initial_loss=initial[:, w])
               for w in range(len(widths))]
    scaling.record(f"depth[{families[-1].name}]", property="depth", family=families[-1].name,
                   families=[f.name for f in families],
                   depths=list(grid.depths), widths=list(widths), lrs=list(results[0].lrs),
                   value=sensitivity[-1].growth_per_doubling, threshold=grid.max_growth_per_doubling,
                   sensitivity=[s.mean.tolist() for s in sensitivity],
                   growth_per_doubling=[s.growth_per_doubling for s in sensitivity],
                   log2_lr_opt=[o.mean_log2_lr.tolist() for o in optimum], lr_slope=[o.slope for o in optimum],
                   losses=json_losses(tables.mean(axis=-1)))
    return assert_depth_sensitivity(sensitivity[-1], optimum[-1], width=widths[-1],
                                    max_growth_per_doubling=grid.max_growth_per_doubling)
