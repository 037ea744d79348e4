"""Sweeps: widths x LRs x seeds of one family, cached, stacked where it pays, resumable.

Runs already in the cache are read back, the rest are trained width by width (each width's
runs as stacked chunks chosen by ``stacking.plan_chunks``) and written to the cache as each
chunk finishes, so an interrupted sweep resumes with only the missing runs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import math
import numbers
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np
import torch

from . import metrics
from .contract import check_family, check_widths_build, require_family, torch_device
from .family import ModelFamily, check_widths
from .fingerprint import FingerprintError
from .progress import Progress
from .stacking import train_width
from .store import ResultCache, run_key
from .train import RunResult, TrainConfig, check_stacking, recipe_notes, train_config

RunId = tuple[int, float, int]  # (width, lr, seed)
EXECUTORS: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class SweepRequest:
    """One sweep a check asks for: ``family`` at ``widths`` × ``lrs`` × ``seeds`` under ``config``. The check runs it
    through its session (``run``); the cost plan (``pytest_scaling.cost``) counts and prices the same request before
    anything trains."""

    family: ModelFamily
    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    config: TrainConfig
    stacking: str = "auto"

    def run(self, scaling: Any) -> SweepResult:
        """The sweep's result, through ``scaling`` (its cache, device and executor)."""
        return scaling.sweep(self.family, widths=self.widths, lrs=self.lrs, seeds=self.seeds, config=self.config,
                             stacking=self.stacking)


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

    def lr_sensitivity(self, *, relative: bool = False, per_seed: bool = False) -> metrics.SensitivityResult:
        """Wortsman et al.'s LR sensitivity per width, of the seed-mean loss curve (or of each seed's, ``per_seed``);
        ``relative``: as a fraction of the curve's depth (``metrics.lr_sensitivity``)."""
        if per_seed:
            return metrics.lr_sensitivity_by_size(self.widths, self.lrs, self.loss_table(), self.initial_losses(),
                                                  relative=relative)
        curves = _seed_mean(self.loss_table())[:, :, None]  # [width, lr, 1]: the seed-mean curve as one seed
        return metrics.lr_sensitivity_by_size(self.widths, self.lrs, curves, self.initial_losses().mean(axis=1, keepdims=True),
                                              relative=relative)

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


class UncachedFamilyWarning(UserWarning):
    """A family whose runs cannot be cached: a value it captures has no stable hash."""


_warned_uncached: set[tuple[str, str]] = set()


def _run_keys(family: ModelFamily, run_ids: list[RunId], config: TrainConfig, device: torch.device) -> dict[RunId, str] | None:
    """The cache key of each run; None (after one warning per family) when the family has no fingerprint."""
    try:
        fingerprint = family.fingerprint()
    except FingerprintError as error:
        if (family.name, str(error)) not in _warned_uncached:
            _warned_uncached.add((family.name, str(error)))
            warnings.warn(f"family {family.name!r} is not cached, every run trains: {error}", UncachedFamilyWarning, stacklevel=3)
        return None
    config_dict = {**config.to_dict(), "engine": engine_fingerprint(), "torch": torch.__version__}
    return {
        (w, lr, s): run_key(family_fingerprint=fingerprint, width=w, lr=lr, seed=s, config=config_dict, device_kind=device.type)
        for w, lr, s in run_ids
    }


def _seed_mean(table: np.ndarray) -> np.ndarray:
    """Mean over seeds; a diverged seed makes the cell +inf (it counts as diverged)."""
    with np.errstate(invalid="ignore"):
        return np.mean(table, axis=-1)


def _as_tuple(name: str, values: Any, what: str) -> tuple:
    """``values`` as a tuple; a one-line TypeError for a single value or a string where a sequence belongs."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of {what}, got {type(values).__name__} {values!r}")
    return tuple(values)


def _check_lrs(lrs: Iterable[float]) -> tuple[float, ...]:
    given = _as_tuple("lrs", lrs, "positive numbers")
    if not given or any(not isinstance(lr, numbers.Real) or isinstance(lr, bool) for lr in given):
        raise ValueError(f"lrs must be positive finite numbers, got {list(given)}")
    out = tuple(float(lr) for lr in given)
    if any(not (math.isfinite(lr) and lr > 0) for lr in out):
        raise ValueError(f"lrs must be positive finite numbers, got {list(out)}")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"lrs must be strictly increasing, got {list(out)}")
    return out


def _check_seeds(seeds: Iterable[int]) -> tuple[int, ...]:
    out = _as_tuple("seeds", seeds, "non-negative ints")
    if not out or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in out) or len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct non-negative ints, got {list(out)}")
    return out


class SweepArguments(NamedTuple):
    """A sweep's grid, config and device, checked and normalised."""

    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    config: TrainConfig
    device: torch.device


