"""A property is one module: a toy property written as one file and registered from a conftest.py runs in the
packaged suite, and appears in the reports (with its own figure), the baseline comparison, the diagnosis, the
library checks and the README's tables, with nothing else edited (docs/design.md, "The property model")."""

from __future__ import annotations

import json
import textwrap

import pytest

pytest_plugins = ["pytester"]

#: The toy property: the logits' mean |deviation| over inputs at init, per width, under a bound its grid holds. No training, so the
#: test runs in seconds; a readout initialised at zero (the ``zero_readout`` intervention) makes it pass.
TOY_MODULE = '''
    """Toy property: the logits at init stay under a bound at every width."""

    from __future__ import annotations

    from dataclasses import dataclass
    from typing import Any

    import torch

    from pytest_scaling.properties._arguments import grid_or_tier, require_check_arguments
    from pytest_scaling.property import Property
    from pytest_scaling.report import drawing


    @dataclass(frozen=True)
    class LogitGrid:
        max_mean_abs: float
        batch_size: int = 64


    def logit_scale(scaling: Any, family: Any, grid: LogitGrid | None = None) -> float:
        require_check_arguments(PROPERTY.name, grid, LogitGrid, family=family)
        grid = grid_or_tier(scaling, PROPERTY, grid)
        inputs, _ = family.task.batch(grid.batch_size, torch.Generator().manual_seed(0))
        sizes = []
        for width in family.widths:
            model, _ = family.instantiate(width, 0)
            with torch.no_grad():
                logits = model(inputs)
                sizes.append(float((logits - logits.mean(dim=0)).abs().mean()))  # a bias moves no input's logit
        PROPERTY.record(scaling, family.name, value=max(sizes), threshold=grid.max_mean_abs,
                        widths=list(family.widths), sizes=sizes)
        assert max(sizes) <= grid.max_mean_abs, f"logit_scale failed: mean |logit| {max(sizes):.3g} at init"
        return max(sizes)


    def _plot(axes: Any, record: dict[str, Any]) -> None:
        axes.plot(record["data"]["widths"], record["data"]["sizes"], "o-")
        drawing.threshold_line(axes, record["threshold"])
        drawing.width_axis(axes)


    PROPERTY = Property(
        "logit_scale", "the logits at init stay under a bound at every width", "higher",
        check=logit_scale, grids={"smoke": LogitGrid(max_mean_abs=BOUND)}, figure=((_plot, ("widths", "sizes")),),
        interventions=("zero_readout",), measures="the logits' mean |value| at init, per width",
        fails_when=lambda grid: f"mean |logit| > {grid.max_mean_abs:g} at any width",
    )
'''

CONFTEST = """
    from pytest_scaling.properties import register

    import toy_property

    register(toy_property.PROPERTY)
"""

SUITE = """
    from pytest_scaling import ScalingSuite, families


    class TestToy(ScalingSuite):
        family = families.mlp(parametrization="sp", base_width=16, widths=(16, 32, 64))
"""


@pytest.fixture
def toy_repo(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """A user's repository holding the toy property (bound ``BOUND``), its registration and a suite."""
    from pytest_scaling.properties import PROPERTIES

    monkeypatch.setattr("pytest_scaling.properties.PROPERTIES", dict(PROPERTIES))  # the registration stays in the test

    def write(bound: float) -> pytest.Pytester:
        pytester.makepyfile(toy_property=textwrap.dedent(TOY_MODULE).replace("BOUND", repr(bound)),
                            conftest=textwrap.dedent(CONFTEST), test_toy=textwrap.dedent(SUITE))
        return pytester

    return write


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "logit_scale", "--scaling-tier", "smoke",
                                "--scaling-no-cache", "--scaling-report", "r.json", "--scaling-report", "r.md",
                                "--scaling-report", "r.html", *args)
    report = json.loads((pytester.path / "r.json").read_text())
    return result, next(r for r in report["records"] if r["property"] == "logit_scale")


def test_a_property_module_runs_in_the_suite_reports_and_baseline(toy_repo) -> None:
    pytester = toy_repo(bound=10.0)
    result, record = _run(pytester, "--scaling-save-baseline", "base.json")
    result.assert_outcomes(passed=1, deselected=result.parseoutcomes()["deselected"])
    assert record["test"] == "test_toy.py::TestToy::test_logit_scale[mlp-d3-sp]" and record["status"] == "pass"
    assert len(record["data"]["sizes"]) == 3 and record["value"] == max(record["data"]["sizes"])
    assert f"| logit_scale | {record['value']:.4g} " in (pytester.path / "r.md").read_text()
    page = (pytester.path / "r.html").read_text()
    assert page.count('<img alt="') == 1 and "(no figure" not in page  # its own figure, not the fallback
    assert "logit_scale" in json.loads((pytester.path / "base.json").read_text())["metrics"].__repr__()

    result, record = _run(pytester, "--scaling-baseline", "base.json")
    result.assert_outcomes(passed=1, deselected=result.parseoutcomes()["deselected"])
    assert record["baseline"]["value"] == record["value"] and record["baseline"]["z"] == 0.0


def test_a_failing_property_module_is_diagnosed_with_the_interventions_it_names(toy_repo) -> None:
    pytester = toy_repo(bound=1e-3)
    result, record = _run(pytester, "--scaling-diagnose")
    result.assert_outcomes(failed=1, deselected=result.parseoutcomes()["deselected"])
    result.stdout.fnmatch_lines(["*logit_scale failed: mean |logit|*", "*restored by: *"])
    diagnosis = record["data"]["diagnosis"]
    assert [trial["name"] for trial in diagnosis["trials"]] == ["zero_readout"]
    assert diagnosis["trials"][0]["passed"] is True


def test_a_registered_property_has_its_check_and_its_readme_rows(toy_repo, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_scaling import checks, readme_tables
    from pytest_scaling.properties import register

    pytester = toy_repo(bound=0.5)
    monkeypatch.syspath_prepend(str(pytester.path))
    import toy_property

    register(toy_property.PROPERTY)
    assert checks.logit_scale is toy_property.logit_scale
    assert "| `logit_scale` | the logits' mean \\|value\\| at init, per width | mean \\|logit\\| > 0.5 at any width |" \
        in readme_tables.suite_table()
    assert "| `logit_scale` | not asserted |" not in readme_tables.grid_table()  # the smoke tier asserts it
    with pytest.raises(ValueError, match="a scaling property named 'logit_scale' is already registered"):
        register(type(toy_property.PROPERTY)("logit_scale", "another", "higher", check=print))
