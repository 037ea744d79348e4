"""The family/task contract (checked before any training) and the one-line errors of the public functions' arguments."""

from __future__ import annotations

import fnmatch
import math
import textwrap
import types
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn

from pytest_scaling import checks, families, tasks
from pytest_scaling.contract import FamilyError, check_family
from pytest_scaling.family import ModelFamily
from pytest_scaling.session import ScalingSession
from pytest_scaling.store import CACHE_FILE
from pytest_scaling.sweep import sweep
from pytest_scaling.properties import PROPERTIES
from pytest_scaling.tiers import TIERS
from pytest_scaling.train import TrainConfig, train_run
from test_plugin import assert_usage_error, inline

TESTS_DIR = Path(__file__).parent
FEATURES = tasks.teacher_student(input_dim=8)  # 10 classes
TOKENS = tasks.markov_language(vocab=16, seq_len=8)
SMOKE = TIERS["smoke"]
TINY_GRID = dict(lrs=(1e-3, 1e-2), seeds=(0,), steps=3, batch_size=4)


def _mlp(n_outputs: int) -> Callable[[int], nn.Module]:
    return lambda width: nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, n_outputs))


def _family(name: str, build: Callable[[int], nn.Module], task: tasks.Task = FEATURES) -> ModelFamily:
    return ModelFamily(name, build, task, base_width=16, widths=(16, 32))


def _nan_readout(width: int) -> nn.Module:
    model = _mlp(10)(width)
    nn.init.constant_(model[-1].bias, math.nan)
    return model


class _WithLogits(nn.Module):
    """Returns its logits in an output object, as Hugging Face models do."""

    def __init__(self, width: int):
        super().__init__()
        self.net = _mlp(10)(width)

    def forward(self, x: torch.Tensor) -> types.SimpleNamespace:
        return types.SimpleNamespace(logits=self.net(x), loss=None)


# The families below are also imported by the --scaling-family runs (as no-argument factories).


def fits() -> ModelFamily:
    return families.mlp(base_width=16, widths=(16, 32), task=FEATURES)  # μP: built through its parametrization


def clf7() -> ModelFamily:
    return _family("clf7", _mlp(7))


def embedding() -> ModelFamily:
    return _family("embedding", lambda width: nn.Sequential(nn.Embedding(8, width), nn.Linear(width, 10)))


def nan_at_init() -> ModelFamily:
    return _family("nan_at_init", _nan_readout)


GIVES = "the task gives float32 features [4, 8] and 10 classes"
MISFITS = {
    "clf7": f"family 'clf7' does not fit task teacher_student(input_dim=8): {GIVES}; "
            "build(16) returned logits of shape [4, 7] (expected [4, 10])",
    "embedding": f"family 'embedding' does not fit task teacher_student(input_dim=8): {GIVES}; build(16)(x) raised "
                 "RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types*",
    "nan_at_init": f"family 'nan_at_init' does not fit task teacher_student(input_dim=8): {GIVES}; "
                   "build(16) returned NaN logits at initialisation (before any training step): check the init",
}
FACTORIES = {"clf7": clf7, "embedding": embedding, "nan_at_init": nan_at_init}


def glob(message: str) -> str:
    """``message`` as an fnmatch pattern: its brackets literal, its ``*`` a wildcard."""
    return message.replace("[", "[[]")


def assert_one_line(text: str, message: str) -> None:
    assert "\n" not in text and fnmatch.fnmatchcase(text, glob(message)), text


# The contract


@pytest.mark.parametrize("name", MISFITS)
def test_a_misfit_is_named_in_one_line_by_check_family(name: str) -> None:
    with pytest.raises(FamilyError) as raised:
        check_family(FACTORIES[name]())
    assert_one_line(str(raised.value), MISFITS[name])


@pytest.mark.parametrize("name", MISFITS)
def test_sweep_checks_the_contract_before_any_training_or_cache(name: str, tmp_path: Path) -> None:
    with pytest.raises(FamilyError) as raised:
        sweep(FACTORIES[name](), cache=tmp_path, **TINY_GRID)
    assert_one_line(str(raised.value), MISFITS[name])
    assert not (tmp_path / CACHE_FILE).exists()


@pytest.mark.parametrize("name", MISFITS)
def test_a_misfit_given_by_scaling_family_is_a_usage_error(pytester: pytest.Pytester, name: str) -> None:
    pytester.makepyfile(
        mymodels=f"import sys\nsys.path.insert(0, {str(TESTS_DIR)!r})\nfrom test_contract import {name}\n",
        test_nothing="def test_nothing():\n    pass\n",
    )
    result = inline(pytester, "--scaling-family", f"mymodels:{name}", "--scaling-no-cache")
    assert_usage_error(result, glob(MISFITS[name]))


