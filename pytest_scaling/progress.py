"""Sweep progress for humans: runs done / total, current width, ETA.

It writes to the real terminal stream (``sys.__stderr__``), so it shows under pytest's output
capture. On a TTY one line is redrawn in place; elsewhere (CI logs) a plain line is printed at
most every ``interval`` seconds and at the end, with no control characters. Nothing is shown
for sweeps that finish within ``delay`` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int = 0, *, stream: TextIO | None = None, delay: float = 2.0, interval: float = 30.0, enabled: bool = True):
        self.stream = stream if stream is not None else sys.__stderr__
        self.delay, self.interval, self.enabled = delay, interval, enabled and self.stream is not None
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
        return f"[pytest-scaling] {self.label}: {self.done}/{self.total} runs{where}, {elapsed:.0f}s{eta_text}"

    def advance(self, n: int, width: int | None = None) -> None:
        self.done += n
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
