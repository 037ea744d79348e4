"""Sweep progress for humans: runs done / total, current width, ETA; and, where the session stated a plan, the whole
run's runs done against the plan's and its ETA (``RunTally``).

It writes to the stream it is given, by default the process's stderr (``sys.__stderr__``); the plugin gives one that
writes past pytest's output capture. On a TTY one line is redrawn in place; elsewhere (CI logs) a plain line is printed at
most every ``interval`` seconds and at the end, with no control characters. Nothing is shown
for sweeps that finish within ``delay`` seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TextIO

from .report.table import duration


@dataclass
class RunTally:
    """The whole run's runs against its plans (``cost.plan_suite``): how many the plans count, how many distinct runs
    are done (trained, or read from the cache by their keys: a run that two properties share counts once, as the
    plan counts it), since when."""

    planned: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    _keys: set[str] = field(default_factory=set, repr=False)

    def count(self, n: int, keys: Collection[str] | None = None) -> None:
        """``n`` runs done; with their cache ``keys``, only those not counted before."""
        if keys is None:
            self.done += n
        else:
            fresh = set(keys) - self._keys
            self._keys |= fresh
            self.done += len(fresh)

    def line(self) -> str:
        """"; run 120/292 planned runs, 3m 10s, ETA 4m 20s" (at the pace so far), or "" with no plan."""
        if not self.planned:
            return ""
        elapsed = time.monotonic() - self.started
        eta = f", ETA {duration(elapsed / self.done * max(self.planned - self.done, 0))}" if self.done else ""
        return f"; run {self.done}/{self.planned} planned runs, {duration(elapsed)}{eta}"


class Progress:
    def __init__(self, total: int = 0, *, stream: TextIO | None = None, delay: float = 2.0, interval: float = 30.0,
                 enabled: bool = True, tally: RunTally | None = None):
        self.stream = stream if stream is not None else sys.__stderr__
        self.delay, self.interval, self.enabled = delay, interval, enabled and self.stream is not None
        self.tally = tally
        self.total, self.done, self.label = total, 0, ""
        self._start = self._last = time.monotonic()
        self._shown = False

    @property
    def _tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def start(self, total: int, label: str) -> None:
        self.total, self.done, self.label = total, 0, label
        self._start = self._last = time.monotonic()
        self._shown = False

    def line(self, width: int | None = None) -> str:
        elapsed = time.monotonic() - self._start
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        where = f" width {width}" if width is not None else ""
        eta_text = f", ETA {eta:.0f}s" if eta == eta else ""
        run = self.tally.line() if self.tally is not None else ""
        return f"[pytest-scaling] {self.label}: {self.done}/{self.total} runs{where}, {elapsed:.0f}s{eta_text}{run}"

    def read_back(self, keys: Collection[str]) -> None:
        """The runs of these cache ``keys`` came from the cache: done for the whole run, nothing to draw."""
        if self.tally is not None:
            self.tally.count(len(keys), keys)

    def advance(self, n: int, width: int | None = None, keys: Collection[str] | None = None) -> None:
        """``n`` runs trained (``keys``: their cache keys, where the sweep has a cache)."""
        self.done += n
        if self.tally is not None:
            self.tally.count(n, keys)
        now = time.monotonic()
        if not self.enabled or now - self._start < self.delay:
            return
        if self._tty:
            self._write("\r\x1b[2K" + self.line(width))
        elif now - self._last >= self.interval or not self._shown:
            self._write(self.line(width) + "\n")
        else:
            return
        self._shown, self._last = True, now

    def finish(self) -> None:
        if self._shown:
            self._write(("\r\x1b[2K" if self._tty else "") + self.line() + " done\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