@pytest.mark.parametrize(
    ("build", "task", "problem"),
    [
        (lambda w: nn.Sequential(nn.Embedding(16, w), nn.Flatten(), nn.Linear(8 * w, 16)), TOKENS,
         "the task gives int64 tokens [4, 8] (vocab 16) and next-token targets over 16 tokens; "
         "build(16) returned logits of shape [4, 16] (expected [4, 8, 16])"),
        (lambda w: nn.Sequential(nn.Linear(5, w), nn.Linear(w, 10)), FEATURES,
         "the task gives float32 features [4, 8] and 10 classes; build(16)(x) raised RuntimeError: mat1 and mat2 shapes "
         "cannot be multiplied (4x8 and 5x16)"),
        (lambda w: nn.LSTM(8, w), FEATURES,
         "the task gives float32 features [4, 8] and 10 classes; "
         "build(16)(x) returned tuple, not a tensor of logits (nor an object with a tensor .logits)"),
    ],
    ids=["last-position-only", "wrong-input-dim", "tuple"],
)
def test_other_misfits_say_what_the_model_returned(build: Callable[[int], nn.Module], task: tasks.Task, problem: str) -> None:
    with pytest.raises(FamilyError) as raised:
        check_family(_family("misfit", build, task))
    assert_one_line(str(raised.value), f"family 'misfit' does not fit task {task.name}: {problem}")


class _IntegerLogits(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = _mlp(10)(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).round().long()


class _InfiniteLogits(_IntegerLogits):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * math.inf


@pytest.mark.parametrize(("build", "problem"), [(_IntegerLogits, "returned int64 logits (expected a floating dtype)"),
                                                (_InfiniteLogits, "returned infinite logits at initialisation *")])
def test_logits_must_be_finite_floats(build: type[nn.Module], problem: str) -> None:
    with pytest.raises(FamilyError) as raised:
        check_family(_family("misfit", build))
    assert_one_line(str(raised.value), f"*; build(16) {problem}")


def test_a_fitting_family_passes_once_and_leaves_the_global_rng_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    family = fits()
    state = torch.random.get_rng_state()
    check_family(family)
    assert torch.equal(torch.random.get_rng_state(), state)
    monkeypatch.setattr(type(family), "instantiate", lambda *args, **kwargs: pytest.fail("checked twice"))
    check_family(family)  # memoised per family object


def test_logits_in_an_output_object_fit_and_train_alone_and_stacked() -> None:
    family = _family("with-logits", _WithLogits)
    check_family(family)
    alone = sweep(family, stacking="none", **TINY_GRID)
    stacked = sweep(family, stacking="all", **TINY_GRID)
    assert stacked.stats.chunk_size == {16: 2, 32: 2}
    for rid, run in alone.runs.items():
        assert all(math.isfinite(loss) for loss in run.losses)
        torch.testing.assert_close(run.losses, stacked.runs[rid].losses, rtol=1e-5, atol=1e-7)


# sweep()'s cache argument


@pytest.mark.parametrize("as_str", [False, True], ids=["path", "str"])
def test_sweep_takes_a_cache_directory_and_reuses_it(tmp_path: Path, as_str: bool) -> None:
    directory = tmp_path / "runs"
    cache = str(directory) if as_str else directory
    first = sweep(fits(), cache=cache, **TINY_GRID)
    second = sweep(fits(), cache=cache, **TINY_GRID)
    assert (first.stats.trained, first.stats.cached) == (4, 0)
    assert (second.stats.trained, second.stats.cached) == (0, 4)
    assert (directory / CACHE_FILE).is_file()
    assert second.runs == first.runs


# One-line argument errors: sweep, train_run, scaling.sweep


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"family": "gpt"}, TypeError, "family must be a pytest_scaling.ModelFamily, got str"),
        ({"cache": 3}, TypeError, "cache must be a ResultCache or a directory (str or os.PathLike), got int"),
        ({"widths": 64}, TypeError, "widths must be a sequence of positive ints, got int 64"),
        ({"lrs": 1e-3}, TypeError, "lrs must be a sequence of positive numbers, got float 0.001"),
        ({"lrs": ("1e-3",)}, ValueError, "lrs must be positive finite numbers, got ['1e-3']"),
        ({"seeds": 0}, TypeError, "seeds must be a sequence of non-negative ints, got int 0"),
        ({"config": {"steps": 3}}, TypeError, "config must be a TrainConfig or None, got dict"),
        ({"stepz": 3}, TypeError, "unknown TrainConfig field(s) 'stepz'; the fields are steps, batch_size, *"),
        ({"device": None}, TypeError, "device must be a str or torch.device, got NoneType"),
        ({"device": "gpu"}, ValueError, "device 'gpu' cannot be used: RuntimeError: Expected one of cpu, cuda, *"),
        ({"device": "cuda:99"}, ValueError, "device 'cuda:99' cannot be used: *"),
        ({"stacking": "some"}, ValueError, "stacking must be one of 'auto', 'all', 'compiled', 'none'; got 'some'"),
        ({"progress": True}, TypeError, "progress must be a pytest_scaling.progress.Progress or None, got bool"),
    ],
)
def test_bad_sweep_arguments_are_one_line_errors(tmp_path: Path, change: dict, error: type, message: str) -> None:
    arguments = {"family": fits(), "cache": tmp_path, **TINY_GRID, **change}
    with pytest.raises(error) as raised:
        sweep(**arguments)
    assert_one_line(str(raised.value), message)
    assert not (tmp_path / CACHE_FILE).exists()


