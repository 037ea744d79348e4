"""pytest hooks for pytest-scaling: options, the ``scaling`` marker, fixtures, reports, baselines, terminal summary.

It wires the command line and ini file to the library; it holds no science.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_scaling import baseline as baselines
from pytest_scaling.report.files import check_path, write_report
from pytest_scaling.report.model import ReportError, dump_json, environment, load, make_record, make_report, write_text
from pytest_scaling.report.markdown import diagnoses
from pytest_scaling.report.table import grouped
from pytest_scaling.session import ScalingSession
from pytest_scaling.store import CACHE_FILE, DEFAULT_CACHE_DIR, CacheError, ResultCache
from pytest_scaling.tiers import TIERS, Tier, resolve_tier

if TYPE_CHECKING:
    import torch

    from pytest_scaling.family import ModelFamily


@dataclass(frozen=True)
class _Option:
    """One command-line option; ``ini`` is the type of its matching ini key (same name as the dest), or None."""

    flag: str
    help: str
    ini: str | None = None
    metavar: str | None = None
    action: str = "store"

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


OPTIONS: tuple[_Option, ...] = (
    _Option("--gpu", "run on the CUDA device, with the gpu tier unless --scaling-tier says otherwise; "
            "a usage error when no CUDA device is available", action="store_true"),
    _Option("--scaling-tier", "grid size: smoke, cpu (default) or gpu (default with --gpu; needs CUDA)",
            ini="string", metavar="{smoke,cpu,gpu}"),
    _Option("--scaling-seeds", "seeds per grid point (default: the tier's: smoke 1, cpu 2, gpu 3; a grid that sets its own, the cpu power law's 3, keeps it)",
            ini="int", metavar="N"),
    _Option("--scaling-threads", "torch threads on the CPU (default: the cores this process may use, less those "
            "other processes keep busy, shared among xdist workers; OMP_NUM_THREADS, if set, is kept)",
            ini="int", metavar="N"),
    _Option("--scaling-report", "write a report, .html, .md or .json by extension; repeatable",
            ini="args", metavar="PATH", action="append"),
    _Option("--scaling-baseline", "compare metrics with this baseline JSON; regressions fail the run",
            ini="string", metavar="PATH"),
    _Option("--scaling-save-baseline", "save this run's metrics as a baseline JSON", metavar="PATH"),
    _Option("--scaling-cache", f"directory of the run cache (default: {DEFAULT_CACHE_DIR}/ under the rootdir)",
            ini="string", metavar="DIR"),
    _Option("--scaling-budget", "hold each suite family to this many seconds: in the suite's order, a property whose "
            "predicted runs do not fit after those before it skips as inconclusive at this budget (default: the "
            "tier's budget is stated in the plan, not held)", ini="string", metavar="SECONDS"),
    _Option("--scaling-plan", "print each suite family's plan (runs and predicted seconds per property, against the "
            "tier's budget) and exit without training", action="store_true"),
    _Option("--scaling-no-cache", "train every run afresh, reading and writing no cache on disk (within the session "
            "properties still share the runs they have in common)", action="store_true"),
    _Option("--scaling-executor", "where runs execute: local (default) or ray",
            ini="string", metavar="{local,ray}"),
    _Option("--scaling-diagnose", "when a suite property fails, rerun it with each known fix it names (zero readout, "
            "readout × 1/m, μP hidden LR, 1/d attention, qk-layernorm, z-loss, lower ε, ...) applied to the family, "
            "at most 4, and report which restores it", ini="bool", action="store_true"),
    _Option("--scaling-bf16", "train every run under bf16 autocast (matmuls in bfloat16, as large runs train); "
            "compare the verdicts with a run without it before trusting them (benchmarks/device_check.sh does)",
            ini="bool", action="store_true"),
    _Option("--scaling-family", "run the suite on this ModelFamily (or a no-argument callable returning one), "
            "imported from the current directory, in place of the built-in reference families; repeatable",
            ini="args", metavar="MODULE:ATTR", action="append"),
)
_BY_DEST = {option.dest: option for option in OPTIONS}

#: Options that parse but whose machinery is not built yet: (dest, value), value None meaning any value.
#: Giving one is a usage error; remove its entry when the feature lands.
EXECUTORS: tuple[str, ...] = ("local", "ray")

MARKER_KWARGS: tuple[str, ...] = ("property", "tiers", "builtin")
MARKER_HELP = (
    'scaling(property="lr_transfer", tiers=("cpu", "gpu"), builtin=False): a scaling test; property names it in '
    "reports, tiers (default: all) are the tiers it runs in, and it is skipped in any other; builtin=True marks a "
    "demonstration on the built-in families, which does not run when --scaling-family is given"
)


@dataclass(frozen=True)
class _Settings:
    """The run's resolved, validated configuration."""

    tier: Tier
    device_type: str
    n_seeds: int
    family_specs: tuple[str, ...]
    cache_dir: Path | None
    executor: str
    diagnose: bool = False
    bf16: bool = False
    reports: tuple[Path, ...] = ()
    baseline: dict[str, Any] | None = None
    save_baseline: Path | None = None
    threads: int | None = None
    budget: int | None = None


