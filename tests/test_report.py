"""Reports and baselines through ``pytester``: synthetic records (no training), written, saved, compared, gated."""

from __future__ import annotations

import json
import textwrap

import pytest

import pytest_scaling.families  # noqa: F401 - in-process runs unload what they import, and numpy's extensions load once
from pytest_scaling.report.model import SCHEMA_VERSION

SUITE = """
    import os

    import pytest

    SLOPE = float(os.environ.get("SLOPE", "0.05"))


    def test_transfer(scaling):
        scaling.record("lr_transfer[tiny]", property="lr_transfer", family="tiny", value=SLOPE,
                       ci=[SLOPE - 0.02, SLOPE + 0.02], threshold=0.3, seed_values=[SLOPE - 0.01, SLOPE + 0.01],
                       noise=0.01, widths=[8, 16], lrs=[0.01, 0.1],
                       mean_log2_lr=[-5.0, -5.1],
                       losses=[[[1.0, 1.1], [0.8, None]], [[0.9, 0.95], [0.7, 0.75]]])

    def test_coord(scaling):
        scaling.record("coord_check[tiny]", property="coord_check", family="tiny", value=0.1, threshold=0.5,
                       widths=[8, 16], layers=["in", "out"], slopes=[[0.1, 0.05], [-0.02, 0.01]])

    def test_fails(scaling):
        scaling.record("wider_is_better[tiny]", property="wider_is_better", family="tiny", threshold=0.02,
                       widths=[8, 16], losses=[1.0, 1.2])
        assert False, "wider was worse"
"""


