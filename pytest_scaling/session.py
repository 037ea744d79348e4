"""The object behind the ``scaling`` fixture: the run's tier, device and seeds, its sweeps, and the records reports are built from."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TextIO

import pytest

from pytest_scaling.progress import Progress, RunTally
from pytest_scaling.store import CacheError, ResultCache
from pytest_scaling.tiers import Tier

if TYPE_CHECKING:
    import torch

    from pytest_scaling.family import ModelFamily
    from pytest_scaling.lr_range import LRBracket
    from pytest_scaling.sweep import SweepResult


@dataclass
class ScalingSession:
    """Session-wide state shared by every scaling test: where and how large runs are, and what they recorded.

    ``cache_dir`` None means no run cache that outlives the session: with ``share_runs`` its runs are kept in a private
    temporary cache, deleted at ``close``, so that properties sharing a sweep (power law and extrapolation) train it
    once; without, every sweep trains. Otherwise the cache file is created by the first sweep. ``diagnose``: a failing
    suite property is rerun with the fixes it names (``pytest_scaling.diagnosis``). ``bf16``: every sweep trains under
    bf16 autocast (``TrainConfig.bf16``; its runs are cached apart from fp32's). ``tally``: the run's runs against
    the plans stated before training, shown on ``progress_stream`` (None: the process's stderr); ``over_budget``: (family, property) -> why the suite leaves it out to hold
    ``--scaling-budget``.
    """

    tier: Tier
    device: torch.device
    seeds: list[int]
    cache_dir: Path | None = None
    executor: str = "local"
    diagnose: bool = False
    bf16: bool = False
    share_runs: bool = False
    records: list[dict[str, Any]] = field(default_factory=list)
    tally: RunTally = field(default_factory=RunTally)
    progress_stream: TextIO | None = None
    over_budget: dict[tuple[str, str], str] = field(default_factory=dict)
    _cache: ResultCache | None = field(default=None, init=False, repr=False)
    _private_dir: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)
    _brackets: dict[Any, LRBracket] = field(default_factory=dict, init=False, repr=False)

    def lr_bracket(self, family: ModelFamily, width: int | None = None) -> LRBracket:
        """The family's LR-range step in this tier at ``width`` (None: its base width; ``pytest_scaling.lr_range``),
        measured once per session, family and width."""
        from pytest_scaling.fingerprint import FingerprintError
        from pytest_scaling.lr_range import measure
        from pytest_scaling.placement import range_step

        width = family.base_width if width is None else width
        try:
            key: Any = (family.name, family.fingerprint(), width)
        except FingerprintError:
            key = (family, width)  # not cacheable: measured once per family object (families hash by identity)
        if key not in self._brackets:
            self._brackets[key] = measure(self, family, range_step(family, self.tier), width)
        return self._brackets[key]

    def first_seeds(self, n: int | None) -> list[int]:
        """The first ``n`` of the session's seeds (``first_seeds``)."""
        return first_seeds(self.seeds, n)

    def sweep(
        self,
        family: ModelFamily,
        *,
        widths: Sequence[int] | None = None,
        lrs: Sequence[float],
        seeds: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> SweepResult:
        """``pytest_scaling.sweep.sweep`` of ``family`` with this session's seeds, device, cache and executor.

        Other keyword arguments (``config``, ``stacking``, ``steps=...``) pass through and may
        override ``device``, ``cache`` or ``executor``; a bf16 session trains every config under bf16
        autocast. Bad arguments, a family that does not fit its
        task and a cache that cannot be used fail the test with their one-line message, before any
        training; errors raised while training keep their traceback.
        """
        from pytest_scaling.sweep import check_arguments, sweep

        if family is None:
            raise TypeError("scaling.sweep() needs the family to sweep, e.g. scaling.sweep(model_family, lrs=...)")
        options = {"device": self.device, "executor": self.executor, "progress": Progress(stream=self.progress_stream, tally=self.tally), **kwargs,
                   **({"bf16": True} if self.bf16 else {})}
        seeds = self.seeds if seeds is None else seeds
        try:
            check_arguments(family, widths=widths, lrs=lrs, seeds=seeds, **options)
            if "cache" not in options:
                options["cache"] = self._open_cache()
        except (CacheError, TypeError, ValueError) as err:
            pytest.fail(str(err), pytrace=False)
        try:
            return sweep(family, widths=widths, lrs=lrs, seeds=seeds, **options)
        except CacheError as err:
            pytest.fail(str(err), pytrace=False)

    def record(self, name: str, /, **values: Any) -> None:
        """Store a snapshot of JSON-able ``values`` under ``name``, with the running test's node id, for the report; a
        record of a known ``property`` without ``worse`` takes its property's.

        Anything not JSON-able fails here, at the call.
        """
        if not isinstance(name, str):
            raise TypeError(f"scaling.record(): the name must be a str, got {type(name).__name__}")
        if values.get("property") is not None and "worse" not in values:
            from pytest_scaling.properties import PROPERTIES  # a test that records is past plugin load: torch is in

            if values["property"] in PROPERTIES:  # which way is worse: what a baseline judges the value by
                values["worse"] = PROPERTIES[values["property"]].worse
        try:
            snapshot = json.loads(json.dumps(values))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"scaling.record({name!r}): values must be JSON-serialisable: {exc}") from None
        self.records.append({"name": name, "test": _current_test(), "values": snapshot})

    def close(self) -> None:
        """Close the run cache, if a sweep opened it, and delete a private one."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        if self._private_dir is not None:
            self._private_dir.cleanup()
            self._private_dir = None

    def _open_cache(self) -> ResultCache | None:
        """The run cache in ``cache_dir``, or the session's private one (opened, and created if missing, on first
        use), or None."""
        if self._cache is None and self.cache_dir is not None:
            self._cache = ResultCache.in_dir(self.cache_dir)
        elif self._cache is None and self.share_runs:
            self._private_dir = tempfile.TemporaryDirectory(prefix="pytest-scaling-runs-")
            self._cache = ResultCache.in_dir(self._private_dir.name)
        return self._cache


def first_seeds(seeds: list[int], n: int | None) -> list[int]:
    """The first ``n`` of ``seeds`` (None: all); past the last the sequence continues (seeds 0, 1 and n = 3 give 0, 1,
    2), for a grid whose noise needs more seeds than the tier's other properties."""
    if n is None or n <= len(seeds):
        return list(seeds[:n])
    start = max(seeds) + 1
    return [*seeds, *range(start, start + n - len(seeds))]


def _current_test() -> str | None:
    """The node id of the test pytest is running (from PYTEST_CURRENT_TEST), or None outside one."""
    current = os.environ.get("PYTEST_CURRENT_TEST")
    return current.rsplit(" (", 1)[0] if current else None
