"""Writing a report: the format is the file's extension (JSON, markdown, HTML), checked before anything trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pytest_scaling.report.model import ReportError, dump_json, write_text

FORMATS: tuple[str, ...] = (".json", ".md", ".html")


def _renderer(suffix: str) -> Callable[[dict[str, Any]], str]:
    """The function that renders a report as a file with this extension (HTML imported lazily: it loads matplotlib)."""
    if suffix == ".json":
        return dump_json
    if suffix == ".md":
        from pytest_scaling.report.markdown import render

        return render
    if suffix == ".html":
        from pytest_scaling.report.html import render

        return render
    raise ReportError(f"cannot tell the report format of {str(suffix) or 'a path without an extension'}; "
                      f"use one of {', '.join(FORMATS)}")


def check_path(path: str | Path) -> None:
    """Raise ReportError unless ``path`` names a report format, so a bad path stops the run before any training."""
    _renderer(Path(path).suffix.lower())


def write_report(report: dict[str, Any], path: str | Path) -> None:
    """Write ``report`` to ``path`` in the format its extension names."""
    path = Path(path)
    write_text(path, _renderer(path.suffix.lower())(report))
