"""K runs trained as one stacked computation give the runs trained alone."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from pytest_scaling import families, stacking, tasks
from pytest_scaling.family import ModelFamily
from pytest_scaling.members import StackedRuns
from pytest_scaling.optim import AdamAtan2
from pytest_scaling.train import OptimizerSpec, RunResult, TrainConfig, train_group, train_run

CONFIG = TrainConfig(
    steps=12,
    batch_size=8,
    warmup=3,
    schedule="cosine",
    grad_clip=1.0,
    probe_every=5,
    optimizer=OptimizerSpec(betas=(0.9, 0.95), weight_decay=1e-4),
)
RUNS = [(lr, seed) for seed in (0, 1) for lr in (1e-3, 1e-2)]

FAMILIES = {
    "mlp-mup": lambda: families.mlp(base_width=32, widths=(32, 64)),
    "gpt-mup-qkln-zloss": lambda: families.gpt(
        task=tasks.markov_language(vocab=16, seq_len=8), base_width=32, widths=(32, 64), qk_layernorm=True, z_loss=1e-4
    ),
    "gpt-sp-atan2": lambda: families.gpt(task=tasks.markov_language(vocab=16, seq_len=8), base_width=32, widths=(32, 64), parametrization="sp"),
}




def _two_groups(model: nn.Module, lr: float) -> list[dict]:
    """A user's param groups: vectors at the run's LR, matrices at half of it with their own ε."""
    vectors = [p for p in model.parameters() if p.dim() < 2]
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    return [{"params": vectors, "lr": lr}, {"params": matrices, "lr": lr / 2, "eps": 1e-6}]


# A family's own optimizer factory(model, lr), as users write them.
OWN_OPTIMIZERS = {
    "torch-adam": lambda model, lr: torch.optim.Adam(_two_groups(model, lr), eps=1e-8),
    "torch-adam-l2": lambda model, lr: torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-2),
    "torch-adamw": lambda model, lr: torch.optim.AdamW(_two_groups(model, lr), betas=(0.9, 0.95), weight_decay=0.1),
    "torch-adamw-wd-over-lr": lambda model, lr: torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3 / lr),
    "atan2-independent-wd": lambda model, lr: AdamAtan2(_two_groups(model, lr), lr=lr, weight_decay=0.1, independent_wd=True),
}
OWN_MODELS = {
    "mlp": lambda: families.mlp(base_width=32, widths=(32, 64), parametrization=None),
    "gpt": lambda: families.gpt(task=tasks.markov_language(vocab=16, seq_len=8), base_width=32, widths=(32, 64), n_layers=1,
                                parametrization=None),
}
OWN_CONFIG = TrainConfig(steps=20, batch_size=8, warmup=4, schedule="cosine", grad_clip=1.0, probe_every=5)


def _assert_match_runs_alone(stacked: list[RunResult], family: ModelFamily, width: int, config: TrainConfig) -> None:
    """Each stacked run's losses and probes are those of the same run trained alone."""
    for result in stacked:
        alone = train_run(family, width, result.lr, result.seed, config)
        np.testing.assert_allclose(result.losses, alone.losses, rtol=1e-5, atol=1e-6)
        assert result.probe_step_list == alone.probe_step_list
        assert result.probes.keys() == alone.probes.keys()
        for probe, series in alone.probes.items():
            for key, values in series.items():
                np.testing.assert_allclose(result.probes[probe][key], values, rtol=1e-3, atol=1e-7, err_msg=f"{probe}/{key}")


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_stacked_runs_match_runs_trained_alone(kind: str) -> None:
    family = FAMILIES[kind]()
    config = dataclasses.replace(CONFIG, optimizer=OptimizerSpec(name="adam_atan2")) if "atan2" in kind else CONFIG
    stacked = train_group(family, 64, RUNS, config)
    assert [(r.lr, r.seed) for r in stacked] == RUNS
    _assert_match_runs_alone(stacked, family, 64, config)


@pytest.mark.parametrize("model", sorted(OWN_MODELS))
@pytest.mark.parametrize("optimizer", sorted(OWN_OPTIMIZERS))
def test_a_familys_own_optimizer_stacks_exactly(model: str, optimizer: str) -> None:
    """Stacked with the batched form of the family's optimizer, runs match runs trained alone with the real one."""
    family = dataclasses.replace(OWN_MODELS[model](), optimizer=OWN_OPTIMIZERS[optimizer])
    _assert_match_runs_alone(train_group(family, 32, RUNS, OWN_CONFIG), family, 32, OWN_CONFIG)


