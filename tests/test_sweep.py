"""Sweeps: the loss table and its metrics, stacking, the run cache (hits, invalidation, kill and
resume, xdist workers sharing it), the Ray executor, input checks, progress, and ``scaling.sweep``."""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pytest_scaling import families, metrics, stacking, tasks
from pytest_scaling.family import ModelFamily
from pytest_scaling.progress import Progress, RunTally
from pytest_scaling.store import CACHE_FILE, ResultCache
from pytest_scaling.sweep import SweepResult, sweep

TESTS_DIR = Path(__file__).parent
# 2 widths x 3 LRs x 2 seeds = 12 runs of a few milliseconds each.
GRID = dict(lrs=(1e-3, 1e-2, 1e-1), seeds=(0, 1), steps=8, batch_size=8)
TOTAL = 12


def tiny_family(task_seed: int = 0) -> ModelFamily:
    """A μP MLP at widths 16 and 32 on a 4-class teacher-student task."""
    return families.mlp(base_width=16, widths=(16, 32), task=tasks.teacher_student(input_dim=8, n_classes=4, seed=task_seed))


@pytest.fixture
def cache(tmp_path: Path):
    with ResultCache.in_dir(tmp_path / "cache") as result_cache:
        yield result_cache


def assert_same_runs(a: SweepResult, b: SweepResult, rtol: float = 1e-5) -> None:
    """Same grid, and every run's loss curve equal to float tolerance."""
    assert a.runs.keys() == b.runs.keys()
    for rid, run in a.runs.items():
        np.testing.assert_allclose(run.losses, b.runs[rid].losses, rtol=rtol, atol=1e-7, err_msg=str(rid))


# The result: loss table and metrics


def test_loss_table_and_metrics_count_diverged_runs_as_the_initial_loss() -> None:
    result = sweep(tiny_family(), lrs=(1e-34, 1e-2, 1e30), seeds=(0, 1), steps=10, batch_size=8)
    table, init = result.loss_table(), result.initial_losses()
    assert table.shape == (2, 3, 2) and init.shape == (2, 2)
    assert np.isinf(table[:, 2]).all() and np.isfinite(table[:, :2]).all()
    assert all(result.run(w, 1e30, s).diverged for w in (16, 32) for s in (0, 1))
    # The data stream and init depend on the seed only, so every LR starts from the same loss.
    for (w, lr, s), run in result.runs.items():
        assert run.initial_loss == init[result.widths.index(w), s]

    transfer = result.lr_transfer()
    as_initial = np.where(np.isinf(table), init[:, None, :], table)
    expected = metrics.lr_transfer(result.widths, result.lrs, as_initial, initial_loss=init)
    assert transfer.log2_lr_opt.shape == (2, 2) and np.isfinite(transfer.log2_lr_opt).all()
    np.testing.assert_array_equal(transfer.log2_lr_opt, expected.log2_lr_opt)

    seed_mean = table.mean(axis=2)
    sensitivity = result.lr_sensitivity()
    assert sensitivity.values.shape == (2, 1)
    for i in range(2):
        assert sensitivity.mean[i] == pytest.approx(metrics.lr_sensitivity(result.lrs, seed_mean[i], init[i].mean()))
    np.testing.assert_allclose(result.best_loss_per_width(), seed_mean[:, :2].min(axis=1))
    np.testing.assert_allclose(result.losses_at_lr(1e-2), seed_mean[:, 1])


def test_auto_trains_a_sweep_no_longer_than_its_probe_one_by_one_untimed(monkeypatch: pytest.MonkeyPatch) -> None:
    def timed(*args, **kwargs):
        raise AssertionError("a run no longer than the probe was timed")

    monkeypatch.setattr(stacking, "time_steps", timed)
    short = sweep(tiny_family(), stacking="auto", **{**GRID, "steps": stacking.PROBE_STEPS})
    assert short.stats.chunk_size == {16: 1, 32: 1}
    with pytest.raises(AssertionError, match="was timed"):
        sweep(tiny_family(), stacking="auto", **{**GRID, "steps": stacking.PROBE_STEPS + 1})


