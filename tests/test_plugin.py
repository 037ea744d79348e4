"""The plugin's wiring, driven through ``pytester``: options, ini keys, tiers, CUDA checks, marker, fixtures, summary."""

from __future__ import annotations

import importlib.util
import json
import textwrap

import pytest
import torch

import pytest_scaling.families  # noqa: F401 - in-process runs unload what they import, and numpy's extensions load once
from pytest_scaling.plugin import OPTIONS
from pytest_scaling.session import ScalingSession
from pytest_scaling.store import CACHE_FILE, ResultCache
from pytest_scaling.tiers import TIERS

REPORT_FIXTURES = """
    def test_report(scaling_tier, scaling_device, scaling):
        print(f"TIER={scaling_tier.name} DEVICE={scaling_device.type} SEEDS={scaling.seeds}")
        assert scaling.tier is scaling_tier and scaling.device == scaling_device and scaling.records == []
"""


def inline(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in-process, without hypothesis's plugin (re-importing hypothesis on every run costs seconds)."""
    return pytester.runpytest_inprocess("-p", "no:hypothesispytest", *args)


def run(pytester: pytest.Pytester, test_source: str, *args: str) -> pytest.RunResult:
    """Write ``test_source`` as a test module and run pytest on it in-process with ``args``."""
    pytester.makepyfile(textwrap.dedent(test_source))
    return inline(pytester, "-s", *args)


def assert_usage_error(result: pytest.RunResult, message: str) -> None:
    """Exit code 4, and stderr holds exactly one non-blank line: ``ERROR: <message>`` (a glob)."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.errlines if line.strip()]
    assert len(lines) == 1, lines
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stdout.str()


@pytest.fixture
def cuda_available(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Make ``torch.cuda.is_available()`` answer ``request.param`` for in-process runs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: request.param)


# Options and ini keys


def test_help_lists_every_option_and_ini_key(pytester: pytest.Pytester) -> None:
    result = inline(pytester, "--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["scaling-property tests (pytest-scaling):"])
    out = result.stdout.str()
    for option in OPTIONS:
        assert option.flag in out
        if option.ini:
            assert f"{option.dest} ({option.ini}):" in out


def test_defaults_are_cpu_tier_on_cpu_with_two_seeds(pytester: pytest.Pytester) -> None:
    result = run(pytester, REPORT_FIXTURES)
    result.assert_outcomes(passed=1)
    assert "TIER=cpu DEVICE=cpu SEEDS=[0, 1]" in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--scaling-seeds", "3"), "TIER=cpu DEVICE=cpu SEEDS=[0, 1, 2]"),
        (("--scaling-tier", "smoke"), "TIER=smoke DEVICE=cpu SEEDS=[0]"),
        (("--scaling-tier=smoke", "--scaling-seeds=2"), "TIER=smoke DEVICE=cpu SEEDS=[0, 1]"),
        (("--scaling-executor", "local"), "TIER=cpu DEVICE=cpu SEEDS=[0, 1]"),
    ],
)
def test_options_set_the_fixtures(pytester: pytest.Pytester, args: tuple[str, ...], expected: str) -> None:
    result = run(pytester, REPORT_FIXTURES, *args)
    result.assert_outcomes(passed=1)
    assert expected in result.stdout.str()


def test_ini_keys_set_defaults_and_the_command_line_wins(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nscaling_tier = "smoke"\nscaling_seeds = "4"\n')
    assert "TIER=smoke DEVICE=cpu SEEDS=[0, 1, 2, 3]" in run(pytester, REPORT_FIXTURES).stdout.str()
    result = inline(pytester, "-s", "--scaling-tier", "cpu", "--scaling-seeds", "1")
    assert "TIER=cpu DEVICE=cpu SEEDS=[0]" in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (("--scaling-seeds", "0"), "", "--scaling-seeds must be a positive integer, got '0'"),
        (("--scaling-seeds", "two"), "", "--scaling-seeds must be a positive integer, got 'two'"),
        ((), "scaling_seeds = -1", "--scaling-seeds (ini key scaling_seeds) must be a positive integer, got -1"),
        (("--scaling-tier", "huge"), "", "unknown scaling tier 'huge'; choose from smoke, cpu, gpu"),
        ((), "scaling_tier = huge", "unknown scaling tier 'huge'; choose from smoke, cpu, gpu"),
        (("--scaling-executor", "dask"), "", "--scaling-executor must be one of local, ray, got 'dask'"),
    ],
)
def test_invalid_values_are_one_line_usage_errors(
    pytester: pytest.Pytester, args: tuple[str, ...], ini: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    assert_usage_error(run(pytester, REPORT_FIXTURES, *args), message)


# The run cache and the executor

REPORT_CACHE = """
    def test_report(scaling):
        print(f"CACHE={scaling.cache_dir} EXECUTOR={scaling.executor}")
"""


@pytest.mark.parametrize(
    ("ini", "args", "expected"),
    [
        ("", (), "{root}/.scaling"),
        ("", ("--scaling-cache", "here"), "{root}/sub/here"),
        ("scaling_cache = fromini", (), "{root}/fromini"),
        ("scaling_cache = fromini", ("--scaling-cache", "here"), "{root}/sub/here"),
        ("scaling_cache = fromini", ("--scaling-no-cache",), "None"),
    ],
)
def test_cache_dir_comes_from_the_option_the_ini_key_or_the_rootdir(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ini: str, args: tuple[str, ...], expected: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    test_file = pytester.makepyfile(textwrap.dedent(REPORT_CACHE))
    monkeypatch.chdir(pytester.mkdir("sub"))
    result = inline(pytester, "-s", str(test_file), *args)
    result.assert_outcomes(passed=1)
    assert f"CACHE={expected.format(root=pytester.path)} EXECUTOR=local" in result.stdout.str()
    assert not any(pytester.path.rglob(CACHE_FILE)), "a session that sweeps nothing writes no cache"


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_ray_executor_is_accepted(pytester: pytest.Pytester) -> None:
    run(pytester, REPORT_CACHE, "--scaling-executor", "ray").stdout.fnmatch_lines(["*EXECUTOR=ray"])


def test_ray_executor_without_ray_is_a_usage_error(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    pytester.makeini("[pytest]\nscaling_executor = ray\n")
    assert_usage_error(
        run(pytester, REPORT_CACHE),
        "the ray executor (--scaling-executor (ini key scaling_executor)) needs Ray: pip install 'pytest-scaling[ray]'",
    )


def test_a_corrupt_cache_stops_the_session_before_collection(pytester: pytest.Pytester) -> None:
    cache_file = pytester.mkdir("runs") / CACHE_FILE
    cache_file.write_bytes(b"not a database" * 100)
    result = run(pytester, REPORT_CACHE, "--scaling-cache", "runs")
    assert_usage_error(
        result,
        f"pytest-scaling cache {cache_file} cannot be used (file is not a database); delete it or run with --scaling-no-cache",
    )
    assert "collected" not in result.stdout.str()


def test_a_cache_dir_that_is_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".sqlite", cache="")
    result = run(pytester, REPORT_CACHE, "--scaling-cache", "cache.sqlite")
    message = f"run cache directory {pytester.path / 'cache.sqlite'} is a file; give --scaling-cache a directory"
    assert_usage_error(result, message)


def test_the_plugin_does_not_import_torch_at_start_up(pytester: pytest.Pytester) -> None:
    ResultCache.in_dir(pytester.path / "runs").close()  # so the session start checks an existing cache
    pytester.makepyfile("import sys\n\ndef test_no_torch():\n    assert 'torch' not in sys.modules\n")
    result = pytester.runpytest_subprocess("-p", "no:hypothesispytest", "--scaling-cache", "runs")
    result.assert_outcomes(passed=1)


# CUDA


@pytest.mark.parametrize("cuda_available", [False], indirect=True)
@pytest.mark.parametrize(
    ("args", "reason"),
    [(("--gpu",), "--gpu was given"), (("--scaling-tier", "gpu"), "the gpu tier needs CUDA")],
)
def test_cuda_requested_without_a_device_is_a_usage_error(
    pytester: pytest.Pytester, cuda_available: None, args: tuple[str, ...], reason: str
) -> None:
    result = run(pytester, REPORT_FIXTURES, *args)
    assert_usage_error(result, f"{reason} but no CUDA device is available (torch {torch.__version__}, built with*CUDA*)")
    assert "collected" not in result.stdout.str()


@pytest.mark.parametrize("cuda_available", [True], indirect=True)
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--gpu",), "TIER=gpu DEVICE=cuda SEEDS=[0, 1, 2]"),
        (("--scaling-tier", "gpu"), "TIER=gpu DEVICE=cuda SEEDS=[0, 1, 2]"),
        (("--gpu", "--scaling-tier", "cpu"), "TIER=cpu DEVICE=cuda SEEDS=[0, 1]"),
    ],
)
def test_cuda_requested_with_a_device_selects_it(
    pytester: pytest.Pytester, cuda_available: None, args: tuple[str, ...], expected: str
) -> None:
    result = run(pytester, REPORT_FIXTURES, *args)
    result.assert_outcomes(passed=1)
    assert expected in result.stdout.str()


# The scaling marker


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = inline(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.scaling(property=*tiers=*"])


TIERED_TESTS = """
    import pytest

    @pytest.mark.scaling(property="lr_transfer", tiers=("cpu", "gpu"))
    def test_cpu_gpu():
        pass

    @pytest.mark.scaling(tiers=["gpu"])
    def test_gpu_only():
        pass

    @pytest.mark.scaling(property="coord_check")
    def test_every_tier():
        pass

    @pytest.mark.scaling(tiers=("smoke",))
    class TestSmoke:
        def test_inherits(self):
            pass

        @pytest.mark.scaling(property="closest")
        def test_closest_mark_without_tiers_inherits(self):
            pass

        @pytest.mark.scaling(tiers=("cpu",))
        def test_closest_mark_wins(self):
            pass
"""


@pytest.mark.parametrize(
    ("tier", "ran"),
    [
        ("cpu", {"test_cpu_gpu", "test_every_tier", "test_closest_mark_wins"}),
        ("smoke", {"test_every_tier", "test_inherits", "test_closest_mark_without_tiers_inherits"}),
    ],
)
def test_marker_tiers_skip_tests_of_other_tiers(pytester: pytest.Pytester, tier: str, ran: set[str]) -> None:
    result = run(pytester, TIERED_TESTS, "--strict-markers", "--scaling-tier", tier, "-rs", "-v")
    result.assert_outcomes(passed=len(ran), skipped=6 - len(ran))
    passed = {line.split("::")[-1].split()[0] for line in result.outlines if line.endswith("PASSED")}
    assert passed == ran
    result.stdout.fnmatch_lines([f"SKIPPED*this run's tier is {tier}"])


@pytest.mark.parametrize(
    ("mark", "problem"),
    [
        ('tiers=("cpuu",)', "unknown tier(s) 'cpuu'; tiers are smoke, cpu, gpu"),
        ('tiers="cpu"', "tiers must be a tuple of tier names, e.g. tiers=('cpu', 'gpu'), got 'cpu'"),
        ("tiers=()", "tiers is empty"),
        ('"lr_transfer"', "takes keyword arguments only"),
        ("prop='x'", "unknown argument(s) prop; it takes property, tiers, builtin"),
        ("property=3", "property must be a str"),
    ],
)
def test_invalid_marker_is_a_usage_error_at_collection(pytester: pytest.Pytester, mark: str, problem: str) -> None:
    source = f"import pytest\n@pytest.mark.scaling({mark})\ndef test_x():\n    pass\n"
    result = run(pytester, source)
    assert_usage_error(result, f"test_invalid_marker_is_a_usage_error_at_collection.py::test_x: @pytest.mark.scaling: {problem}")


# model_family and --scaling-family

FAMILY_MODULE = """
    import torch
    from pytest_scaling import tasks
    from pytest_scaling.family import ModelFamily

    family = ModelFamily(name="toy", build=lambda width: torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Linear(width, 3)),
                         task=tasks.teacher_student(input_dim=4, n_classes=3), base_width=8)

    def make_family():
        return family

    not_a_family = 42

    def makes_a_string():
        return "toy"
