"""A family's own optimizer: its exact stacked form, the fallback where there is none, and the recipe notes."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from pytest_scaling import families, sweep
from pytest_scaling.family import ModelFamily
from pytest_scaling.optim import AdamW, NoStackedForm, PerRun, describe, stacked_form
from pytest_scaling.stacking import StackingFallbackWarning, train_width
from pytest_scaling.train import OptimizerSpec, RunResult, TrainConfig, recipe_notes, train_group, train_run

Factory = Callable[[nn.Module, float], torch.optim.Optimizer]
LRS = (1e-3, 1e-2)


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _form(factory: Factory, lrs: tuple[float, ...] = LRS):
    models = [_model() for _ in lrs]
    return stacked_form([factory(m, lr) for m, lr in zip(models, lrs)], [dict(m.named_parameters()) for m in models])


def _matrices_and_vectors(model: nn.Module, lr: float, matrix_eps: float = 1e-6) -> list[dict]:
    """A user's groups: matrices at half the run's LR with their own ε, vectors at the run's LR."""
    return [{"params": [p for p in model.parameters() if p.dim() == 2], "lr": lr / 2, "eps": matrix_eps},
            {"params": [p for p in model.parameters() if p.dim() < 2], "lr": lr}]


def test_torch_adam_translates_with_its_groups_and_l2_decay() -> None:
    def factory(model: nn.Sequential, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam([{"params": [model[0].weight, model[2].weight], "lr": lr / 2, "eps": 1e-6},
                                 {"params": [model[0].bias, model[2].bias], "weight_decay": 0.1}], lr=lr, betas=(0.9, 0.95))

    form = _form(factory)
    assert (form.source, form.optimizer) == ("torch.optim.Adam", AdamW)
    (matrices, first), (vectors, second) = form.groups
    assert (matrices, vectors) == (("0.weight", "2.weight"), ("0.bias", "2.bias"))
    assert (first["lr"], first["eps"], first["betas"]) == (PerRun((5e-4, 5e-3)), 1e-6, (0.9, 0.95))
    assert (second["l2"], second["weight_decay"], second["independent_wd"]) == (0.1, 0.0, False)
    assert form.per_run() == ["lr"]


def test_torch_adamw_decay_is_coupled_and_per_run_where_the_factory_ties_it_to_the_lr() -> None:
    form = _form(lambda model, lr: torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3 / lr))
    (_, hyper), = form.groups
    assert (hyper["weight_decay"], hyper["l2"], hyper["independent_wd"]) == (PerRun((1.0, 0.1)), 0.0, False)
    assert form.per_run() == ["lr", "weight_decay"]


def test_the_batched_optimizer_carries_per_run_vectors_on_the_parameters() -> None:
    form = _form(lambda model, lr: torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3 / lr))
    params = {n: torch.zeros(len(LRS), *p.shape, dtype=torch.float64) for n, p in _model().named_parameters()}
    optimizer = form.build(params)
    (group,) = optimizer.param_groups
    assert isinstance(optimizer, AdamW) and group["params"] == list(params.values())
    assert group["lr"].dtype == torch.float64
    torch.testing.assert_close(group["lr"], torch.tensor(LRS, dtype=torch.float64))
    torch.testing.assert_close(group["weight_decay"], torch.tensor([1.0, 0.1], dtype=torch.float64))


