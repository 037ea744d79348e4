"""Family fingerprints by value: captured values, the same family in other processes and xdist
workers, edits to a helper in another module, values with no stable hash, and ``cache_key``."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytest_scaling import tasks
from pytest_scaling.family import ModelFamily
from pytest_scaling.fingerprint import FingerprintError, fingerprint_values
from pytest_scaling.store import ResultCache
from pytest_scaling.sweep import UncachedFamilyWarning, sweep

TASK = tasks.teacher_student(input_dim=4, n_classes=3)
# 2 widths x 1 LR x 1 seed of 3 steps: a few milliseconds per sweep.
GRID = dict(widths=(8, 16), lrs=(1e-2,), seeds=(0,), steps=3, batch_size=4)
TOTAL = 2
FORWARD_SCALE = 1.0  # read by Net.forward


class Net(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.inp = nn.Linear(4, width)
        self.out = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.inp(x))) * FORWARD_SCALE


def scaled_readout(width: int, readout_scale: float) -> Net:
    """A Net whose readout starts scaled: the value shows in the weights, not in the module tree."""
    net = Net(width)
    with torch.no_grad():
        net.out.weight.mul_(readout_scale)
    return net


class AdamWithEps:
    """A callable-object optimizer factory."""

    def __init__(self, eps: float):
        self.eps = eps

    def __call__(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=lr, eps=self.eps)


def family(name: str = "fingerprinted", **fields) -> ModelFamily:
    return ModelFamily(**{"name": name, "build": Net, "task": TASK, "base_width": 8, **fields})


def by_closure(value: float) -> ModelFamily:
    return family(build=lambda width: scaled_readout(width, value))


def by_partial_keyword(value: float) -> ModelFamily:
    return family(build=functools.partial(scaled_readout, readout_scale=value))


def by_default_argument(value: float) -> ModelFamily:
    def build(width: int, readout_scale: float = value) -> Net:
        return scaled_readout(width, readout_scale)

    assert build.__closure__ is None  # the value is only a default
    return family(build=build)


def by_global_read_by_forward(value: float) -> ModelFamily:
    global FORWARD_SCALE
    FORWARD_SCALE = value
    return family()


def by_optimizer_attribute(value: float) -> ModelFamily:
    return family(optimizer=AdamWithEps(eps=value * 1e-8))


def by_loss_closure(value: float) -> ModelFamily:
    def smoothed(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=value / 10)

    return family(loss=smoothed)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ResultCache]:
    with ResultCache.in_dir(tmp_path / "cache") as result_cache:
        yield result_cache


@pytest.fixture(autouse=True)
def one_thread_and_forward_scale() -> Iterator[None]:
    """Train on one thread (faster for models this small); restore the global the tests change."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    globals()["FORWARD_SCALE"] = 1.0


# Captured values


@pytest.mark.parametrize(
    "make", [by_closure, by_partial_keyword, by_default_argument, by_global_read_by_forward, by_optimizer_attribute, by_loss_closure]
)
def test_families_that_differ_in_a_captured_value_never_share_runs(make: Callable[[float], ModelFamily], cache: ResultCache) -> None:
    first, again, other = (make(value).fingerprint() for value in (1.0, 1.0, 0.5))
    assert first == again != other

    assert sweep(make(1.0), cache=cache, **GRID).stats.trained == TOTAL
    assert sweep(make(0.5), cache=cache, **GRID).stats.trained == TOTAL
    assert sweep(make(1.0), cache=cache, **GRID).stats.cached == TOTAL


def test_the_fingerprint_is_computed_once_per_family_object() -> None:
    builds = []

    def counting_build(width: int) -> Net:
        builds.append(width)
        return Net(width)

    counted = family(build=counting_build)
    first = counted.fingerprint()
    n_builds = len(builds)
    assert n_builds > 0 and counted.fingerprint() == first and len(builds) == n_builds


def test_at_depth_is_not_part_of_the_fingerprint() -> None:
    assert family(at_depth=lambda n_layers: family()).fingerprint() == family().fingerprint()


# Other processes


HELPER_MODULE = """
def squash(x):
    return {factor} * x.tanh()
"""

