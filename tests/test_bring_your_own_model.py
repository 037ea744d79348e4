"""The reference suite runs on a user's own model family, both ways the README documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_scaling.properties import suite_properties

REPO = Path(__file__).resolve().parents[1]
OVERRIDE = """
import pytest
from my_models import family


@pytest.fixture(scope="session")
def model_family():
    return family
"""


@pytest.mark.parametrize("how", ["conftest override", "--scaling-family"])
def test_the_suite_checks_a_users_own_gpt(pytester: pytest.Pytester, how: str) -> None:
    pytester.makepyfile(
        test_suite=(REPO / "scaling_tests" / "test_suite.py").read_text(),
        my_models=(REPO / "examples" / "my_models.py").read_text(),
    )
    args = ["-k", "TestSuite and test_coord_check", "--scaling-tier", "smoke", "--scaling-no-cache", "-p", "no:cacheprovider",
            "--scaling-report", "report.json"]
    if how == "conftest override":
        pytester.makeconftest(OVERRIDE)
    else:
        args += ["--scaling-family", "my_models:family"]
    result = pytester.runpytest_subprocess(*args)
    # Every other suite property of the two suite classes in test_suite.py is deselected.
    result.assert_outcomes(passed=1, deselected=2 * len(suite_properties()) - 1)
    records = json.loads((pytester.path / "report.json").read_text())["records"]
    assert [(r["property"], r["family"], r["status"]) for r in records] == [("coord_check", "my-gpt", "pass")]
