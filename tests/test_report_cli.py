"""The ``pytest-scaling`` command: render saved reports and compare runs, with CI exit codes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_scaling.baseline import make_baseline
from pytest_scaling.cli import main
from pytest_scaling.report.model import dump_json, make_record, make_report

ENV = {"tier": "cpu", "device": "cpu", "torch": "2.x", "commit": None}


def _report(slope: float) -> dict[str, Any]:
    """A report with one lr_transfer record of this slope (seed noise 0.01) and one record without a value."""
    raw = [{"name": "lr_transfer[m]", "test": "t.py::test_a",
            "values": {"property": "lr_transfer", "family": "m", "value": slope, "ci": [slope - 0.02, slope + 0.02],
                       "threshold": 0.3, "noise": 0.01}},
           {"name": "note", "test": "t.py::test_b", "values": {"widths": [8, 16]}}]
    return make_report([make_record(record, "pass") for record in raw], ENV)


def _write(path: Path, document: dict[str, Any]) -> str:
    """Write a document as JSON and return its path as a string."""
    path.write_text(dump_json(document))
    return str(path)


def test_report_renders_each_format(tmp_path: Path) -> None:
    results = _write(tmp_path / "r.json", _report(0.05))
    outputs = [str(tmp_path / name) for name in ("out.md", "out.html", "copy.json")]
    assert main(["report", results, *[arg for path in outputs for arg in ("-o", path)]]) == 0
    assert "| lr_transfer " in Path(outputs[0]).read_text()
    page = Path(outputs[1]).read_text()
    assert "data:image/png;base64," in page and "http" not in page
    assert json.loads(Path(outputs[2]).read_text()) == _report(0.05)


@pytest.mark.parametrize(("slope", "code", "status"), [(0.05, 0, "pass"), (0.2, 1, "regressed"), (0.0, 0, "improved")])
def test_compare_exits_1_on_regressions(tmp_path: Path, capsys: pytest.CaptureFixture[str], slope: float, code: int,
                                        status: str) -> None:
    base = _write(tmp_path / "base.json", make_baseline(_report(0.05)))
    new = _write(tmp_path / "new.json", _report(slope))
    assert main(["compare", base, new]) == code
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "family m (1 records)" and out.splitlines()[3].endswith(status)
    assert ("regressed beyond 3σ of seed noise against the baseline: lr_transfer[m]" in out) == (status == "regressed")
    assert ("improved beyond 3σ of seed noise against the baseline: lr_transfer[m]" in out) == (status == "improved")


def test_compare_takes_a_report_as_the_base_and_redoes_an_earlier_comparison(tmp_path: Path) -> None:
    base = _write(tmp_path / "old.json", _report(0.05))
    compared = _report(0.2)
    compared["records"][0]["status"] = "regressed"
    assert main(["compare", base, _write(tmp_path / "new.json", compared)]) == 1
    assert main(["compare", base, _write(tmp_path / "same.json", _report(0.05))]) == 0


def test_compare_across_tiers_warns_and_compares_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = copy.deepcopy(_report(0.05))
    other["environment"]["tier"] = "gpu"
    assert main(["compare", _write(tmp_path / "b.json", other), _write(tmp_path / "n.json", _report(0.9))]) == 0
    assert "warning: the baseline is from another tier gpu vs cpu" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read it"), ("[1", "not valid JSON"), ('{"kind": "baseline"}', "not a report file"),
     ('{"kind": "report", "schema_version": 0}', "schema version 0")],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None,
                                          message: str) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    assert main(["report", str(path), "-o", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and err.startswith("pytest-scaling: error: ")


def test_an_unknown_output_format_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", _write(tmp_path / "r.json", _report(0.05)), "-o", str(tmp_path / "r.txt")]) == 2
    assert "cannot tell the report format of .txt" in capsys.readouterr().err


def test_data_a_figure_cannot_use_is_noted_in_the_html(tmp_path: Path) -> None:
    report = _report(0.05)
    report["records"][0]["data"] = {"widths": [8, 16], "lrs": [0.1], "losses": [1.0, 2.0]}
    assert main(["report", _write(tmp_path / "r.json", report), "-o", str(tmp_path / "r.html")]) == 0
    assert "(no figure: the recorded data does not fit one: " in (tmp_path / "r.html").read_text()