def check_arguments(
    family: ModelFamily,
    *,
    widths: Sequence[int] | None = None,
    lrs: Sequence[float],
    seeds: Sequence[int] = (0,),
    config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    cache: ResultCache | str | os.PathLike | None = None,
    executor: str = "local",
    stacking: str = "auto",
    progress: Progress | None = None,
    **overrides: Any,
) -> SweepArguments:
    """``sweep``'s arguments checked, and the family against its task (``contract.check_family``), before anything
    trains or is looked up: each problem is one ``TypeError`` or ``ValueError`` that names it."""
    require_family(family)
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose 'local' or 'ray'")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ValueError("executor='ray' needs Ray, which is not installed: pip install 'pytest-scaling[ray]'")
    check_stacking(stacking)
    if cache is not None and not isinstance(cache, (ResultCache, str, os.PathLike)):
        raise TypeError(f"cache must be a ResultCache or a directory (str or os.PathLike), got {type(cache).__name__}")
    if progress is not None and not isinstance(progress, Progress):
        raise TypeError(f"progress must be a pytest_scaling.progress.Progress or None, got {type(progress).__name__}")
    arguments = SweepArguments(
        widths=check_widths(_as_tuple("widths", widths, "positive ints") if widths is not None else family.widths,
                            min_count=1),
        lrs=_check_lrs(lrs),
        seeds=_check_seeds(seeds),
        config=train_config(config, overrides),
        device=torch_device(device),
    )
    check_family(family)
    check_widths_build(family, arguments.widths)
    return arguments


def sweep(
    family: ModelFamily,
    *,
    widths: Sequence[int] | None = None,
    lrs: Sequence[float],
    seeds: Sequence[int] = (0,),
    config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    cache: ResultCache | str | os.PathLike | None = None,
    executor: str = "local",
    stacking: str = "auto",
    progress: Progress | None = None,
    **overrides: Any,
) -> SweepResult:
    """Train (or read from ``cache``) every (width, lr, seed) run of ``family``.

    ``widths`` defaults to the family's; ``overrides`` replace ``config`` fields (``steps=300``).
    ``stacking``: ``"auto"`` (timed choice per width), ``"all"``, ``"compiled"`` or ``"none"`` (``train.STACKING``).
    ``executor``: ``"local"`` or ``"ray"`` (each width's runs as one Ray task).
    ``cache``: a ``ResultCache``, or a directory whose cache file is opened for this sweep (as ``--scaling-cache DIR``).
    Bad arguments, and a family that does not fit its task, fail first in one line (``check_arguments``).
    """
    started = time.perf_counter()
    widths, lrs, seeds, config, device = check_arguments(
        family, widths=widths, lrs=lrs, seeds=seeds, config=config, device=device, cache=cache, executor=executor,
        stacking=stacking, progress=progress, **overrides)
    if isinstance(cache, (str, os.PathLike)):
        with ResultCache.in_dir(cache) as opened:
            return sweep(family, widths=widths, lrs=lrs, seeds=seeds, config=config, device=device, cache=opened,
                         executor=executor, stacking=stacking, progress=progress)
    run_ids = [(w, lr, s) for w in widths for lr in lrs for s in seeds]
    keys = _run_keys(family, run_ids, config, device) if cache is not None else None
    if keys is None:
        cache = None
    runs: dict[RunId, RunResult] = {}
    if cache is not None:
        stored = cache.get_many(list(keys.values()))
        runs = {rid: RunResult.from_dict(stored[k]) for rid, k in keys.items() if k in stored}
    stats = SweepStats(cached=len(runs))
    todo: dict[int, list[tuple[float, int]]] = {}
    for w, lr, s in run_ids:
        if (w, lr, s) not in runs:
            todo.setdefault(w, []).append((lr, s))
    progress = progress or Progress(total=0)
    progress.start(total=sum(len(v) for v in todo.values()), label=family.name)
    progress.read_back([keys[rid] for rid in runs] if keys is not None else [])

    def finished(width: int, chunk: list[RunResult], chunk_size: int) -> None:
        new = {(width, r.lr, r.seed): r for r in chunk}
        runs.update(new)
        if cache is not None:
            cache.put_many({keys[rid]: r.to_dict() for rid, r in new.items()})
        stats.trained += len(chunk)
        stats.chunk_size[width] = chunk_size
        progress.advance(len(chunk), width, [keys[rid] for rid in new] if keys is not None else None)

    if executor == "local":
        for width, members in todo.items():
            train_width(family, width, members, config, device=device, stacking=stacking, on_chunk=finished)
    else:
        from .ray_executor import run_on_ray

        run_on_ray(family, todo, config, device=device, stacking=stacking, on_chunk=finished)
    progress.finish()
    stats.seconds = time.perf_counter() - started
    return SweepResult(family.name, widths, lrs, seeds, config, runs, stats, recipe_notes(family, config, lrs, seeds, stacking, widths))