def test_the_ray_executor_without_ray_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None)
    with pytest.raises(ValueError, match=r"^executor='ray' needs Ray, which is not installed: pip install"):
        sweep(fits(), executor="ray", **TINY_GRID)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"family": "gpt"}, TypeError, "family must be a pytest_scaling.ModelFamily, got str"),
        ({"family": clf7()}, FamilyError, MISFITS["clf7"]),
        ({"seed": -1}, ValueError, "seed must be a non-negative int, got -1"),
        ({"seed": "0"}, ValueError, "seed must be a non-negative int, got '0'"),
        ({"config": 3}, TypeError, "config must be a TrainConfig or None, got int"),
        ({"lr_warmup": 3}, TypeError, "unknown TrainConfig field(s) 'lr_warmup'; *"),
        ({"device": "tpu"}, ValueError, "device 'tpu' cannot be used: *"),
    ],
)
def test_bad_train_run_arguments_are_one_line_errors(change: dict, error: type, message: str) -> None:
    arguments = {"family": fits(), "width": 16, "lr": 1e-3, "seed": 0, "steps": 2, "batch_size": 4, **change}
    with pytest.raises(error) as raised:
        train_run(**arguments)
    assert_one_line(str(raised.value), message)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"family": clf7()}, MISFITS["clf7"]),
        ({"lrs": 1e-3}, "lrs must be a sequence of positive numbers, got float 0.001"),
        ({"config": TrainConfig(), "steps": 3, "stepz": 3}, "unknown TrainConfig field(s) 'stepz'; *"),
    ],
)
def test_scaling_sweep_fails_the_test_in_one_line_before_opening_the_cache(tmp_path: Path, change: dict, message: str) -> None:
    session = ScalingSession(tier=SMOKE, device=torch.device("cpu"), seeds=[0], cache_dir=tmp_path)
    arguments = {"family": fits(), "lrs": (1e-3,), **change}
    with pytest.raises(pytest.fail.Exception) as failed:
        session.sweep(arguments.pop("family"), **arguments)
    assert failed.value.pytrace is False
    assert_one_line(failed.value.msg, message)
    assert not (tmp_path / CACHE_FILE).exists()


# One-line argument errors: the checks


def _checks_given_wrong_arguments() -> list[Any]:
    family, coord, transfer = fits(), PROPERTIES["coord_check"].grid_in("smoke"), PROPERTIES["lr_transfer"].grid_in("cpu")
    cases = [
        ("coord_check", lambda s: checks.coord_check(s, family, transfer), "grid must be a *.CoordCheckGrid or None, got TransferGrid"),
        ("coord_check", lambda s: checks.coord_check(s, "gpt"), "family must be a pytest_scaling.ModelFamily, got str"),
        ("lr_transfer", lambda s: checks.lr_transfer(s, family, coord), "grid must be a *.TransferGrid or None, got CoordCheckGrid"),
        ("lr_curve_transfer", lambda s: checks.lr_curve_transfer(s, family, coord), "grid must be a *.TransferGrid *"),
        ("wider_is_better", lambda s: checks.wider_is_better(s, None), "family must be *, got NoneType"),
        ("adam_epsilon", lambda s: checks.adam_epsilon(s, family, coord), "grid must be a *.EpsilonGrid *"),
        ("lr_sensitivity", lambda s: checks.lr_sensitivity(s, family, coord), "grid must be a *.StabilityGrid *"),
        ("no_logit_divergence", lambda s: checks.no_logit_divergence(s, family, coord), "grid must be a *.StabilityGrid *"),
        ("qk_layernorm_lowers_sensitivity", lambda s: checks.qk_layernorm_lowers_sensitivity(s, family, "gpt"),
         "family_without must be a pytest_scaling.ModelFamily, got str"),
        ("power_law", lambda s: checks.power_law(s, family, coord), "grid must be a *.PowerLawGrid *"),
        ("extrapolation", lambda s: checks.extrapolation(s, family, coord), "grid must be a *.PowerLawGrid *"),
        ("depth_sensitivity", lambda s: checks.depth_sensitivity(s, 42), "build_family must be a ModelFamily with at_depth, or a function from a "
         "layer count to a ModelFamily, got int"),
        ("depth_coord_check", lambda s: checks.depth_coord_check(s, lambda n_layers: family, coord),
         "grid must be a *.DepthCoordGrid or None, got CoordCheckGrid"),
        ("depth_lr_transfer", lambda s: checks.depth_lr_transfer(s, lambda n_layers: "gpt", PROPERTIES["depth_lr_transfer"].grid_in("cpu")),
         "build_family(2) must be a pytest_scaling.ModelFamily, got str"),
    ]
    return [pytest.param(call, f"{check}(): {message}", id=f"{check}: {message[:20]}") for check, call, message in cases]