def test_a_diverging_member_does_not_disturb_the_others() -> None:
    family = families.mlp(base_width=32, widths=(32, 64))
    config = TrainConfig(steps=10, batch_size=8)
    runs = [(1e-3, 0), (1e30, 0), (1e-2, 1)]
    stacked = train_group(family, 32, runs, config)
    assert [r.diverged for r in stacked] == [False, True, False]
    assert len(stacked[1].losses) == 2 and not math.isfinite(stacked[1].losses[-1])
    for result, (lr, seed) in zip(stacked, runs):
        if not result.diverged:
            np.testing.assert_allclose(result.losses, train_run(family, 32, lr, seed, config).losses, rtol=1e-5, atol=1e-6)


def test_unstacked_training_takes_one_run() -> None:
    with pytest.raises(ValueError, match="one run at a time"):
        train_group(families.mlp(base_width=32, widths=(32, 64)), 32, RUNS, CONFIG, stacked=False)
    with pytest.raises(ValueError, match="compiled training is for stacked runs"):
        train_group(families.mlp(base_width=32, widths=(32, 64)), 32, RUNS[:1], CONFIG, stacked=False, compiled=True)


@pytest.fixture(scope="module")
def compiler() -> None:
    """Skip where ``torch.compile`` cannot run (inductor's CPU backend needs a C++ compiler)."""
    try:
        torch.compile(lambda x: x + 1)(torch.zeros(2))
    except Exception as exc:  # noqa: BLE001 - whatever stops the compiler is the reason to skip
        pytest.skip(f"torch.compile cannot run here ({type(exc).__name__}: {str(exc).splitlines()[0]})")


@pytest.mark.parametrize("kind", ["mlp-mup", "gpt-mup-qkln-zloss"])
def test_a_compiled_stacked_step_gives_the_eager_runs_and_leaves_no_compiled_code(kind: str, compiler: None) -> None:
    family = FAMILIES[kind]()
    eager, compiled = (train_group(family, 32, RUNS, CONFIG, compiled=compiled) for compiled in (False, True))
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(b.losses, a.losses, rtol=1e-5)
        for probe, series in a.probes.items():
            for key, values in series.items():
                np.testing.assert_allclose(b.probes[probe][key], values, rtol=1e-3, atol=1e-7, err_msg=f"{probe}/{key}")
    assert torch._C._dynamo.eval_frame._debug_get_cache_entry_list(StackedRuns._stacked_forward.__code__) == [], \
        "each group drops its compiled step (kept, they would reach the recompile limit)"


def _timings(monkeypatch: pytest.MonkeyPatch, compiled_step: float | Exception) -> list[tuple[int, bool]]:
    """Stand-in timings: a stack of c runs costs 0.1 s to set up and 0.01·√c s per step; compiled, 5 s to set up and
    ``compiled_step`` per step (or it raises). Returns the list of timed (chunk size, compiled) it fills."""
    timed: list[tuple[int, bool]] = []

    def fake(family, width, members, config, device, compiled=False):
        timed.append((len(members), compiled))
        if not compiled:
            return 0.1, 0.01 * len(members) ** 0.5
        if isinstance(compiled_step, Exception):
            raise compiled_step
        return 5.0, compiled_step

    monkeypatch.setattr(stacking, "time_steps", fake)
    return timed


@pytest.mark.parametrize("steps, compiled_step, plan, compile_timed", [
    (10_000, 0.001, stacking.Plan(4), False),  # a 201 s bill, under the CPU's 240 s: a compilation is not even timed
    (20_000, 0.01, stacking.Plan(4, compiled=True), True),  # 400 s eager, 205 s compiled
    (20_000, 0.0199, stacking.Plan(4), True),  # 400 s eager, 403 s compiled
])
def test_the_planner_compiles_the_stacked_step_only_where_its_whole_bill_is_lower(
        monkeypatch: pytest.MonkeyPatch, steps: int, compiled_step: float, plan: stacking.Plan, compile_timed: bool) -> None:
    timed = _timings(monkeypatch, compiled_step)
    family = families.mlp(base_width=32, widths=(32, 64))
    assert stacking.plan_width(family, 32, RUNS, TrainConfig(steps=steps, batch_size=8), torch.device("cpu")) == plan
    assert ((4, True) in timed) == compile_timed


def test_a_step_that_does_not_compile_trains_eagerly_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    _timings(monkeypatch, RuntimeError("inductor: no C++ compiler\nmore"))
    family = families.mlp(base_width=32, widths=(32, 64))
    with pytest.warns(stacking.StackingFallbackWarning, match=r"does not compile \(RuntimeError: inductor: no C\+\+ compiler\); training it eagerly$"):
        plan = stacking.plan_width(family, 32, RUNS, TrainConfig(steps=20_000, batch_size=8), torch.device("cpu"))
    assert plan == stacking.Plan(4)