def test_stacked_sweep_equals_run_by_run() -> None:
    stacked = sweep(tiny_family(), stacking="all", **GRID)
    alone = sweep(tiny_family(), stacking="none", **GRID)
    assert stacked.stats.chunk_size == {16: 6, 32: 6} and alone.stats.chunk_size == {16: 1, 32: 1}
    assert_same_runs(stacked, alone)


# The run cache


def test_a_repeated_sweep_trains_nothing(cache: ResultCache) -> None:
    first = sweep(tiny_family(), cache=cache, **GRID)
    again = sweep(tiny_family(), cache=cache, **GRID)
    assert (first.stats.trained, first.stats.cached) == (TOTAL, 0)
    assert (again.stats.trained, again.stats.cached) == (0, TOTAL)
    assert len(cache) == TOTAL
    assert_same_runs(first, again, rtol=0)


MODEL_SOURCE = """
from torch import nn

def build(width):
    return nn.Sequential(nn.Linear(8, width), nn.{activation}(), nn.Linear(width, 4))
"""


@pytest.mark.parametrize("how", ["module function", "lambda elsewhere"])
def test_editing_the_model_code_retrains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, cache: ResultCache, how: str
) -> None:
    model_file = tmp_path / "toy_model_under_edit.py"
    model_file.write_text(MODEL_SOURCE.format(activation="ReLU"))
    monkeypatch.syspath_prepend(tmp_path)
    module = importlib.import_module(model_file.stem)
    request.addfinalizer(lambda: sys.modules.pop(model_file.stem))

    def family() -> ModelFamily:
        build = module.build if how == "module function" else lambda width: module.build(width)
        return ModelFamily(name="toy", build=build, task=tiny_family().task, base_width=16)

    grid = dict(widths=(16, 32), lrs=(1e-2,), seeds=(0,), steps=5, batch_size=8, cache=cache)
    before = sweep(family(), **grid)
    model_file.write_text(MODEL_SOURCE.format(activation="Sigmoid"))  # a different size, so no stale bytecode
    importlib.reload(module)
    after = sweep(family(), **grid)
    assert (after.stats.trained, after.stats.cached) == (2, 0)
    assert before.run(16, 1e-2, 0).losses[-1] != after.run(16, 1e-2, 0).losses[-1]


def test_changing_the_config_or_the_task_retrains(cache: ResultCache) -> None:
    sweep(tiny_family(), cache=cache, **GRID)
    assert sweep(tiny_family(), cache=cache, **{**GRID, "steps": 9}).stats.trained == TOTAL
    assert sweep(tiny_family(task_seed=1), cache=cache, **GRID).stats.trained == TOTAL
    assert sweep(tiny_family(), cache=cache, **GRID).stats.trained == 0


KILLED_SWEEP = """
import sys
import time

sys.path.insert(0, {tests_dir!r})
from pytest_scaling.store import ResultCache
from pytest_scaling.sweep import sweep
from test_sweep import GRID, tiny_family


class BusyAfterOneChunk(ResultCache):
    # Stands for a long sweep: after storing its first chunk, the process is still busy when killed.
    def put_many(self, items):
        super().put_many(items)
        time.sleep(600)


sweep(tiny_family(), cache=BusyAfterOneChunk({path!r}), stacking="none", **GRID)
"""