@pytest.mark.parametrize(("call", "message"), _checks_given_wrong_arguments())
def test_a_check_given_a_wrong_family_or_grid_is_a_one_line_type_error(call: Callable[[Any], Any], message: str) -> None:
    session = ScalingSession(tier=SMOKE, device=torch.device("cpu"), seeds=[0])
    with pytest.raises(TypeError) as raised:
        call(session)
    assert_one_line(str(raised.value), message)
    assert session.records == []


# ModelFamily's fields


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"name": 3}, TypeError, "ModelFamily: name must be a non-empty str, got 3"),
        ({"task": None}, TypeError, "ModelFamily 'f': task must be a pytest_scaling.tasks.Task (e.g. tasks.teacher_student()), got NoneType"),
        ({"task": "teacher_student"}, TypeError, "ModelFamily 'f': task must be *, got str"),
        ({"widths": 64}, TypeError, "ModelFamily 'f': widths must be a sequence of positive ints, got 64"),
        ({"widths": (16, 32.0)}, ValueError, "widths must be positive integers, got [16, 32.0]"),
        ({"base_width": True}, ValueError, "ModelFamily 'f': base_width must be a positive int, got True"),
        ({"optimizer": "adam"}, TypeError, "ModelFamily 'f': optimizer must be callable optimizer(model, lr) -> Optimizer, got str"),
        ({"loss": 3}, TypeError, "ModelFamily 'f': loss must be callable loss(logits, targets) -> Tensor, got int"),
        ({"role_overrides": ["0.weight"]}, TypeError, "ModelFamily 'f': role_overrides must be a mapping *, got list"),
        ({"parametrization": ["mup"]}, TypeError, "ModelFamily 'f': parametrization must be a name such as 'mup' or a "
         "Parametrization, got list"),
    ],
)
def test_bad_model_family_fields_are_one_line_errors(change: dict, error: type, message: str) -> None:
    fields = {"name": "f", "build": _mlp(10), "task": FEATURES, "base_width": 16, **change}
    with pytest.raises(error) as raised:
        ModelFamily(**fields)
    assert_one_line(str(raised.value), message)


def test_scaling_family_that_cannot_be_built_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mymodels=textwrap.dedent("""
        from pytest_scaling import tasks
        from pytest_scaling.family import ModelFamily

        family = ModelFamily("unbuilt", lambda width: "a module", tasks.teacher_student(input_dim=8), base_width=16)
    """))
    result = inline(pytester, "--scaling-family", "mymodels:family", "--scaling-no-cache")
    assert_usage_error(result, "scaling family 'unbuilt' cannot be built at its base width: "
                               "TypeError: build(16) returned str, not a torch.nn.Module")


def test_a_width_that_breaks_the_model_is_one_line_before_any_training(tmp_path: Path) -> None:
    def build(width: int) -> nn.Module:
        if width % 4:
            raise ValueError(f"width {width} is not a multiple of the 4 heads")
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 3))

    family = ModelFamily(name="heads", build=build, task=tasks.teacher_student(input_dim=8, n_classes=3), base_width=8)
    with pytest.raises(FamilyError) as raised:
        sweep(family, widths=(8, 16, 18), lrs=(1e-3,), steps=2, batch_size=4, cache=tmp_path)
    assert_one_line(str(raised.value), "family 'heads' cannot be built at width 18: ValueError: width 18 is not a "
                    "multiple of the 4 heads")
    assert not (tmp_path / CACHE_FILE).exists()
