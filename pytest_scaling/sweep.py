"""Sweeps: widths x LRs x seeds of one family, cached, stacked where it pays, resumable.

Runs already in the cache are read back, the rest are trained width by width (each width's
runs as stacked chunks chosen by ``stacking.plan_chunks``) and written to the cache as each
chunk finishes, so an interrupted sweep resumes with only the missing runs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from . import metrics
from .family import ModelFamily, check_widths
from .progress import Progress
from .stacking import train_width
from .store import ResultCache, run_key
from .train import RunResult, TrainConfig, recipe_notes

RunId = tuple[int, float, int]  # (width, lr, seed)


@dataclass
class SweepStats:
    """What a sweep did: runs trained vs read from the cache, chunk size per width, wall time."""

    trained: int = 0
    cached: int = 0
    chunk_size: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class SweepResult:
    """All runs of a sweep, with the loss table ``[width, lr, seed]`` and shortcuts into ``metrics``.

    ``recipe``: what the runs' training did, in short lines (``train.recipe_notes``)."""

    family: str
    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    config: TrainConfig
    runs: dict[RunId, RunResult]
    stats: SweepStats = field(default_factory=SweepStats)
    recipe: list[str] = field(default_factory=list)

    def run(self, width: int, lr: float, seed: int) -> RunResult:
        return self.runs[(width, float(lr), seed)]

    def _table(self, value: Callable[[RunResult], float]) -> np.ndarray:
        return np.array([[[value(self.run(w, lr, s)) for s in self.seeds] for lr in self.lrs] for w in self.widths])

    def loss_table(self, window: float = 0.1) -> np.ndarray:
        """Final loss (mean of the last ``window`` of steps; +inf if diverged), shape [width, lr, seed]."""
        return self._table(lambda r: r.final_loss(window))

    def initial_losses(self) -> np.ndarray:
        """Loss at initialisation, shape [width, seed] (the same for every LR)."""
        return self._table(lambda r: r.initial_loss)[:, 0, :]

    def lr_transfer(self, **kwargs: Any) -> metrics.TransferResult:
        return metrics.lr_transfer(self.widths, self.lrs, self.loss_table(), initial_loss=self.initial_losses(), **kwargs)

    def lr_sensitivity(self) -> metrics.SensitivityResult:
        """Wortsman et al.'s LR sensitivity per width (seed-mean loss curve)."""
        curves = _seed_mean(self.loss_table())[:, :, None]  # [width, lr, 1]: the seed-mean curve as one seed
        return metrics.lr_sensitivity_by_size(self.widths, self.lrs, curves, self.initial_losses().mean(axis=1, keepdims=True))

    def best_loss_per_width(self) -> np.ndarray:
        """Per width, the seed-mean loss at the best LR of the grid (the best case, per Metz)."""
        return np.min(_seed_mean(self.loss_table()), axis=1)

    def losses_at_lr(self, lr: float) -> np.ndarray:
        """Seed-mean final loss per width at one grid LR."""
        return _seed_mean(self.loss_table())[:, self.lrs.index(float(lr))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "widths": list(self.widths),
            "lrs": list(self.lrs),
            "seeds": list(self.seeds),
            "config": self.config.to_dict(),
            "runs": [r.to_dict() for r in self.runs.values()],
        }


# The modules whose code decides what a run computes: a change to any of them retrains.
_ENGINE_MODULES = ("train", "members", "optim", "probes", "parametrization", "family", "tasks")


@functools.lru_cache(maxsize=1)
def engine_fingerprint() -> str:
    """Hash of the training engine's source, part of every run's cache key."""
    digest = hashlib.sha256()
    for name in _ENGINE_MODULES:
        digest.update(inspect.getsource(importlib.import_module(f"{__package__}.{name}")).encode())
    return digest.hexdigest()[:16]


def _seed_mean(table: np.ndarray) -> np.ndarray:
    """Mean over seeds; a diverged seed makes the cell +inf (it counts as diverged)."""
    with np.errstate(invalid="ignore"):
        return np.mean(table, axis=-1)


def _check_lrs(lrs: Iterable[float]) -> tuple[float, ...]:
    out = tuple(float(lr) for lr in lrs)
    if not out or any(not (math.isfinite(lr) and lr > 0) for lr in out):
        raise ValueError(f"lrs must be positive finite numbers, got {list(out)}")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"lrs must be strictly increasing, got {list(out)}")
    return out


def _check_seeds(seeds: Iterable[int]) -> tuple[int, ...]:
    out = tuple(seeds)
    if not out or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in out) or len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct non-negative ints, got {list(out)}")
    return out


def sweep(
    family: ModelFamily,
    *,
    widths: Sequence[int] | None = None,
    lrs: Sequence[float],
    seeds: Sequence[int] = (0,),
    config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    cache: ResultCache | None = None,
    executor: str = "local",
    stacking: str = "auto",
    progress: Progress | None = None,
    **overrides: Any,
) -> SweepResult:
    """Train (or read from ``cache``) every (width, lr, seed) run of ``family``.

    ``widths`` defaults to the family's; ``overrides`` replace ``config`` fields (``steps=300``).
    ``stacking``: ``"auto"`` (timed choice per width), ``"all"`` or ``"none"``.
    ``executor``: ``"local"`` or ``"ray"`` (each width's runs as one Ray task).
    """
    started = time.perf_counter()
    widths = check_widths(tuple(widths) if widths is not None else family.widths)
    lrs, seeds = _check_lrs(lrs), _check_seeds(seeds)
    config = dataclasses.replace(config or TrainConfig(), **overrides)
    device = torch.device(device)
    fingerprint = family.fingerprint()
    config_dict = {**config.to_dict(), "engine": engine_fingerprint(), "torch": torch.__version__}
    keys = {
        (w, lr, s): run_key(family_fingerprint=fingerprint, width=w, lr=lr, seed=s, config=config_dict, device_kind=device.type)
        for w in widths
        for lr in lrs
        for s in seeds
    }
    runs: dict[RunId, RunResult] = {}
    if cache is not None:
        stored = cache.get_many(list(keys.values()))
        runs = {rid: RunResult.from_dict(stored[k]) for rid, k in keys.items() if k in stored}
    stats = SweepStats(cached=len(runs))
    todo: dict[int, list[tuple[float, int]]] = {}
    for w, lr, s in keys:
        if (w, lr, s) not in runs:
            todo.setdefault(w, []).append((lr, s))
    progress = progress or Progress(total=0)
    progress.start(total=sum(len(v) for v in todo.values()), label=family.name)

    def finished(width: int, chunk: list[RunResult], chunk_size: int) -> None:
        new = {(width, r.lr, r.seed): r for r in chunk}
        runs.update(new)
        if cache is not None:
            cache.put_many({keys[rid]: r.to_dict() for rid, r in new.items()})
        stats.trained += len(chunk)
        stats.chunk_size[width] = chunk_size
        progress.advance(len(chunk), width)

    if executor == "local":
        for width, members in todo.items():
            train_width(family, width, members, config, device=device, stacking=stacking, on_chunk=finished)
    elif executor == "ray":
        from .ray_executor import run_on_ray

        run_on_ray(family, todo, config, device=device, stacking=stacking, on_chunk=finished)
    else:
        raise ValueError(f"unknown executor {executor!r}; choose 'local' or 'ray'")
    progress.finish()
    stats.seconds = time.perf_counter() - started
    return SweepResult(family.name, widths, lrs, seeds, config, runs, stats, recipe_notes(family, config, lrs, seeds, stacking))