"""

SHOW_FAMILY = """
    def test_family(model_family):
        print(f"FAMILY={model_family.name}")
"""


@pytest.mark.parametrize("attr", ["family", "make_family"])
def test_scaling_family_option_loads_an_instance_or_a_factory(pytester: pytest.Pytester, attr: str) -> None:
    pytester.makepyfile(mymodels=textwrap.dedent(FAMILY_MODULE))
    result = run(pytester, SHOW_FAMILY, "--scaling-family", f"mymodels:{attr}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*FAMILY=toy*"])


def test_scaling_family_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mymodels=textwrap.dedent(FAMILY_MODULE))
    pytester.makeini("[pytest]\nscaling_family = mymodels:family\n")
    run(pytester, SHOW_FAMILY).stdout.fnmatch_lines(["*FAMILY=toy*"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mymodels", "--scaling-family expects MODULE:ATTR (e.g. mymodels:family), got 'mymodels'"),
        ("a:b:c", "--scaling-family expects MODULE:ATTR (e.g. mymodels:family), got 'a:b:c'"),
        ("mymodels:", "--scaling-family expects MODULE:ATTR (e.g. mymodels:family), got 'mymodels:'"),
        ("nosuchmodule:family", "scaling family 'nosuchmodule:family': cannot import 'nosuchmodule': "
         "ModuleNotFoundError: No module named 'nosuchmodule'"),
        ("broken:family", "scaling family 'broken:family': cannot import 'broken': ZeroDivisionError: division by zero"),
        ("mymodels:missing", "scaling family 'mymodels:missing': module 'mymodels' has no attribute 'missing'"),
        ("mymodels:not_a_family", "scaling family 'mymodels:not_a_family': expected a pytest_scaling.family.ModelFamily "
         "(or a no-argument callable returning one), got int"),
        ("mymodels:makes_a_string", "scaling family 'mymodels:makes_a_string': expected a*got str"),
    ],
)
def test_scaling_family_errors_are_one_line_usage_errors(pytester: pytest.Pytester, spec: str, message: str) -> None:
    pytester.makepyfile(mymodels=textwrap.dedent(FAMILY_MODULE), broken="x = 1 / 0\n")
    assert_usage_error(run(pytester, SHOW_FAMILY, "--scaling-family", spec), message)


def test_model_family_defaults_to_the_reference_gpt(pytester: pytest.Pytester) -> None:
    source = """
        from pytest_scaling.family import ModelFamily
        from pytest_scaling.families import reference_gpt

        def test_default(model_family):
            assert isinstance(model_family, ModelFamily) and model_family.name == reference_gpt().name
    """
    run(pytester, source).assert_outcomes(passed=1)


def test_model_family_fixture_can_be_overridden_in_conftest(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "import pytest, types\n"
        "@pytest.fixture(scope='session')\n"
        "def model_family():\n"
        "    return types.SimpleNamespace(name='mine')\n"
    )
    run(pytester, SHOW_FAMILY).stdout.fnmatch_lines(["*FAMILY=mine*"])


# The scaling session: records and the terminal summary


def test_record_stores_a_json_snapshot() -> None:
    session = ScalingSession(tier=TIERS["smoke"], device=torch.device("cpu"), seeds=[0])
    values = {"slope": [0.1, -0.05]}
    session.record("lr_transfer", name="mup", **values)
    values["slope"].append(9.0)
    test = "tests/test_plugin.py::test_record_stores_a_json_snapshot"
    assert session.records == [{"name": "lr_transfer", "test": test, "values": {"name": "mup", "slope": [0.1, -0.05]}}]


@pytest.mark.parametrize(("name", "values"), [("t", {"x": torch.zeros(1)}), (3, {})])
def test_record_rejects_what_a_report_cannot_hold(name: object, values: dict) -> None:
    session = ScalingSession(tier=TIERS["smoke"], device=torch.device("cpu"), seeds=[0])
    with pytest.raises(TypeError, match="scaling.record"):
        session.record(name, **values)  # type: ignore[arg-type]


def test_first_seeds_caps_or_continues_the_sessions_seeds() -> None:
    session = ScalingSession(tier=TIERS["cpu"], device=torch.device("cpu"), seeds=[4, 5])
    assert session.first_seeds(None) == [4, 5]
    assert session.first_seeds(1) == [4]
    assert session.first_seeds(3) == [4, 5, 6]


def test_sweep_names_the_family_it_needs() -> None:
    session = ScalingSession(tier=TIERS["smoke"], device=torch.device("cpu"), seeds=[0])
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'family'"):
        session.sweep(lrs=(1e-3,))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^scaling.sweep\(\) needs the family to sweep, e.g. scaling.sweep\(model_family"):
        session.sweep(None, lrs=(1e-3,))  # type: ignore[arg-type]


def test_terminal_summary_tables_the_records_only_when_there_are_records(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        def test_a(scaling):
            scaling.record("lr_transfer", slope=0.02)
            scaling.record("lr_transfer", slope=0.03)
            scaling.record("coord_check", worst=0.1)

        def test_b(scaling):
            pass
        """,
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*= scaling =*", "3 records (cpu tier, cpu):", "family - (3 records)",
                                 "record * status", "-*", "lr_transfer * pass", "lr_transfer * pass", "coord_check * pass"])
    quiet = run(pytester, "def test_b(scaling):\n    pass\n")
    assert "= scaling =" not in quiet.stdout.str()


@pytest.mark.parametrize("bf16", [False, True])
def test_scaling_bf16_trains_every_sweep_under_autocast_and_the_report_says_so(pytester: pytest.Pytester,
                                                                             bf16: bool) -> None:
    result = run(
        pytester,
        f"""
        from pytest_scaling import families

        def test_sweep(scaling):
            family = families.mlp(widths=(32, 64), base_width=32)
            result = scaling.sweep(family, widths=[32], lrs=[1e-3], steps=2, batch_size=4)
            assert result.config.bf16 is {bf16} and ("bf16 autocast" in " ".join(result.recipe)) is {bf16}
            scaling.record("coord_check", value=0.0)
        """,
        "--scaling-no-cache", "--scaling-report", "report.json", *(["--scaling-bf16"] if bf16 else []),
    )
    result.assert_outcomes(passed=1)
    environment = json.loads((pytester.path / "report.json").read_text())["environment"]
    assert environment["precision"] == ("bf16 autocast" if bf16 else "fp32")
    result.stdout.fnmatch_lines([f"1 records (cpu tier, cpu{', bf16 autocast' if bf16 else ''}):"])
