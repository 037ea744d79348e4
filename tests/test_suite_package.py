"""The packaged suite as a user meets it: a ScalingSuite subclass in their own repository, --scaling-family
(repeatable), built-in demonstrations replaced, and properties that do not apply saying so."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

import pytest_scaling.families  # noqa: F401 - in-process runs unload what they import, and numpy's extensions load once
from pytest_scaling import checks, families
from pytest_scaling.properties import PROPERTIES, Property, suite_properties
from pytest_scaling.session import ScalingSession
from pytest_scaling.tiers import TIERS

# A family written in the user's own module: a plain MLP the plugin parametrizes with muP.
USER_MODELS = """
    from torch import nn

    from pytest_scaling import ModelFamily, tasks

    TASK = tasks.teacher_student(input_dim=16, n_classes=4)


    def build(width):
        return nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))


    family = ModelFamily(name="user-mlp", build=build, task=TASK, base_width=32, parametrization="mup")
    other = ModelFamily(name="user-mlp-2", build=build, task=TASK, base_width=16, parametrization="mup")
    same_name = ModelFamily(name="user-mlp", build=build, task=TASK, base_width=16, parametrization="mup")
    standard = ModelFamily(name="user-mlp-sp", build=build, task=TASK, base_width=32, parametrization="sp")
"""

USER_SUITE = """
    from pytest_scaling import ScalingSuite

    from user_models import family


    class TestUserMLP(ScalingSuite):
        family = family
"""

REFERENCE_LIKE = """
    import pytest

    from pytest_scaling import ScalingSuite
    from user_models import other


    class TestSuite(ScalingSuite):
        pass


    class TestBuiltinDemo(ScalingSuite):
        family = other
        builtin = True


    @pytest.mark.scaling(property="coord_check", builtin=True)
    def test_builtin_function():
        pass
"""


def inline(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "no:hypothesispytest", "-p", "no:cacheprovider", "--scaling-tier", "smoke",
                                        "--scaling-no-cache", *args)


@pytest.fixture
def user_repo(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(user_models=textwrap.dedent(USER_MODELS))
    pytester.syspathinsert()
    return pytester


def test_a_suite_subclass_runs_every_property_or_says_why_not(user_repo: pytest.Pytester) -> None:
    user_repo.makepyfile(test_scaling=textwrap.dedent(USER_SUITE))
    result = inline(user_repo, "-rs", "--scaling-report", "r.json")
    # The smoke tier asserts the coordinate check, Adam's ε and weight decay's timescale; it does not resolve the others
    # (inconclusive), and the family gives no at_depth, so the depth properties do not apply.
    result.assert_outcomes(passed=3, skipped=len(suite_properties()) - 3)
    result.stdout.fnmatch_lines(["*inconclusive at this budget: the smoke tier does not assert lr_curve_transfer*",
                                 "*not applicable: family 'user-mlp' gives no at_depth*"])
    records = {r["property"]: r for r in json.loads((user_repo.path / "r.json").read_text())["records"]}
    assert set(records) == {prop.name for prop in suite_properties()}
    assert records["coord_check"]["status"] == "pass" and records["coord_check"]["family"] == "user-mlp"
    assert records["coord_check"]["test"] == "test_scaling.py::TestUserMLP::test_coord_check[user-mlp]"
    assert records["coord_check"]["data"]["lr_bracket"]["anchor"] > 0  # the grid was placed on the family
    assert {records[name]["status"] for name in ("depth_sensitivity", "depth_coord_check", "depth_lr_transfer")} == {"n/a"}
    assert records["power_law"]["status"] == "inconclusive" and records["power_law"]["value"] is None


def test_scaling_family_is_repeatable_and_replaces_the_builtin_demonstrations(user_repo: pytest.Pytester) -> None:
    user_repo.makepyfile(test_reference=textwrap.dedent(REFERENCE_LIKE))
    result = inline(user_repo, "-k", "test_coord_check or builtin_function", "--scaling-family", "user_models:family",
                    "--scaling-family", "user_models:other", "--scaling-report", "r.json", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*TestSuite::test_coord_check?user-mlp? PASSED*",
                                 "*TestSuite::test_coord_check?user-mlp-2? PASSED*", "*deselected*"])
    assert "TestBuiltinDemo" not in result.stdout.str() and "test_builtin_function" not in result.stdout.str()
    families = [r["family"] for r in json.loads((user_repo.path / "r.json").read_text())["records"]]
    assert families == ["user-mlp", "user-mlp-2"]


def test_without_scaling_family_the_builtin_demonstrations_run(user_repo: pytest.Pytester) -> None:
    user_repo.makepyfile(test_reference=textwrap.dedent(REFERENCE_LIKE))
    user_repo.makeconftest("import pytest\nfrom user_models import family\n\n"
                           "@pytest.fixture(scope='session')\ndef model_family():\n    return family\n")
    result = inline(user_repo, "-k", "test_coord_check or builtin_function", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*TestSuite::test_coord_check PASSED*",
                                 "*TestBuiltinDemo::test_coord_check?user-mlp-2? PASSED*", "*test_builtin_function PASSED*"])


def test_two_families_of_one_name_are_a_usage_error(user_repo: pytest.Pytester) -> None:
    user_repo.makepyfile(test_reference=textwrap.dedent(REFERENCE_LIKE))
    result = inline(user_repo, "--scaling-family", "user_models:family", "--scaling-family", "user_models:same_name")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --scaling-family: two families are named 'user-mlp'*"])


def test_a_failing_property_reads_as_its_evidence_table(user_repo: pytest.Pytester) -> None:
    user_repo.makepyfile(test_scaling=textwrap.dedent(USER_SUITE).replace("import family", "import standard as family"))
    # -rN: no short summary, which repeats the whole message where pytest sees a CI environment
    result = inline(user_repo, "-rN", "-k", "test_coord_check")
    result.assert_outcomes(failed=1, deselected=len(suite_properties()) - 1)
    result.stdout.fnmatch_lines(["*coordinate check failed: the parametrization scales with width*", "*layer*t=0*t=1*",
                                 "*(parametrization): worst slope*FAIL", "*the first to grow: *",
                                 "*untested hint (a question, not a finding*"])
    assert "Traceback" not in result.stdout.str() and "pytest_scaling/" not in result.stdout.str()
    assert result.stdout.str().count("coordinate check failed") == 1  # once: not again as a chained exception


SUITE_WITH_CHOICES = """
    from pytest_scaling import ScalingSuite
    from pytest_scaling.tiers import CoordCheckGrid, PowerLawGrid

    from user_models import family


    class TestUserMLP(ScalingSuite):
        family = family
        skip = {"adam_epsilon": "the user's optimizer is not Adam"}
        grids = {"coord_check": CoordCheckGrid(widths=(32, 64), lr=1e-2, steps=2, batch_size=8, max_abs_slope=0.15),
                 "power_law": PowerLawGrid(widths=(32, 64, 128), lrs=(1e-2,), steps=300, batch_size=64, min_r2=0.98,
                                           holdout=1, max_rel_error=0.01)}
