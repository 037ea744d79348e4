"""The HTML report in a real headless Chromium: no console errors, nothing fetched from outside, figures drawn.

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe`` (NUL-terminated JSON on
file descriptors 3 and 4), stdlib only: the page's console errors, uncaught exceptions and failed loads
arrive as events, the <img> elements are measured in the page, and a full-page screenshot shows whether
each figure's region holds a drawing. Negative controls prove the helpers catch each kind of breakage.
The report comes from the synthetic suite of test_report.py (no training).
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image, ImageStat

from test_report import inline, suite  # noqa: F401 - suite is a fixture, requested by name

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Seconds any one browser step (start, load, screenshot, close) may take before the test fails.
TIMEOUT = 60.0
#: A figure region is drawn when at least this share of its pixels is not near-white...
MIN_INK = 0.01
#: ...and its grey levels spread at least this much (a flat tint of any colour is not a figure).
MIN_SPREAD = 10.0
#: URL schemes a self-contained page may load from.
LOCAL_SCHEMES = ("data:", "file:", "about:")


class DevToolsError(Exception):
    """Chromium did not answer, answered with an error, or exited."""


@dataclass
class Figure:
    """One <img> as the page laid it out: its alt text, decoded size and box in page pixels."""

    alt: str
    natural_width: int
    natural_height: int
    box: tuple[int, int, int, int]


@dataclass
class Page:
    """What loading a page showed: console errors, the URLs requested, its images and a full-page screenshot."""

    errors: list[str]
    requests: list[str]
    figures: list[Figure]
    screenshot: Image.Image


def _high_pipe() -> tuple[int, int]:
    """A pipe whose ends are numbered 10 or above, so the child can move them onto 3 and 4 without clobbering."""
    ends = os.pipe()
    high = tuple(fcntl.fcntl(end, fcntl.F_DUPFD_CLOEXEC, 10) for end in ends)
    for end in ends:
        os.close(end)
    return high[0], high[1]


class Browser:
    """A headless Chromium started by this test, driven over its DevTools pipe, killed with its process group."""

    def __init__(self, binary: str, profile: Path) -> None:
        commands_read, self._commands = _high_pipe()
        self._replies, replies_write = _high_pipe()
        self.log = profile / "chromium.log"

        def wire() -> None:
            """In the child: the DevTools pipe is fd 3 (commands in) and fd 4 (replies out)."""
            os.dup2(commands_read, 3)
            os.dup2(replies_write, 4)

        args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-dev-shm-usage", "--mute-audio", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                "about:blank"]
        with self.log.open("wb") as log:
            # close_fds=False: with it, Popen would close fds 3 and 4 after wire(); Python's own fds are
            # non-inheritable, so nothing else leaks.
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            preexec_fn=wire, close_fds=False, start_new_session=True)
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _fail(self, why: str) -> DevToolsError:
        """An error naming what went wrong, with the end of Chromium's log."""
        tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
        return DevToolsError(f"chromium: {why}; its log ends: {' | '.join(tail) or '(empty)'}")

    def _message(self, deadline: float) -> dict[str, Any]:
        """The next message from Chromium, waiting until ``deadline`` (a time.monotonic() value)."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise self._fail(f"no answer within {TIMEOUT:.0f} s")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise self._fail(f"it exited (code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Call a DevTools method and return its result, keeping the events that arrive meanwhile."""
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            command["sessionId"] = session
        os.write(self._commands, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = self._message(deadline)
            if message.get("id") != self._next_id:
                self.events.append(message)
            elif "error" in message:
                raise DevToolsError(f"{method}: {message['error'].get('message')}")
            else:
                return message["result"]

    def wait_for(self, method: str, session: str) -> None:
        """Wait for an event of the page's session (kept in ``events`` like the others)."""
        deadline = time.monotonic() + TIMEOUT
        while not any(event.get("method") == method and event.get("sessionId") == session for event in self.events):
            self.events.append(self._message(deadline))

    def close(self) -> None:
        """Ask Chromium to quit, then kill its process group (renderers included) whatever it did."""
        try:
            self.send("Browser.close")
        except (DevToolsError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        os.close(self._commands)
        os.close(self._replies)

    def load(self, path: Path, width: int = 1280, height: int = 2400) -> Page:
        """Open ``path`` in a new tab of this size, wait for its load event and report what it showed."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(f"{domain}.enable", session)
            self.send("Emulation.setDeviceMetricsOverride", session, width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
            self.events.clear()
            self.send("Page.navigate", session, url=path.resolve().as_uri())
            self.wait_for("Page.loadEventFired", session)
            found = self.send("Runtime.evaluate", session, returnByValue=True, expression="""
                Array.from(document.images, image => {
                    const box = image.getBoundingClientRect();
                    return [image.alt, image.naturalWidth, image.naturalHeight,
                            [box.left + scrollX, box.top + scrollY, box.right + scrollX, box.bottom + scrollY]];
                })""")["result"]["value"]
            size = self.send("Page.getLayoutMetrics", session)["cssContentSize"]
            shot = self.send("Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
                             clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        finally:
            self.send("Target.closeTarget", targetId=target)
        events = [event for event in self.events if event.get("sessionId") == session]
        figures = [Figure(alt, natural_width, natural_height, tuple(round(edge) for edge in box))
                   for alt, natural_width, natural_height, box in found]
        return Page(errors=_errors(events), requests=[event["params"]["request"]["url"] for event in events
                                                      if event.get("method") == "Network.requestWillBeSent"],
                    figures=figures, screenshot=Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB"))


def _errors(events: list[dict[str, Any]]) -> list[str]:
    """The console errors among DevTools events: console.error/assert calls, uncaught exceptions, error log entries
    (failed loads among them)."""
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(f"{params['entry']['text']} {params['entry'].get('url', '')}".strip())
    return errors


def figure_problems(page: Page) -> list[str]:
    """Per <img> that did not render as a figure, why: not decoded, not laid out, or its screenshot region blank."""
    problems = []
    for figure in page.figures:
        left, top, right, bottom = figure.box
        if figure.natural_width == 0 or figure.natural_height == 0:
            problems.append(f"{figure.alt}: the image did not decode")
        elif right - left < 10 or bottom - top < 10:
            problems.append(f"{figure.alt}: laid out at {right - left}x{bottom - top} px")
        else:
            grey = page.screenshot.crop(figure.box).convert("L")
            ink = sum(grey.histogram()[:240]) / (grey.width * grey.height)
            spread = ImageStat.Stat(grey).stddev[0]
            if ink < MIN_INK or spread < MIN_SPREAD:
                problems.append(f"{figure.alt}: blank ({ink:.1%} non-white pixels, grey level sd {spread:.1f})")
    return problems


class _References(HTMLParser):
    """Collects the URL-valued attributes of a page's elements."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls.extend(value.strip() for name, value in attrs
                         if name in ("src", "href", "srcset", "poster", "action", "data") and value)


def external_references(page_html: str) -> list[str]:
    """The http(s) or protocol-relative URLs a page's src/href attributes name: none for a self-contained report."""
    parser = _References()
    parser.feed(page_html)
    return [url for url in parser.urls if url.lower().startswith(("http:", "https:", "//"))]


def outside_requests(page: Page) -> list[str]:
    """The URLs the page requested from anywhere but itself (data:, file:, about:)."""
    return [url for url in page.requests if not url.lower().startswith(LOCAL_SCHEMES)]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Chromium for the module (each page gets its own tab); skips when there is none."""
    if CHROMIUM is None:
        pytest.skip("no chromium or chromium-browser on PATH (Debian: apt-get install chromium)")
    started = Browser(CHROMIUM, tmp_path_factory.mktemp("chromium"))
    try:
        yield started
    finally:
        started.close()


def test_the_report_shows_its_figures_without_errors(suite: pytest.Pytester, browser: Browser) -> None:  # noqa: F811
    inline(suite, "--scaling-report", "r.html")
    report = suite.path / "r.html"
    page = browser.load(report)
    assert page.errors == []
    assert external_references(report.read_text(encoding="utf-8")) == [] and outside_requests(page) == []
    assert [figure.alt for figure in page.figures] == ["lr_transfer[tiny]", "coord_check[tiny]",
                                                       "wider_is_better[tiny]"]
    assert figure_problems(page) == []


@pytest.mark.parametrize(
    ("body", "check", "caught"),
    [
        ('<img alt="broken" src="data:image/png;base64,AAAA">', "figures", "broken: the image did not decode"),
        ('<img alt="white" src="white.png">', "figures", "white: blank (0.0% non-white pixels"),
        ('<img alt="missing" src="missing.png">', "console", "Failed to load resource: net::ERR_FILE_NOT_FOUND"),
        ("<script>undefined_function();</script>", "console", "ReferenceError: undefined_function is not defined"),
        ("<script>console.error('figure failed');</script>", "console", "figure failed"),
        ('<img alt="remote" src="https://example.invalid/plot.png">', "requests", "https://example.invalid/plot.png"),
        ('<link rel="stylesheet" href="//example.invalid/style.css">', "references", "//example.invalid/style.css"),
    ],
    ids=["undecodable-image", "blank-image", "missing-file", "uncaught-exception", "console-error", "remote-request",
         "remote-reference"],
)
def test_the_helpers_catch_a_broken_page(tmp_path: Path, browser: Browser, body: str, check: str, caught: str) -> None:
    Image.new("RGB", (400, 300), "white").save(tmp_path / "white.png")  # decodes, yet shows nothing
    page_html = f"<!DOCTYPE html><html><body><h1>control</h1>{body}</body></html>"
    path = tmp_path / "broken.html"
    path.write_text(page_html, encoding="utf-8")
    page = browser.load(path)
    found = {"console": page.errors, "figures": figure_problems(page), "references": external_references(page_html),
             "requests": outside_requests(page)}
    assert any(caught in problem for problem in found[check]), found