@dataclass(eq=False)
class _Run:
    """What the session gathers for its report: test outcomes, records from xdist workers, and the finished report."""

    outcomes: dict[str, str] = field(default_factory=dict)
    worker_records: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] | None = None
    comparison: baselines.Comparison | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Track each test's outcome: fail if any phase failed, pass once its call passed, inconclusive if skipped."""
        if report.failed:
            self.outcomes[report.nodeid] = "fail"
        elif report.skipped:
            self.outcomes.setdefault(report.nodeid, "inconclusive")
        elif report.when == "call":
            self.outcomes.setdefault(report.nodeid, "pass")


_SETTINGS = pytest.StashKey[_Settings]()
_FAMILIES = pytest.StashKey["list[ModelFamily]"]()
_SESSION = pytest.StashKey[ScalingSession]()
#: The thread plan's description, and the thread count torch had before it.
_THREADS = pytest.StashKey["tuple[str, int]"]()
_PLANS = pytest.StashKey["list[dict[str, Any]]"]()
_RUN = pytest.StashKey[_Run]()
#: The key under which an xdist worker hands its records to the controller.
WORKER_RECORDS = "scaling_records"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add OPTIONS to the "scaling" group, each with its ini key where it has one."""
    group = parser.getgroup("scaling", "scaling-property tests (pytest-scaling)")
    for option in OPTIONS:
        kwargs: dict[str, Any] = {"dest": option.dest, "action": option.action, "help": option.help}
        if option.metavar:
            kwargs["metavar"] = option.metavar
        group.addoption(option.flag, **kwargs)
        if option.ini:
            parser.addini(option.dest, f"default for {option.flag}: {option.help}", type=option.ini, default=None)


def _given(config: pytest.Config, dest: str) -> tuple[Any, str] | None:
    """An option's value from the command line, else its ini key, with a label naming where it came from."""
    option = _BY_DEST[dest]
    value = config.getoption(dest)
    if value is not None and value is not False:
        return value, option.flag
    if option.ini:
        try:
            value = config.getini(dest)
        except (TypeError, ValueError) as exc:
            raise pytest.UsageError(f"ini key {dest}: {exc}") from None
        if value not in (None, "", []):
            return value, f"{option.flag} (ini key {dest})"
    return None


def _positive_int(config: pytest.Config, dest: str) -> int | None:
    """The option ``dest`` (or its ini key) as a positive int, None when not given; a one-line usage error else."""
    given = _given(config, dest)
    if given is None:
        return None
    value, label = given
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count <= 0:
        raise pytest.UsageError(f"{label} must be a positive integer, got {value!r}")
    return count