MODEL_MODULE = """
import torch
import torch.nn.functional as F
from torch import nn

import helper_module
from helper_module import squash as squash_by_name

from pytest_scaling import tasks
from pytest_scaling.family import ModelFamily


class ViaModule(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.inp, self.out = nn.Linear(4, width), nn.Linear(width, 3)

    def forward(self, x):
        return self.out(helper_module.squash(self.inp(x)))


class ViaName(ViaModule):
    def forward(self, x):
        return self.out(squash_by_name(self.inp(x)))


def by_class_name(width, name="ViaName"):
    return globals()[name](width)  # the code names no class: only the built model shows it


def smoothed_loss(logits, targets):
    return F.cross_entropy(logits, targets, label_smoothing=0.1)


class AdamWithEps:
    def __init__(self, eps):
        self.eps = eps

    def __call__(self, model, lr):
        return torch.optim.Adam(model.parameters(), lr=lr, eps=self.eps)


def families():
    task = tasks.teacher_student(input_dim=4, n_classes=3)
    common = dict(task=task, base_width=8, loss=smoothed_loss, optimizer=AdamWithEps(1e-6))
    builds = {"via-module": ViaModule, "via-name": ViaName, "by-class-name": by_class_name}
    return [ModelFamily(name=name, build=build, **common) for name, build in builds.items()]
"""