def test_a_killed_sweep_resumes_with_only_the_missing_runs(cache: ResultCache) -> None:
    script = KILLED_SWEEP.format(tests_dir=str(TESTS_DIR), path=str(cache.path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(cache) < 1:
            assert process.poll() is None, f"the sweep exited early:\n{process.stderr.read()}"
            assert time.monotonic() < deadline, "no chunk reached the cache within 60 s"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    resumed = sweep(tiny_family(), cache=cache, stacking="none", **GRID)
    assert resumed.stats.cached >= 1
    assert resumed.stats.trained == TOTAL - resumed.stats.cached
    assert_same_runs(resumed, sweep(tiny_family(), stacking="none", **GRID))


FAMILY_CONFTEST = f"""
import sys

import pytest

sys.path.insert(0, {str(TESTS_DIR)!r})
from test_sweep import tiny_family


@pytest.fixture(scope="session")
def model_family():
    return tiny_family()
"""

XDIST_TESTS = """
import os

import pytest


@pytest.mark.parametrize("lrs", [(1e-3, 1e-2), (1e-2, 1e-1), (1e-3, 1e-2, 1e-1), (1e-1, 1.0)])
def test_sweep(scaling, model_family, lrs):
    stats = scaling.sweep(model_family, lrs=lrs, steps=5, batch_size=8).stats
    total = 2 * len(lrs)
    assert stats.trained + stats.cached == total
    if os.environ.get("EXPECT_ALL_CACHED"):
        assert (stats.trained, stats.cached) == (0, total)
"""


def test_two_xdist_workers_share_one_cache(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(FAMILY_CONFTEST)
    pytester.makepyfile(XDIST_TESTS)
    cache_dir = pytester.path / "shared-cache"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = ("-p", "no:hypothesispytest", "--scaling-cache", str(cache_dir), "--scaling-tier", "smoke")
    first = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", *args)
    first.assert_outcomes(passed=4)
    first.stdout.fnmatch_lines(["created: 2/2 workers"])
    with ResultCache.in_dir(cache_dir) as shared:
        assert len(shared) == 2 * 4  # widths x the distinct LRs, one seed in the smoke tier
    monkeypatch.setenv("EXPECT_ALL_CACHED", "1")
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=4)


# The Ray executor


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed: pip install 'pytest-scaling[ray]'")
def test_the_ray_executor_gives_the_local_results() -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = sweep(tiny_family(), executor="ray", stacking="all", **GRID)
    finally:
        ray.shutdown()
    assert on_ray.stats.trained == TOTAL
    assert_same_runs(on_ray, sweep(tiny_family(), stacking="all", **GRID))


# Input checks


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"widths": (32, 16)}, "widths must be strictly increasing, got [32, 16]"),
        ({"widths": ()}, "need at least 1 width, got []"),
        ({"widths": (16, 32.0)}, "widths must be positive integers, got [16, 32.0]"),
        ({"lrs": (0.0, 1e-2)}, "lrs must be positive finite numbers, got [0.0, 0.01]"),
        ({"lrs": (1e-2, 1e-3)}, "lrs must be strictly increasing, got [0.01, 0.001]"),
        ({"seeds": (0, 0)}, "seeds must be distinct non-negative ints, got [0, 0]"),
        ({"executor": "dask"}, "unknown executor 'dask'; choose 'local' or 'ray'"),
    ],
)
def test_bad_input_is_a_one_line_value_error(change: dict, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        sweep(tiny_family(), **{**GRID, **change})
    assert str(raised.value) == message


# Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_prints_plain_lines_off_a_terminal() -> None:
    stream = io.StringIO()
    sweep(tiny_family(), progress=Progress(stream=stream, delay=0), stacking="none", **GRID)
    text = stream.getvalue()
    assert all(ch.isprintable() for ch in text.replace("\n", "")), repr(text)
    lines = text.splitlines()
    assert lines[0].startswith("[pytest-scaling] mlp-d3-mup: 1/12 runs width 16")
    assert lines[-1].startswith("[pytest-scaling] mlp-d3-mup: 12/12 runs") and lines[-1].endswith(" done")


def test_progress_counts_the_whole_run_against_its_plan(tmp_path: Path) -> None:
    """A run counts once, as the plan counts it: trained, or read back from an earlier session's cache; a second sweep
    reading back this session's runs (a property sharing them) adds nothing."""
    def run(tally: RunTally) -> None:
        sweep(tiny_family(), progress=Progress(stream=io.StringIO(), delay=0, tally=tally), stacking="none",
              cache=tmp_path, **GRID)

    tally = RunTally(planned=TOTAL)
    for _ in range(2):
        run(tally)
    assert tally.done == TOTAL
    assert tally.line().startswith(f"; run {TOTAL}/{TOTAL} planned runs, ") and tally.line().endswith("ETA 0 s")
    later = RunTally(planned=TOTAL)  # the next session finds every run in the cache: done, at once
    run(later)
    assert later.done == TOTAL
    assert RunTally().line() == ""  # no plan, nothing said


def test_progress_redraws_one_line_on_a_terminal() -> None:
    stream = FakeTerminal()
    sweep(tiny_family(), progress=Progress(stream=stream, delay=0), stacking="none", **GRID)
    text = stream.getvalue()
    assert text.count("\r") >= TOTAL and text.count("\n") == 1
    assert "12/12 runs" in text.splitlines()[-1]


# scaling.sweep and the plugin's cache options

def run_sweep_test(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    """Run one in-process test ``test_sweep(scaling)`` with ``body`` and the tiny family as ``model_family``."""
    pytester.makeconftest(FAMILY_CONFTEST)
    pytester.makepyfile(test_uses_scaling="def test_sweep(scaling, model_family):\n" + textwrap.indent(textwrap.dedent(body), "    "))
    return pytester.runpytest_inprocess("-p", "no:hypothesispytest", "--scaling-tier", "smoke", *args)


SWEEP_DEFAULTS = """
result = scaling.sweep(model_family, lrs=(1e-3, 1e-2), steps=5, batch_size=8)
assert result.family == "mlp-d3-mup" and result.seeds == (0,) and result.widths == (16, 32)
print(f"TRAINED={result.stats.trained}")
"""


def test_scaling_sweep_uses_the_model_family_and_the_session_seeds_and_cache(pytester: pytest.Pytester) -> None:
    for trained in (4, 0):
        result = run_sweep_test(pytester, SWEEP_DEFAULTS, "-s")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"*TRAINED={trained}"])
    assert (pytester.path / ".scaling" / CACHE_FILE).is_file()