def _seed_count(config: pytest.Config, tier: Tier) -> int:
    """Seeds per grid point: --scaling-seeds or ini scaling_seeds, else the tier's."""
    count = _positive_int(config, "scaling_seeds")
    return tier.seeds if count is None else count


def _executor(config: pytest.Config) -> str:
    """The executor: --scaling-executor or ini scaling_executor, else local; ray must be installed."""
    given = _given(config, "scaling_executor")
    if given is None:
        return "local"
    name, label = given
    if name not in EXECUTORS:
        raise pytest.UsageError(f"{label} must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if name == "ray" and importlib.util.find_spec("ray") is None:
        raise pytest.UsageError(f"the ray executor ({label}) needs Ray: pip install 'pytest-scaling[ray]'")
    return name


def _cache_dir(config: pytest.Config) -> Path | None:
    """The run cache directory: --scaling-cache (from the invocation directory), ini scaling_cache (from the
    rootdir), else .scaling/ under the rootdir; None with --scaling-no-cache."""
    if config.getoption("scaling_no_cache"):
        return None
    given = _given(config, "scaling_cache")
    if given is None:
        return config.rootpath / DEFAULT_CACHE_DIR
    base = config.invocation_params.dir if config.getoption("scaling_cache") else config.rootpath
    return base / given[0]


def _check_cache(directory: Path) -> None:
    """Stop the session with a usage error if the cache directory or an existing cache file cannot be used.

    A missing file is left for the first sweep to create, so runs that sweep nothing write nothing.
    """
    if directory.exists() and not directory.is_dir():
        raise pytest.UsageError(f"run cache directory {directory} is a file; give --scaling-cache a directory")
    if (directory / CACHE_FILE).exists():
        try:
            ResultCache.in_dir(directory).close()
        except CacheError as err:
            raise pytest.UsageError(str(err)) from None


def _switch(config: pytest.Config, dest: str) -> bool:
    """A store_true option, on from the command line or its ini key."""
    return bool((_given(config, dest) or (False,))[0])


def _given_path(config: pytest.Config, dest: str) -> list[Path]:
    """A path option's path(s): from the invocation directory on the command line, from the rootdir in the ini."""
    given = _given(config, dest)
    if given is None:
        return []
    base = config.invocation_params.dir if config.getoption(dest) else config.rootpath
    values = given[0] if isinstance(given[0], list) else [given[0]]
    return [base / value for value in values]


def _report_paths(config: pytest.Config) -> tuple[Path, ...]:
    """The --scaling-report paths, each checked to name a report format."""
    paths = tuple(_given_path(config, "scaling_report"))
    for path in paths:
        try:
            check_path(path)
        except ReportError as err:
            raise pytest.UsageError(f"--scaling-report {path}: {err}") from None
    return paths


def _baseline(config: pytest.Config) -> dict[str, Any] | None:
    """The --scaling-baseline document, loaded and checked now so a bad one stops the run before any training."""
    paths = _given_path(config, "scaling_baseline")
    if not paths:
        return None
    try:
        return load(paths[0], "baseline")
    except ReportError as err:
        raise pytest.UsageError(str(err)) from None


def _family_specs(config: pytest.Config) -> tuple[str, ...]:
    """The MODULE:ATTRs of --scaling-family (repeatable) or ini scaling_family, checked for form only (loading comes
    later)."""
    given = _given(config, "scaling_family")
    if given is None:
        return ()
    specs, label = given
    for spec in specs:
        if spec.count(":") != 1 or not all(spec.split(":")):
            raise pytest.UsageError(f"{label} expects MODULE:ATTR (e.g. mymodels:family), got {spec!r}")
    return tuple(dict.fromkeys(specs))


def _device_type(config: pytest.Config, tier: Tier) -> str:
    """The device type: "cuda" when --gpu or the tier asks for it (a usage error without a CUDA device), else "cpu"."""
    if not config.getoption("gpu") and tier.device_kind != "cuda":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        reason = "--gpu was given" if config.getoption("gpu") else f"the {tier.name} tier needs CUDA"
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
        raise pytest.UsageError(f"{reason} but no CUDA device is available (torch {torch.__version__}, {build})")
    return "cuda"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; resolve and validate the options (but not for --help, which must always work)."""
    config.addinivalue_line("markers", MARKER_HELP)
    if config.getoption("help"):
        return
    tier = resolve_tier(config)
    n_seeds = _seed_count(config, tier)
    executor = _executor(config)
    family_specs = _family_specs(config)
    save_baseline = next(iter(_given_path(config, "scaling_save_baseline")), None)
    config.stash[_SETTINGS] = _Settings(
        tier, _device_type(config, tier), n_seeds, family_specs, _cache_dir(config), executor,
        diagnose=_switch(config, "scaling_diagnose"), bf16=_switch(config, "scaling_bf16"), reports=_report_paths(config),
        baseline=_baseline(config), save_baseline=save_baseline, threads=_positive_int(config, "scaling_threads"),
        budget=_positive_int(config, "scaling_budget"),
    )
    config.stash[_RUN] = run = _Run()
    config.pluginmanager.register(run, "scaling-run")
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_XdistRecords(run), "scaling-xdist-records")


class _XdistRecords:
    """On the xdist controller: gather the records each worker hands over when it finishes."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Take the records of a finished worker."""
        self.run.worker_records.extend(getattr(node, "workeroutput", {}).get(WORKER_RECORDS, []))


def _load_family(spec: str, directories: tuple[str, ...]) -> ModelFamily:
    """Import MODULE:ATTR (searching ``directories`` first); call ATTR if it is a factory; check the result."""
    from pytest_scaling.family import ModelFamily

    module_name, attr = spec.split(":")
    for directory in directories:
        if directory not in sys.path:
            sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        message = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
        raise pytest.UsageError(f"scaling family {spec!r}: cannot import {module_name!r}: {detail}") from None
    if not hasattr(module, attr):
        raise pytest.UsageError(f"scaling family {spec!r}: module {module_name!r} has no attribute {attr!r}")
    family = getattr(module, attr)
    if callable(family) and not isinstance(family, ModelFamily):
        family = family()
    if not isinstance(family, ModelFamily):
        raise pytest.UsageError(
            f"scaling family {spec!r}: expected a pytest_scaling.family.ModelFamily "
            f"(or a no-argument callable returning one), got {type(family).__name__}"
        )
    return family


def _fitting(family: ModelFamily) -> ModelFamily:
    """``family`` once its model fits its task (``contract.check_family``); a usage error in its one line if not."""
    from pytest_scaling.contract import FamilyError, check_family, first_line

    try:
        check_family(family)
    except FamilyError as err:
        raise pytest.UsageError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - before any test runs, a family that cannot even be built is a usage error
        raise pytest.UsageError(f"scaling family {family.name!r} cannot be built at its base width: {first_line(err)}") from None
    return family


def pytest_sessionstart(session: pytest.Session) -> None:
    """Check the run cache, and load --scaling-family and check it fits its task, before collection, so a bad one
    stops the run with a usage error."""
    config = session.config
    settings = config.stash[_SETTINGS]
    if settings.cache_dir is not None:
        _check_cache(settings.cache_dir)
    families = [_fitting(_load_family(spec, (str(config.rootpath), os.getcwd()))) for spec in settings.family_specs]
    names = [family.name for family in families]
    if len(set(names)) < len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise pytest.UsageError(f"--scaling-family: two families are named {twice!r}; their records would share names")
    config.stash[_FAMILIES] = families


def _marker_tiers(item: pytest.Item) -> tuple[str, ...] | None:
    """Validate every ``scaling`` mark on ``item``; return the tiers of the closest one that names tiers."""
    found: tuple[str, ...] | None = None
    for mark in item.iter_markers("scaling"):
        problem = None
        unknown_kwargs = sorted(set(mark.kwargs) - set(MARKER_KWARGS))
        tiers = mark.kwargs.get("tiers", ())
        if mark.args:
            problem = "takes keyword arguments only"
        elif unknown_kwargs:
            problem = f"unknown argument(s) {', '.join(unknown_kwargs)}; it takes {', '.join(MARKER_KWARGS)}"
        elif not isinstance(mark.kwargs.get("property", ""), str):
            problem = "property must be a str"
        elif not isinstance(tiers, (tuple, list)):
            problem = f"tiers must be a tuple of tier names, e.g. tiers=('cpu', 'gpu'), got {tiers!r}"
        elif "tiers" in mark.kwargs and not tiers:
            problem = "tiers is empty"
        elif unknown := [name for name in tiers if name not in TIERS]:
            problem = f"unknown tier(s) {', '.join(map(repr, unknown))}; tiers are {', '.join(TIERS)}"
        if problem:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.scaling: {problem}")
        if found is None and "tiers" in mark.kwargs:
            found = tuple(tiers)
    return found


def _is_suite(cls: type | None) -> bool:
    """Whether ``cls`` is a ScalingSuite class, without importing the suite (and torch with it) for every test: a
    class can only subclass it once a test module has imported it."""
    suite = sys.modules.get("pytest_scaling.suite")
    return cls is not None and suite is not None and issubclass(cls, suite.ScalingSuite)


def _is_builtin(item: pytest.Item) -> bool:
    """Whether ``item`` demonstrates a built-in reference family: a builtin ScalingSuite class, or builtin=True."""
    cls = getattr(item, "cls", None)
    if _is_suite(cls) and cls.builtin:
        return True
    return any(mark.kwargs.get("builtin") for mark in item.iter_markers("scaling"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip scaling tests whose marker leaves out this run's tier; with --scaling-family, deselect the built-in
    demonstrations (the suite runs on the given families instead)."""
    tier = config.stash[_SETTINGS].tier
    for item in items:
        tiers = _marker_tiers(item)
        if tiers is not None and tier.name not in tiers:
            reason = f"scaling test for tiers {', '.join(tiers)}; this run's tier is {tier.name}"
            item.add_marker(pytest.mark.skip(reason=reason))
    if config.stash.get(_FAMILIES, None):
        builtin = [item for item in items if _is_builtin(item)]
        if builtin:
            config.hook.pytest_deselected(items=builtin)
            items[:] = [item for item in items if not _is_builtin(item)]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """With --scaling-plan, a scaling test outside the suite (which plans, ``_plan``) skips: it has no plan to state."""
    if not item.config.getoption("scaling_plan") or "scaling" not in getattr(item, "fixturenames", ()):
        return
    if not _is_suite(getattr(item, "cls", None)):
        pytest.skip("--scaling-plan: not a suite test, so not planned; not trained")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a ScalingSuite class on its own family, or on each --scaling-family; with several --scaling-family, run
    any other test that takes ``model_family`` once per family."""
    families = metafunc.config.stash.get(_FAMILIES, [])
    cls = metafunc.cls
    if _is_suite(cls) and "scaling_family" in metafunc.fixturenames:
        own = cls.own_family()
        params = [own] if own is not None else families
        if params:
            metafunc.parametrize("scaling_family", params, ids=[family.name for family in params], indirect=True,
                                 scope="class")
    elif "model_family" in metafunc.fixturenames and len(families) > 1:
        metafunc.parametrize("model_family", families, ids=[family.name for family in families], indirect=True,
                             scope="session")


@pytest.fixture(scope="session")
def scaling_tier(pytestconfig: pytest.Config) -> Tier:
    """The run's tier (--scaling-tier, --gpu, ini scaling_tier; cpu by default)."""
    return pytestconfig.stash[_SETTINGS].tier


@pytest.fixture(scope="session")
def scaling_device(pytestconfig: pytest.Config) -> torch.device:
    """The device runs train on: CUDA with --gpu or the gpu tier, else the CPU."""
    import torch

    return torch.device(pytestconfig.stash[_SETTINGS].device_type)


@pytest.fixture(scope="session")
def model_family(request: pytest.FixtureRequest) -> ModelFamily:
    """The family under test: each --scaling-family (or ini scaling_family) given, else the reference GPT.

    Override this fixture (with session scope) in a conftest.py to test your own model.
    """
    if hasattr(request, "param"):
        return request.param
    families = request.config.stash.get(_FAMILIES, [])
    if families:
        return families[0]
    from pytest_scaling.families import reference_gpt

    return reference_gpt()


@pytest.fixture(scope="class")
def scaling_family(request: pytest.FixtureRequest) -> ModelFamily:
    """The family a ScalingSuite class runs on: its own ``family``, else each --scaling-family, else ``model_family``."""
    family = request.param if hasattr(request, "param") else request.getfixturevalue("model_family")
    if _is_suite(request.cls):
        _plan(request, family)
    return family


def _past_capture(config: pytest.Config) -> contextlib.AbstractContextManager[Any]:
    """pytest's output capture suspended: under fd capture (the default) what a test's set-up or call writes lands
    in its captured output, shown only if it fails."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    return capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()


class _Uncaptured:
    """The terminal's stderr past pytest's output capture, for the progress line."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    def write(self, text: str) -> None:
        with _past_capture(self._config):
            sys.__stderr__.write(text)
            sys.__stderr__.flush()

    def flush(self) -> None:
        """Every write is flushed already."""

    def isatty(self) -> bool:
        return sys.__stderr__.isatty()


def _set_threads(config: pytest.Config) -> None:
    """On the CPU, once a session: train with the threads the machine can give (``threads.plan_threads``)."""
    settings = config.stash[_SETTINGS]
    if settings.device_type != "cpu" or _THREADS in config.stash:
        return
    import torch

    from pytest_scaling.threads import plan_threads

    plan = plan_threads(settings.threads)
    config.stash[_THREADS] = (plan.describe(), torch.get_num_threads())  # restored when the session ends
    torch.set_num_threads(plan.threads)


def _plan(request: pytest.FixtureRequest, family: ModelFamily) -> None:
    """Before a suite class trains on ``family``: its plan (``cost.plan_suite``) for the properties selected in the
    class, printed and kept for the reports; with --scaling-plan the class then skips, having trained nothing."""
    config = request.config
    planned = config.stash.setdefault(_PLANS, [])
    if not any(plan["family"] == family.name and plan["suite"] == request.cls.__qualname__ for plan in planned):
        names = [item.get_closest_marker("scaling").kwargs["property"] for item in request.session.items
                 if getattr(item, "cls", None) is request.cls and item.get_closest_marker("scaling") is not None
                 and getattr(getattr(item, "callspec", None), "params", {}).get("scaling_family", family).name
                 == family.name]
        _state_plan(config, request.cls, family, names)
    if config.getoption("scaling_plan"):
        pytest.skip("--scaling-plan: planned, not trained")


def _state_plan(config: pytest.Config, suite: type, family: ModelFamily, names: list[str]) -> None:
    """Price ``names`` on ``family`` as ``suite`` runs them, print the plan and keep it for the reports."""
    import torch

    from pytest_scaling.cost import plan_suite, time_run
    from pytest_scaling.properties import get

    settings = config.stash[_SETTINGS]
    _set_threads(config)
    plan = plan_suite(family, settings.tier, list(range(settings.n_seeds)), [get(name) for name in names],
                      suite.grids, suite.skip, time_run(torch.device(settings.device_type)), settings.budget)
    config.stash[_PLANS].append({"suite": suite.__qualname__, **plan.to_dict()})
    session = config.stash[_SESSION]
    session.tally.planned += plan.runs  # the whole run's progress counts against the plans
    session.over_budget.update({(family.name, name): reason for name, reason in plan.over_budget().items()})
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        with _past_capture(config):
            reporter.line("")  # after a test's progress characters, on a line of its own
            reporter.write_line(plan.table())


@pytest.fixture(scope="session")
def scaling(pytestconfig: pytest.Config, scaling_tier: Tier, scaling_device: torch.device) -> ScalingSession:
    """The session runner: ``sweep(family, ...)``, tier, device, seeds, and ``record(...)``."""
    settings = pytestconfig.stash[_SETTINGS]
    _set_threads(pytestconfig)
    session = ScalingSession(
        tier=scaling_tier,
        device=scaling_device,
        seeds=list(range(settings.n_seeds)),
        cache_dir=settings.cache_dir,
        share_runs=True,  # under --scaling-no-cache too: a property trains what another has just trained once
        progress_stream=_Uncaptured(pytestconfig),
        executor=settings.executor,
        diagnose=settings.diagnose,
        bf16=settings.bf16,
    )
    pytestconfig.stash[_SESSION] = session
    return session


def _report(config: pytest.Config) -> dict[str, Any] | None:
    """The run's records (this process's and xdist workers') with their tests' statuses, compared with any baseline.

    None when nothing was recorded and no report or baseline was asked for.
    """
    settings, run = config.stash[_SETTINGS], config.stash[_RUN]
    session = config.stash.get(_SESSION, None)
    raw = (session.records if session is not None else []) + run.worker_records
    if not raw and not (settings.reports or settings.baseline or settings.save_baseline):
        return None
    records = [make_record(record, run.outcomes.get(record.get("test") or "", "inconclusive")) for record in raw]
    precision = "bf16 autocast" if settings.bf16 else "fp32"
    report = make_report(records, environment(settings.tier.name, settings.device_type, config.rootpath, precision,
                                              threads=config.stash[_THREADS][0] if _THREADS in config.stash else None,
                                              plans=config.stash.get(_PLANS, None)))
    if settings.baseline is not None:
        run.comparison = baselines.compare(report, settings.baseline)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Close the run cache; on a worker hand the records over, else build the report, write what was asked for
    (reports, baseline) and fail the session on regressions."""
    config = session.config
    scaling_session = config.stash.get(_SESSION, None)
    if scaling_session is not None:
        scaling_session.close()
    if _THREADS in config.stash:  # leave torch's thread count as the session found it
        import torch

        torch.set_num_threads(config.stash[_THREADS][1])
    if _SETTINGS not in config.stash:
        return
    if hasattr(config, "workeroutput"):
        config.workeroutput[WORKER_RECORDS] = scaling_session.records if scaling_session is not None else []
        return
    settings, run = config.stash[_SETTINGS], config.stash[_RUN]
    run.report = report = _report(config)
    if report is None:
        return
    for path in settings.reports:
        write_report(report, path)
    if settings.save_baseline is not None:
        write_text(settings.save_baseline, dump_json(baselines.make_baseline(report)))
    if run.comparison is not None and run.comparison.regressed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """A "scaling" section: the records as a table with status and baseline delta, then the comparison's notes."""
    run = config.stash.get(_RUN, None)
    if run is None or run.report is None or not run.report["records"]:
        return
    report, comparison, env = run.report, run.comparison, run.report["environment"]
    terminalreporter.section("scaling")
    precision = "" if env.get("precision", "fp32") == "fp32" else f", {env['precision']}"
    terminalreporter.write_line(f"{len(report['records'])} records ({env['tier']} tier, {env['device']}{precision}):")
    terminalreporter.write_line(grouped(report, "simple"))
    for record, diagnosis in diagnoses(report):
        terminalreporter.write_line(f"diagnosis of {record['name']}: {diagnosis.conclusion()}", bold=True)
    for note in comparison.notes() if comparison is not None else []:
        terminalreporter.write_line(note, yellow=True, bold=True)