"""


def test_a_suite_leaves_out_a_property_with_its_reason_and_runs_another_on_its_own_grid(
        user_repo: pytest.Pytester) -> None:
    user_repo.makepyfile(test_scaling=textwrap.dedent(SUITE_WITH_CHOICES))
    result = inline(user_repo, "-rs", "-k", "test_coord_check or adam_epsilon or test_power_law", "--scaling-report",
                    "r.json")
    result.assert_outcomes(passed=1, skipped=2, deselected=len(suite_properties()) - 3)
    # The family's own power-law grid does not make the smoke tier resolve a power law: still inconclusive there.
    for line in ("not asserted on user-mlp: the user's optimizer is not Adam",
                 "inconclusive at this budget: the smoke tier does not assert power_law"):
        result.stdout.fnmatch_lines([f"*{line}*"])
    records = {r["property"]: r for r in json.loads((user_repo.path / "r.json").read_text())["records"]}
    assert records["adam_epsilon"]["status"] == "skipped" and records["power_law"]["status"] == "inconclusive"
    assert records["coord_check"]["data"]["widths"] == [32, 64]


def test_a_suite_naming_no_property_is_an_error_at_import() -> None:
    from pytest_scaling import ScalingSuite

    with pytest.raises(TypeError, match="TestTypo.skip names no suite property: lr_sensitivty"):
        type("TestTypo", (ScalingSuite,), {"skip": {"lr_sensitivty": "typo"}})


@pytest.mark.parametrize("prop", [prop for prop in PROPERTIES.values() if prop.grid_in("smoke") is None],
                         ids=lambda prop: prop.name)
def test_a_check_called_directly_on_a_tier_too_small_for_it_skips_as_inconclusive(prop: Property) -> None:
    """The library checks (as the built-in demonstrations and users' own tests call them) skip, never crash or fail,
    where the tier has no grid for their property: nothing trains."""
    scaling = ScalingSession(tier=TIERS["smoke"], device=torch.device("cpu"), seeds=[0])
    scaling.sweep = lambda *args, **kwargs: pytest.fail(f"{prop.name} trained on a tier that does not assert it")
    check = getattr(checks, prop.name)
    family = families.reference_gpt()
    arguments = (family, families.reference_gpt(qk_layernorm=False)) if prop.name == "qk_layernorm_lowers_sensitivity" \
        else (family,)
    with pytest.raises(pytest.skip.Exception, match=f"inconclusive at this budget: the smoke tier does not assert "
                                                    f"{prop.name} .*or pass a grid"):
        check(scaling, *arguments)