class MyAdam(torch.optim.Adam):
    """A user's subclass: its step may differ from Adam's, so it never stacks."""


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda m, lr: torch.optim.Adam(m.parameters(), lr=lr, amsgrad=True), r"^torch\.optim\.Adam\(amsgrad=True\) has no stacked form$"),
        (lambda m, lr: torch.optim.AdamW(m.parameters(), lr=lr, maximize=True), r"^torch\.optim\.AdamW\(maximize=True\) has no"),
        (lambda m, lr: torch.optim.Adam(m.parameters(), lr=lr, differentiable=True), r"^torch\.optim\.Adam\(differentiable=True\)"),
        (lambda m, lr: torch.optim.SGD(m.parameters(), lr=lr), r"^torch\.optim\.SGD has no stacked form$"),
        (lambda m, lr: MyAdam(m.parameters(), lr=lr), r"\.MyAdam has no stacked form$"),
        (lambda m, lr: (torch.optim.Adam if lr < 5e-3 else torch.optim.AdamW)(m.parameters(), lr=lr), "differ in class"),
        (lambda m, lr: torch.optim.Adam(_matrices_and_vectors(m, lr) if lr < 5e-3 else m.parameters(), lr=lr),
         "group the parameters differently"),
        (lambda m, lr: torch.optim.Adam(m.parameters(), lr=lr, betas=(0.9, 1 - lr)), r"betas differs between the runs"),
        (lambda m, lr: torch.optim.Adam([*m.parameters(), nn.Parameter(torch.zeros(2))], lr=lr), "not a parameter of the model"),
    ],
    ids=["amsgrad", "maximize", "differentiable", "sgd", "subclass", "class-by-lr", "groups-by-lr", "betas-by-lr", "foreign-tensor"],
)
def test_optimizers_without_an_exact_stacked_form_say_why(factory: Factory, message: str) -> None:
    with pytest.raises(NoStackedForm, match=message):
        _form(factory)


@pytest.mark.parametrize(
    "factory, expected",
    [
        (lambda m, lr: torch.optim.Adam(_matrices_and_vectors(m, lr), eps=1e-8),
         "torch.optim.Adam: 2 param groups (LR ×0.5, ×1), betas (0.9, 0.999), eps 1e-06/1e-08"),
        (lambda m, lr: torch.optim.Adam(m.parameters(), lr=lr, weight_decay=0.01, amsgrad=True),
         "torch.optim.Adam: 1 param group (LR ×1), betas (0.9, 0.999), eps 1e-08, amsgrad True, weight decay 0.01 (L2, added to the gradient)"),
        (lambda m, lr: torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9, 0.95)),
         "torch.optim.AdamW: 1 param group (LR ×1), betas (0.9, 0.95), eps 1e-08, weight decay 0.01 (coupled to the LR)"),
        (lambda m, lr: AdamW(m.parameters(), lr=lr, weight_decay=1e-4, independent_wd=True),
         "pytest_scaling.optim.AdamW: 1 param group (LR ×1), betas (0.9, 0.999), eps 1e-08, weight decay 0.0001 (independent of the LR)"),
    ],
    ids=["adam-groups", "adam-l2-amsgrad", "adamw", "ours-independent"],
)
def test_describe_names_the_optimizer_its_groups_and_its_decay(factory: Factory, expected: str) -> None:
    assert describe(factory(_model(), 1e-3), 1e-3) == expected


def _own(factory: Factory) -> ModelFamily:
    return dataclasses.replace(families.mlp(base_width=32, widths=(32, 64), parametrization=None, name="my-mlp"), optimizer=factory)


