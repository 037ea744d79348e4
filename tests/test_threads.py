"""The thread plan: torch trains with the cores this process may use and finds idle, an explicit choice is kept,
and the plugin states the plan in the report and leaves torch's thread count as it found it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from pytest_scaling import threads
from pytest_scaling.threads import ThreadPlan, plan_threads, usable_cores


def test_a_cgroup_quota_caps_the_usable_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert usable_cores(tmp_path) == 1  # 1.5 cores of quota: one thread per whole core
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == 4
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(tmp_path) == 2


def test_the_busy_cores_are_read_from_the_machines_busy_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = tmp_path / "stat"
    samples = iter(["cpu  100 0 100 800 0 0 0 0 0 0\n", "cpu  250 0 250 1500 0 0 0 0 0 0\n"])  # 300 busy of 1000

    def sleep(seconds: float) -> None:
        stat.write_text(next(samples))

    stat.write_text(next(samples))
    monkeypatch.setattr(threads.time, "sleep", sleep)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.busy_cores(4, stat=stat) == 1  # 30% of 4 cores
    assert threads.busy_cores(4, stat=tmp_path / "missing") == 0


@pytest.mark.parametrize(("cores", "busy", "workers", "expected"), [
    (2, 0, 1, 2), (2, 1, 1, 1), (2, 2, 1, 1), (8, 2, 1, 6), (8, 0, 4, 2), (8, 7, 4, 1),
])
def test_the_plan_takes_the_idle_usable_cores_shared_among_workers(
        monkeypatch: pytest.MonkeyPatch, cores: int, busy: int, workers: int, expected: int) -> None:
    for variable in threads.THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads, "busy_cores", lambda n: busy)
    plan = plan_threads()
    assert plan == ThreadPlan(threads=expected, cores=cores, workers=workers, busy=busy)
    assert plan.describe().startswith(f"{expected} ({cores} usable cores")


def test_an_explicit_choice_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert plan_threads().threads == 3 and plan_threads().describe() == "3 (set by OMP_NUM_THREADS)"
    assert plan_threads(5).describe() == "5 (set by --scaling-threads)"


def test_the_plugin_trains_with_the_plan_states_it_and_restores_torch(pytester: pytest.Pytester) -> None:
    before = torch.get_num_threads()
    pytester.makepyfile(textwrap.dedent("""
        import torch

        def test_threads(scaling):
            print(f"THREADS={torch.get_num_threads()}")
    """))
    report = pytester.path / "report.json"
    result = pytester.runpytest_inprocess("-p", "no:hypothesispytest", "-s", "--scaling-threads", "3",
                                          "--scaling-report", str(report))
    assert result.ret == 0 and "THREADS=3" in result.stdout.str()
    assert json.loads(report.read_text())["environment"]["threads"] == "3 (set by --scaling-threads)"
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("value", ["0", "two"])
def test_a_bad_thread_count_is_a_one_line_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_nothing(): pass\n")
    result = pytester.runpytest_inprocess("-p", "no:hypothesispytest", "--scaling-threads", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --scaling-threads must be a positive integer, got '{value}'"])
