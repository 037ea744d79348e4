"""Diagnosis (pytest_scaling.diagnosis, --scaling-diagnose): a failing property rerun with each known fix, the fix that
restores it named with its numbers, cached like every run, and shown in the failure, the terminal and the reports."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import pytest_scaling.sweep
from examples import zoo
from pytest_scaling import checks
from pytest_scaling.diagnosis import AS_WRITTEN, Diagnosis, Trial
from pytest_scaling.properties import suite_properties
from pytest_scaling.report.html import render as render_html
from pytest_scaling.report.markdown import render as render_markdown
from pytest_scaling.tiers import CoordCheckGrid

from conftest import training_session

#: The coordinate check from twice the zoo's base width (from the base, d_head 8, one seed of the clean model read
#: 0.18) at a fixed LR, one seed: seeds 0-4 read 0.76-0.92 as written, 0.005-0.086 with the readout × 1/m.
COORD = CoordCheckGrid(widths=(64, 128, 256, 512), lr=1e-2, steps=3, batch_size=16, max_abs_slope=0.15)


def diagnosis(*trials: Trial, worse: str = "higher", as_written: float = 0.9) -> Diagnosis:
    return Diagnosis("coord_check", "fam", 0.15, worse, Trial(AS_WRITTEN, AS_WRITTEN, as_written, False), trials,
                     (Trial("attention_1_over_d", "attention 1/d", note="not applicable: no attention call"),))


def test_the_conclusion_names_what_restored_the_property_with_its_numbers_and_what_did_not():
    found = diagnosis(Trial("readout_multiplier", "readout × 1/m", 0.02, True),
                      Trial("mup_hidden_lr", "μP hidden LR η/m", 0.85, False))
    assert found.conclusion() == "restored by: readout × 1/m (0.9 → 0.02); not by: μP hidden LR η/m (0.85)"
    table = found.table()
    assert "as written" in table and "attention 1/d" in table and "not run" in table and "no attention call" in table
    assert Diagnosis.from_dict(json.loads(json.dumps(found.to_dict()))) == found


def test_without_a_restoring_intervention_it_says_so_and_shows_the_closest():
    found = diagnosis(Trial("a", "fix a", -0.5, False), Trial("b", "fix b", 0.3, False), worse="higher_abs")
    assert found.conclusion() == ("no single intervention restores coord_check; closest: fix b (0.9 → 0.3, threshold "
                                  "0.15); tried: fix a (-0.5), fix b (0.3)")
    nothing = Diagnosis("coord_check", "fam", 0.15, "higher", Trial(AS_WRITTEN, AS_WRITTEN, 0.9, False))
    assert nothing.conclusion() == "no intervention applies to fam for coord_check"


def test_a_planted_mistake_is_diagnosed_to_its_cause_and_a_second_diagnosis_trains_nothing(tmp_path, monkeypatch):
    trained: list[int] = []
    train_width = pytest_scaling.sweep.train_width

    def counting(family, width, members, *args, **kwargs):
        trained.append(len(members))
        return train_width(family, width, members, *args, **kwargs)

    monkeypatch.setattr(pytest_scaling.sweep, "train_width", counting)
    family = zoo.make("no_readout_multiplier")
    found = checks.diagnose(training_session(cache_dir=tmp_path), family, "coord_check", COORD)
    assert [t.name for t in found.restored_by] == ["readout_multiplier"]
    assert found.as_written.passed is False and found.as_written.value > 0.5
    assert {t.name: t.passed for t in found.trials} == {"readout_multiplier": True, "mup_hidden_lr": False}
    assert {t.name for t in found.not_tried} == {"zero_readout", "attention_1_over_d"}  # already zero, already 1/d
    assert found.conclusion().startswith("restored by: readout × 1/m")
    assert sum(trained) == 12  # three families (as written and two interventions), four widths, one seed

    trained.clear()
    again = checks.diagnose(training_session(cache_dir=tmp_path), family, "coord_check", COORD)
    assert trained == [] and again == found


def test_a_property_that_passes_is_not_diagnosed():
    session = training_session()
    found = checks.diagnose(session, zoo.make(), "coord_check", COORD)
    assert found.as_written.passed is True and found.trials == () and found.not_tried == ()
    assert found.conclusion() == "coord_check passes as written: nothing to diagnose"
    assert session.records[-1]["values"]["diagnosis"]["conclusion"] == found.conclusion()


def test_bad_arguments_fail_before_training():
    with pytest.raises(ValueError, match="unknown scaling property 'nope'"):
        checks.diagnose(training_session(), zoo.make(), "nope")
    with pytest.raises(ValueError, match="unknown intervention 'nope'"):
        checks.diagnose(training_session(), zoo.make(), "coord_check", COORD, interventions=("nope",))
    with pytest.raises(ValueError, match="max_interventions must be a positive int"):
        checks.diagnose(training_session(), zoo.make(), "coord_check", COORD, max_interventions=0)


def test_the_budget_caps_the_interventions_that_train():
    found = checks.diagnose(training_session(), zoo.make("no_readout_multiplier"), "coord_check", COORD,
                            interventions=("readout_multiplier", "mup_hidden_lr"), max_interventions=1)
    assert [t.name for t in found.trials] == ["readout_multiplier"]
    assert [(t.name, t.note) for t in found.not_tried] == [("mup_hidden_lr", "over the budget of 1")]


def test_the_reports_render_a_diagnosis_table_conclusion_and_figure():
    found = diagnosis(Trial("readout_multiplier", "readout × 1/m", 0.02, True))
    record = {"name": "coord_check[fam]", "test": "t", "status": "fail", "property": "coord_check", "family": "fam",
              "value": 0.9, "ci": None, "threshold": 0.15, "worse": "higher", "seed_values": None, "noise": None,
              "baseline": None, "data": {"diagnosis": found.to_dict()}}
    report = {"environment": {"tier": "cpu", "device": "cpu", "torch": "x", "commit": None}, "records": [record]}
    markdown = render_markdown(report)
    assert "### Diagnosis of coord_check[fam]" in markdown and "| readout × 1/m" in markdown
    assert "**restored by: readout × 1/m (0.9 → 0.02)**" in markdown
    page = render_html(report)
    assert "<h3>Diagnosis</h3>" in page and "restored by: readout × 1/m (0.9 → 0.02)" in page
    assert page.count("data:image/png;base64,") == 1  # the value panel and the diagnosis panel, one figure


ZOO_SUITES = """
    from pytest_scaling import ScalingSuite
    from pytest_scaling.tiers import CoordCheckGrid
    from examples import zoo

    GRIDS = {"coord_check": CoordCheckGrid(widths=(64, 128, 256, 512), lr=1e-2, steps=3, batch_size=16, max_abs_slope=0.15)}


    class TestBroken(ScalingSuite):
        family = zoo.make("no_readout_multiplier")
        grids = GRIDS


    class TestClean(ScalingSuite):
        family = zoo.make(name="zoo-clean")
        grids = GRIDS