def test_scaling_no_cache_trains_every_session_afresh_and_shares_runs_within_it(pytester: pytest.Pytester) -> None:
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("pytest-scaling-runs-*"))
    twice = SWEEP_DEFAULTS + "\nagain = scaling.sweep(model_family, lrs=(1e-3, 1e-2), steps=5, batch_size=8)\n" \
        "print(f'AGAIN={again.stats.trained}')\n"
    for _ in range(2):
        result = run_sweep_test(pytester, twice, "-s", "--scaling-no-cache")
        result.stdout.fnmatch_lines(["*TRAINED=4", "*AGAIN=0"])
    assert not (pytester.path / ".scaling").exists()
    assert set(Path(tempfile.gettempdir()).glob("pytest-scaling-runs-*")) == before  # the private cache is gone


def test_scaling_cache_dir_holds_the_cache_file(pytester: pytest.Pytester) -> None:
    run_sweep_test(pytester, SWEEP_DEFAULTS, "--scaling-cache", "runs").assert_outcomes(passed=1)
    with ResultCache.in_dir(pytester.path / "runs") as written:
        assert len(written) == 4
    assert not (pytester.path / ".scaling").exists()


def test_a_cache_spoilt_during_the_session_fails_the_test_in_one_line(pytester: pytest.Pytester) -> None:
    body = """
    from pathlib import Path
    Path(".scaling").mkdir()
    Path(".scaling/cache.sqlite").write_bytes(b"not a database" * 100)
    scaling.sweep(model_family, lrs=(1e-3, 1e-2), steps=5, batch_size=8)
    """
    result = run_sweep_test(pytester, body)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pytest-scaling cache *cache.sqlite cannot be used (file is not a database); "
                                 "delete it or run with --scaling-no-cache"])
    assert "Traceback" not in result.stdout.str() and "def test_sweep" not in result.stdout.str()