def fingerprints_in_a_new_process(directory: Path) -> list[str]:
    script = "import model_module; print(*(f.fingerprint() for f in model_module.families()))"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(directory)}
    done = subprocess.run([sys.executable, "-c", script], cwd=directory, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_family_has_one_fingerprint_in_every_process_and_an_edited_helper_changes_it(tmp_path: Path) -> None:
    """Each process has its own hash seed and addresses; a loss function and a callable-object
    optimizer are part of the family, and ``forward`` calls a helper from another module (through
    the module, by name, and in a class that only the built model shows)."""
    (tmp_path / "model_module.py").write_text(MODEL_MODULE)
    (tmp_path / "helper_module.py").write_text(HELPER_MODULE.format(factor="2.0"))
    first = fingerprints_in_a_new_process(tmp_path)
    assert len(set(first)) == 3
    assert fingerprints_in_a_new_process(tmp_path) == first

    (tmp_path / "helper_module.py").write_text(HELPER_MODULE.format(factor="3.0"))
    edited = fingerprints_in_a_new_process(tmp_path)
    assert all(after != before for after, before in zip(edited, first))


XDIST_TESTS = """
import os
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytest_scaling import tasks
from pytest_scaling.family import ModelFamily
from pytest_scaling.store import ResultCache
from pytest_scaling.sweep import sweep

SHARED = Path(os.environ["SHARED_DIR"])


class AdamWithEps:
    def __init__(self, eps):
        self.eps = eps

    def __call__(self, model, lr):
        return torch.optim.Adam(model.parameters(), lr=lr, eps=self.eps)


def smoothed_loss(logits, targets):
    return F.cross_entropy(logits, targets, label_smoothing=0.1)


def sweep_and_record(name):
    hidden = 2
    family = ModelFamily(
        name="shared",
        build=lambda width: nn.Sequential(nn.Linear(4, width * hidden), nn.ReLU(), nn.Linear(width * hidden, 3)),
        task=tasks.teacher_student(input_dim=4, n_classes=3),
        base_width=8,
        loss=smoothed_loss,
        optimizer=AdamWithEps(1e-6),
    )
    torch.set_num_threads(1)
    with ResultCache.in_dir(SHARED / "cache") as cache:
        stats = sweep(family, cache=cache, widths=(8, 16), lrs=(1e-2,), seeds=(0,), steps=3, batch_size=4).stats
    (SHARED / name).write_text(f"{os.environ['PYTEST_XDIST_WORKER']} {stats.trained} {stats.cached}")


@pytest.mark.xdist_group("first")
def test_first():
    sweep_and_record("first")


@pytest.mark.xdist_group("second")
def test_second():
    deadline = time.monotonic() + 120
    while not (SHARED / "first").exists():
        assert time.monotonic() < deadline, "the first test never finished"
        time.sleep(0.1)
    sweep_and_record("second")
"""


def test_two_xdist_workers_share_the_runs_of_one_family(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(XDIST_TESTS)
    monkeypatch.setenv("SHARED_DIR", str(pytester.path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "-p", "xdist", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=2)
    first_worker, *first = (pytester.path / "first").read_text().split()
    second_worker, *second = (pytester.path / "second").read_text().split()
    assert first_worker != second_worker
    assert (first, second) == (["2", "0"], ["0", "2"])  # (trained, cached)


# Values with no stable hash, and cache_key


@pytest.fixture
def connection() -> Iterator[socket.socket]:
    conn = socket.socket()
    yield conn
    conn.close()


def with_connection(conn: socket.socket, **fields) -> ModelFamily:
    def build(width: int) -> Net:
        assert conn.fileno() >= 0
        return Net(width)

    return family(build=build, **fields)


def test_an_unhashable_captured_value_is_named_in_one_line(connection: socket.socket) -> None:
    with pytest.raises(FingerprintError) as raised:
        with_connection(connection).fingerprint()
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("cannot fingerprint build's closure variable 'conn' (socket):")
    assert 'ModelFamily(cache_key="...")' in message


def test_an_unhashable_family_trains_uncached_with_one_warning(connection: socket.socket, cache: ResultCache) -> None:
    uncached = with_connection(connection, name="uncached-with-a-socket")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = [sweep(uncached, cache=cache, **GRID).stats for _ in range(2)]
    assert [(s.trained, s.cached) for s in runs] == [(TOTAL, 0), (TOTAL, 0)] and len(cache) == 0
    uncached_warnings = [w for w in caught if issubclass(w.category, UncachedFamilyWarning)]
    assert len(uncached_warnings) == 1
    assert "'uncached-with-a-socket'" in str(uncached_warnings[0].message) and "closure variable 'conn'" in str(uncached_warnings[0].message)


def test_cache_key_makes_an_unhashable_family_cacheable(connection: socket.socket, cache: ResultCache) -> None:
    keyed = with_connection(connection, cache_key="net-v1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncachedFamilyWarning)
        assert sweep(keyed, cache=cache, **GRID).stats.trained == TOTAL
        assert sweep(with_connection(connection, cache_key="net-v1"), cache=cache, **GRID).stats.cached == TOTAL
    # The key stands in for code and captured values; the task and the name still count.
    assert family(cache_key="net-v1").fingerprint() == keyed.fingerprint()
    assert family(cache_key="net-v2").fingerprint() != keyed.fingerprint()
    assert family(cache_key="net-v1", name="other").fingerprint() != keyed.fingerprint()


@pytest.mark.parametrize("cache_key", ["", 3])
def test_cache_key_must_be_a_non_empty_string(cache_key: object) -> None:
    with pytest.raises(TypeError, match="cache_key must be a non-empty string"):
        family(cache_key=cache_key)


# The encoder


class Loud:
    """An object whose repr differs in every process (it shows its address)."""

    def __init__(self, value: float):
        self.value = value


class Tag(str):
    """A subclass of a plain value."""


def cyclic(value: int) -> list:
    items: list = [value]
    items.append(items)
    return items


@pytest.mark.parametrize(
    "make, same",
    [
        (lambda: {"a": 1, "b": 2}, lambda: {"b": 2, "a": 1}),
        (lambda: {"x", "y", "z"}, lambda: {"z", "y", "x"}),
        (lambda: torch.arange(6.0).reshape(2, 3), lambda: torch.arange(6.0).reshape(2, 3).clone()),
        (lambda: Loud(1.0), lambda: Loud(1.0)),
        (lambda: cyclic(1), lambda: cyclic(1)),
    ],
    ids=["dict-order", "set", "tensor", "object-state", "cycle"],
)
def test_equal_values_get_one_fingerprint(make: Callable[[], object], same: Callable[[], object]) -> None:
    assert fingerprint_values({"v": make()}) == fingerprint_values({"v": same()})


@pytest.mark.parametrize(
    "a, b",
    [
        (1, 1.0),
        (1, True),
        ((1, 2), [1, 2]),
        (torch.zeros(3), torch.zeros(3, dtype=torch.float64)),
        (torch.zeros(3), torch.tensor([0.0, 0.0, 1e-30])),
        (np.zeros(3), np.zeros((3, 1))),
        (Loud(1.0), Loud(2.0)),
        (cyclic(1), cyclic(2)),
        (functools.partial(max, 1), functools.partial(max, 2)),
        (Tag("a"), Tag("b")),
        (Tag("a"), "a"),
    ],
    ids=["int-float", "int-bool", "tuple-list", "dtype", "tensor-content", "array-shape", "object-state", "cycle", "partial-arg",
         "str-subclass", "str-subclass-vs-str"],
)
def test_different_values_get_different_fingerprints(a: object, b: object) -> None:
    assert fingerprint_values({"v": a}) != fingerprint_values({"v": b})