"""


def test_scaling_diagnose_replaces_the_untested_hint_with_what_was_measured(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_zoo_diagnosis=textwrap.dedent(ZOO_SUITES))
    pytester.syspathinsert(Path(__file__).resolve().parents[1])  # the repository: examples.zoo
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--scaling-tier", "smoke", "--scaling-no-cache",
                                          "-rN", "-k", "test_coord_check", "--scaling-diagnose", "--scaling-report",
                                          "r.md")
    result.assert_outcomes(passed=1, failed=1, deselected=2 * len(suite_properties()) - 2)
    out = result.stdout.str()
    assert "coordinate check failed" in out and "untested hint" not in out
    result.stdout.fnmatch_lines(["*diagnosis of coord_check on zoo-gpt (threshold 0.15*",
                                 "*restored by: readout × 1/m (*"])
    assert out.count("diagnosis of coord_check") == 2  # the failure, and the scaling summary's line; not for TestClean
    assert "### Diagnosis of coord_check[zoo-gpt]" in (pytester.path / "r.md").read_text()


def test_an_intervention_whose_check_cannot_run_the_model_is_reported_not_raised(monkeypatch):
    from pytest_scaling.interventions import ReadoutMultiplier

    def broken(self, family):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(ReadoutMultiplier, "unavailable", broken)
    found = checks.diagnose(training_session(), zoo.make("no_readout_multiplier"), "coord_check", COORD,
                            interventions=("readout_multiplier",))
    assert found.trials == () and found.not_tried[0].note == "not applicable: could not be checked (RuntimeError: shape mismatch)"