def _adam_groups(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(_matrices_and_vectors(model, lr), eps=1e-8)


def _amsgrad(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr, amsgrad=True)


MEMBERS = [(1e-3, 0), (1e-2, 0), (1e-2, 1)]
CONFIG = TrainConfig(steps=8, batch_size=8)


def _train_width(family: ModelFamily, stacking: str) -> tuple[list[RunResult], set[int]]:
    results, sizes = [], set()

    def on_chunk(_width: int, chunk: list[RunResult], size: int) -> None:
        results.extend(chunk)
        sizes.add(size)

    train_width(family, 32, MEMBERS, CONFIG, device=torch.device("cpu"), stacking=stacking, on_chunk=on_chunk)
    return results, sizes


@pytest.mark.parametrize("stacking", ["all", "auto"])
def test_an_optimizer_without_a_stacked_form_trains_one_by_one_and_says_why(stacking: str) -> None:
    family = _own(_amsgrad)
    with pytest.warns(StackingFallbackWarning, match=r"^my-mlp: torch\.optim\.Adam\(amsgrad=True\) has no stacked form: training one by one$"):
        results, sizes = _train_width(family, stacking)
    assert sizes == {1}
    for result in results:
        np.testing.assert_array_equal(result.losses, train_run(family, 32, result.lr, result.seed, CONFIG).losses)


def test_an_optimizer_with_a_stacked_form_stacks() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", StackingFallbackWarning)
        results, sizes = _train_width(_own(_adam_groups), "all")
    assert sizes == {len(MEMBERS)} and [(r.lr, r.seed) for r in results] == MEMBERS


def test_the_adam_probe_reads_the_eps_of_the_users_groups() -> None:
    """ε = 1 on the matrices puts every √v̂ below it; the vectors' ε = 1e-8 almost none."""
    family = _own(lambda model, lr: torch.optim.Adam(_matrices_and_vectors(model, lr, matrix_eps=1.0), eps=1e-8))
    config = TrainConfig(steps=3, batch_size=8, probe_steps=(2,), probe_kinds=("adam_state",))
    stacked = train_group(family, 32, MEMBERS, config)
    for result in stacked:
        alone = train_run(family, 32, result.lr, result.seed, config)
        frac = {name: values[0] for name, values in result.probes["frac_below_eps"].items()}
        assert frac == pytest.approx({name: values[0] for name, values in alone.probes["frac_below_eps"].items()})
        assert all(f == 1.0 for name, f in frac.items() if name.endswith("weight"))
        assert all(f < 0.5 for name, f in frac.items() if name.endswith("bias"))


RECIPE = TrainConfig(steps=100, batch_size=8, warmup=10, schedule="cosine", min_lr_frac=0.1, grad_clip=1.0,
                     optimizer=OptimizerSpec(betas=(0.9, 0.95), weight_decay=1e-4))
SCHEDULE_NOTES = ["LR schedule: linear warmup over 10 steps, then cosine decay to 0.1x the peak by step 100",
                  "gradients clipped to global norm 1 per run"]


def test_the_recipe_of_a_built_in_family() -> None:
    notes = recipe_notes(families.mlp(base_width=32, widths=(32, 64)), RECIPE, LRS)
    assert notes == ["the recipe's AdamW, betas (0.9, 0.95), eps 1e-08, independent weight decay 0.0001; "
                     "per-layer init and LR multipliers of mup", *SCHEDULE_NOTES, "runs stack (chunk size timed per width)"]


def test_the_recipe_around_a_familys_own_optimizer() -> None:
    notes = recipe_notes(_own(_adam_groups), RECIPE, LRS, seeds=(0, 1), stacking="all")
    assert notes == [
        "the family's own torch.optim.Adam: 2 param groups (LR ×0.5, ×1), betas (0.9, 0.999), eps 1e-06/1e-08 (width 32, LR 0.001)",
        "not applied, the family's optimizer keeps its own: the recipe's AdamW, betas (0.9, 0.95), eps 1e-08, independent weight decay 0.0001",
        "the recipe scales every param group's LR by its schedule",
        *SCHEDULE_NOTES,
        "runs stack (all runs of a width at once): torch.optim.Adam as the batched AdamW, per run: lr",
    ]


@pytest.mark.parametrize(
    "factory, lrs, seeds, stacking, last",
    [
        (_amsgrad, LRS, (0,), "auto", "runs train one by one: torch.optim.Adam(amsgrad=True) has no stacked form"),
        (_adam_groups, LRS, (0,), "none", "runs train one by one (stacking='none')"),
        (_adam_groups, LRS[:1], (0,), "auto", "runs train one by one: one run per width"),
        (_adam_groups, LRS[:1], (0, 1), "auto", "runs stack (chunk size timed per width): torch.optim.Adam as the batched AdamW"),
    ],
    ids=["no-stacked-form", "stacking-none", "one-run", "one-lr-two-seeds"],
)
def test_the_recipe_says_whether_runs_stack(factory: Factory, lrs: tuple[float, ...], seeds: tuple[int, ...], stacking: str,
                                            last: str) -> None:
    assert recipe_notes(_own(factory), RECIPE, lrs, seeds, stacking)[-1] == last


def test_the_recipe_rejects_an_unknown_stacking() -> None:
    with pytest.raises(ValueError, match="stacking must be one of 'auto', 'all', 'compiled', 'none'; got 'some'"):
        recipe_notes(_own(_adam_groups), RECIPE, LRS, stacking="some")


def test_a_sweep_states_its_recipe() -> None:
    family = _own(_adam_groups)
    result = sweep.sweep(family, lrs=LRS, steps=2, batch_size=8, stacking="all")
    assert result.recipe == recipe_notes(family, result.config, LRS, stacking="all", widths=result.widths)
    assert any(line.startswith("LR by role (× η) at widths") for line in result.recipe)
    assert result.recipe[-1].startswith("runs stack (all runs of a width at once)")