def inline(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the synthetic suite in-process (without hypothesis's plugin: re-importing it costs seconds)."""
    return pytester.runpytest_inprocess("-p", "no:hypothesispytest", *args)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory holding the synthetic suite."""
    pytester.makepyfile(test_suite=textwrap.dedent(SUITE))
    return pytester


def test_reports_are_written_in_all_three_formats(suite: pytest.Pytester) -> None:
    result = inline(suite, "--scaling-report", "out/r.json", "--scaling-report", "r.md", "--scaling-report", "r.html")
    result.assert_outcomes(passed=2, failed=1)
    report = json.loads((suite.path / "out/r.json").read_text())
    assert report["schema_version"] == SCHEMA_VERSION and report["kind"] == "report"
    assert set(report["environment"]) == {"tier", "device", "precision", "torch", "threads", "commit", "plans"}
    assert report["environment"]["plans"] is None  # no suite test: nothing planned
    assert report["environment"]["tier"] == "cpu" and report["environment"]["device"] == "cpu"
    by_name = {record["name"]: record for record in report["records"]}
    transfer = by_name["lr_transfer[tiny]"]
    assert transfer["test"] == "test_suite.py::test_transfer" and transfer["status"] == "pass"
    assert transfer["value"] == 0.05 and transfer["ci"] == pytest.approx([0.03, 0.07]) and transfer["threshold"] == 0.3
    assert transfer["data"]["lrs"] == [0.01, 0.1] and transfer["baseline"] is None
    assert by_name["wider_is_better[tiny]"]["status"] == "fail" and by_name["wider_is_better[tiny]"]["value"] is None
    markdown = (suite.path / "r.md").read_text()
    assert "### tiny" in markdown and "| record " in markdown and "| coord_check " in markdown and "| fail " in markdown
    html = (suite.path / "r.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html


def test_the_terminal_summary_is_a_table_of_records(suite: pytest.Pytester) -> None:
    result = inline(suite)
    result.stdout.fnmatch_lines(["*= scaling =*", "3 records (cpu tier, cpu):", "family tiny (3 records)",
                                 "record * value * ± noise * threshold * baseline * z * status",
                                 "lr_transfer * 0.05 * 0.01 * 0.3 * - * - * pass"])
    section = result.outlines[next(i for i, line in enumerate(result.outlines) if "= scaling =" in line):]
    assert max(len(line) for line in section) <= 120


def test_an_unchanged_run_against_its_baseline_passes(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOPE", "0.05")
    saved = inline(suite, "--scaling-save-baseline", "base.json", "-k", "not fails")
    assert saved.ret == 0
    baseline = json.loads((suite.path / "base.json").read_text())
    assert baseline["kind"] == "baseline" and baseline["environment"]["tier"] == "cpu"
    assert baseline["metrics"]["lr_transfer[tiny]"]["noise"] == pytest.approx(0.01)
    assert baseline["metrics"]["lr_transfer[tiny]"]["worse"] == "higher_abs"
    assert baseline["metrics"]["coord_check[tiny]"]["noise"] is None
    assert baseline["metrics"]["coord_check[tiny]"]["worse"] == "higher"
    again = inline(suite, "--scaling-baseline", "base.json", "-k", "not fails", "--scaling-report", "r.json")
    assert again.ret == 0
    records = json.loads((suite.path / "r.json").read_text())["records"]
    assert {record["status"] for record in records} == {"pass"}
    assert all(record["baseline"]["delta"] == 0 and record["baseline"]["z"] == 0 for record in records)


@pytest.mark.parametrize(
    ("slope", "status", "code"), [(0.2, "regressed", 1), (-0.2, "regressed", 1), (0.0, "improved", 0)]
)
def test_a_metric_beyond_its_seed_noise_is_regressed_or_improved(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, slope: float, status: str, code: int
) -> None:
    inline(suite, "--scaling-save-baseline", "base.json", "-k", "not fails")
    monkeypatch.setenv("SLOPE", str(slope))
    result = inline(suite, "--scaling-baseline", "base.json", "-k", "not fails", "--scaling-report", "r.md")
    assert result.ret == code
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"lr_transfer * {status}"])
    assert f"| {status} " in (suite.path / "r.md").read_text()
    named = "regressed beyond 3σ of seed noise against the baseline: lr_transfer[tiny]"
    assert (named in result.stdout.str()) == (status == "regressed")


def test_a_baseline_from_another_tier_warns_and_compares_nothing(suite: pytest.Pytester) -> None:
    inline(suite, "--scaling-save-baseline", "base.json", "--scaling-tier", "smoke", "-k", "not fails")
    result = inline(suite, "--scaling-baseline", "base.json", "-k", "not fails")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["warning: the baseline is from another tier smoke vs cpu *; nothing was compared"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "scaling baseline */base.json: not valid JSON *"),
        ('{"kind": "report", "schema_version": 1}', 'scaling baseline */base.json: not a baseline file *'),
        ('{"kind": "baseline", "schema_version": 99, "metrics": {}, "environment": {}}',
         "scaling baseline */base.json: schema version 99, this pytest-scaling reads 2; save it again"),
    ],
)
def test_a_corrupt_baseline_is_a_one_line_usage_error(suite: pytest.Pytester, content: str, message: str) -> None:
    (suite.path / "base.json").write_text(content)
    result = inline(suite, "--scaling-baseline", "base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.errlines if line.strip()]
    assert len(lines) == 1, lines
    result.stderr.fnmatch_lines([f"ERROR: *{message}"])


def test_a_report_path_without_a_known_extension_is_a_usage_error(suite: pytest.Pytester) -> None:
    result = inline(suite, "--scaling-report", "r.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --scaling-report */r.txt: cannot tell the report format of .txt; *"])


def test_the_ini_key_names_reports_from_the_rootdir(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\nscaling_report = out/r.md out/r.json\n")
    inline(suite, "-k", "coord")
    assert (suite.path / "out/r.md").exists() and (suite.path / "out/r.json").exists()


def test_records_from_xdist_workers_reach_the_report(suite: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    result = inline(suite, "-p", "no:benchmark", "-n", "2", "--scaling-report", "r.json")
    result.assert_outcomes(passed=2, failed=1)
    records = json.loads((suite.path / "r.json").read_text())["records"]
    assert sorted((record["name"], record["status"]) for record in records) == [
        ("coord_check[tiny]", "pass"), ("lr_transfer[tiny]", "pass"), ("wider_is_better[tiny]", "fail")]


def test_the_markdown_report_tallies_statuses_per_family(suite: pytest.Pytester) -> None:
    inline(suite, "--scaling-report", "r.md")
    markdown = (suite.path / "r.md").read_text()
    assert "**1 fail, 2 pass**" in markdown
    assert "| family " in markdown and "| tiny " in markdown
