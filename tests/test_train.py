"""The trainer: determinism, divergence handling, probes, and what they show on tiny runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytest_scaling import families, tasks
from pytest_scaling.family import ModelFamily
from pytest_scaling.probes import probing
from pytest_scaling import members, train
from pytest_scaling.train import OptimizerSpec, TrainConfig, train_group, train_run

TINY_LANGUAGE = tasks.markov_language(vocab=32, seq_len=16)


def tiny_gpt(**kwargs) -> ModelFamily:
    return families.gpt(task=TINY_LANGUAGE, base_width=32, widths=(32, 64), **kwargs)


def test_fixed_seed_gives_identical_runs() -> None:
    family = families.mlp(widths=(32, 64), base_width=32)
    a, b = (train_run(family, 32, 1e-3, seed=3, steps=20, batch_size=16) for _ in range(2))
    assert a.losses == b.losses
    c = train_run(family, 32, 1e-3, seed=4, steps=20, batch_size=16)
    assert c.losses != a.losses


def test_runs_at_different_lrs_see_the_same_batches() -> None:
    family = families.mlp(widths=(32, 64), base_width=32)
    slow, fast = (train_run(family, 64, lr, seed=0, steps=2, batch_size=16) for lr in (1e-4, 1e-1))
    assert slow.losses[0] == fast.losses[0], "same init and first batch, whatever the LR"


def test_a_task_with_heldout_windows_ends_each_run_with_its_loss_there() -> None:
    # An LR of 1e-30 leaves every weight as initialised, so the held-out loss is the fresh model's on those windows.
    task = tasks.text_files(seq_len=16, eval_windows=40)
    family = families.gpt(task=task, base_width=32, widths=(32, 64))
    runs = train_group(family, 32, [(1e-30, 0), (1e-30, 1)], TrainConfig(steps=1, batch_size=4), stacked=True)
    for run in runs:
        model, _ = family.instantiate(32, run.seed)
        with torch.no_grad():
            total = sum(F.cross_entropy(model(x).flatten(0, 1), y.flatten()) * len(x)
                        for x, y in task.evaluation_batches())
        assert run.final_loss() == run.heldout_loss == pytest.approx(float(total) / 40, rel=1e-5)
    assert train_run(tiny_gpt(), 32, 1e-3, seed=0, steps=4, batch_size=4).heldout_loss is None


class DropoutMLP(nn.Module):
    """A user's MLP with dropout between its layers."""

    def __init__(self, width: int, p: float):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.LazyLinear(width), nn.ReLU(), nn.Dropout(p), nn.LazyLinear(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def dropout_family(p: float = 0.5, task: tasks.Task | None = None) -> ModelFamily:
    return ModelFamily(name=f"dropout-{p}", build=lambda width: DropoutMLP(width, p),
                       task=task or families.mlp(widths=(32, 64), base_width=32).task, base_width=32, widths=(32, 64))


def test_dropout_draws_depend_on_the_run_seed_only() -> None:
    family, runs, config = dropout_family(), [(1e-2, 0)], TrainConfig(steps=6, batch_size=16)
    torch.manual_seed(1)
    first = train_group(family, 32, runs, config, stacked=False)[0]
    state = torch.random.get_rng_state()
    torch.manual_seed(2)
    assert train_group(family, 32, runs, config, stacked=False)[0].losses == first.losses
    torch.manual_seed(1)
    train_group(family, 32, runs, config, stacked=False)
    assert torch.equal(torch.random.get_rng_state(), state), "the caller's random stream is left as it was"
    other_seed = train_group(family, 32, [(1e-2, 1)], config, stacked=False)[0]
    assert other_seed.losses != first.losses


def test_a_model_with_dropout_trains_alone_and_one_without_stacks() -> None:
    assert "draws random numbers (dropout)" in members.unstackable_reason(dropout_family(0.5), 32, [1e-3, 1e-2], [0, 0])
    assert members.unstackable_reason(dropout_family(0.0), 32, [1e-3, 1e-2], [0, 0]) is None


def test_the_heldout_loss_is_measured_without_dropout() -> None:
    # At an LR of 1e-30 the held-out loss is the fresh model's, in eval mode: the same with dropout 0.5 and without.
    task = tasks.text_files(seq_len=16, eval_windows=8)

    def gpt_with_dropout(p: float) -> ModelFamily:
        gpt = families.gpt(task=task, base_width=32, widths=(32, 64), parametrization="sp")
        return ModelFamily(name=f"gpt-dropout-{p}", build=lambda width: nn.Sequential(gpt.instantiate(width, 0)[0],
                                                                                      nn.Dropout(p)),
                           task=task, base_width=32, widths=(32, 64))

    losses = [train_group(gpt_with_dropout(p), 32, [(1e-30, 0)], TrainConfig(steps=1, batch_size=4), stacked=False)[0]
              for p in (0.5, 0.0)]
    assert losses[0].heldout_loss == losses[1].heldout_loss
    assert losses[0].losses != losses[1].losses, "training steps do use dropout"


def test_non_finite_loss_stops_the_run_as_diverged() -> None:
    # One Adam step of 1e30 puts every weight near 1e30; the second layer overflows to inf.
    result = train_run(families.mlp(widths=(32, 64), base_width=32), 32, lr=1e30, seed=0, steps=50, batch_size=8)
    assert result.diverged and len(result.losses) == 2
    assert math.isfinite(result.losses[0]) and not math.isfinite(result.losses[-1])
    assert result.final_loss() == math.inf


def test_losses_read_back_every_32_steps_equal_losses_read_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an accelerator the losses are read, and the batches sent, every LOSS_READ_EVERY steps (no device sync per
    step): the runs, their probes and where a run diverged (at a step between two reads) come out the same."""
    family = families.mlp(widths=(32, 64), base_width=32)
    runs = [(1e-3, 0), (1e30, 0), (1e-2, 1)]  # LR 1e30 overflows at step 1, between the reads at steps 0 and 25
    config = TrainConfig(steps=70, batch_size=8, probe_every=25)
    every_step = train_group(family, 32, runs, config)
    monkeypatch.setattr(train, "_read_interval", lambda device, timed: 1 if timed else train.LOSS_READ_EVERY)
    deferred = train_group(family, 32, runs, config)
    assert json.dumps([r.to_dict() for r in deferred]) == json.dumps([r.to_dict() for r in every_step])  # NaN-aware
    assert every_step[1].diverged and len(every_step[1].losses) == 2 and every_step[1].probe_step_list == [0]
    assert not every_step[0].diverged and len(every_step[0].losses) == 70


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"lr": float("nan")}, {"width": 0}, {"steps": 0}, {"warmup": 99}])
def test_bad_run_arguments_are_one_line_errors(bad: dict) -> None:
    args = {"width": 32, "lr": 1e-3, "steps": 10, **bad}
    with pytest.raises(ValueError, match="must"):
        train_run(families.mlp(widths=(32, 64), base_width=32), seed=0, batch_size=4, **args)


def test_probes_are_recorded_on_schedule() -> None:
    result = train_run(tiny_gpt(), 32, 1e-3, seed=0, steps=12, batch_size=4, probe_every=5)
    assert result.probe_step_list == [0, 5, 10, 11]
    assert set(result.probes) == {"activation", "norm_input", "attention_logit_max", "attention_logit_size",
                                  "attention_heads", "output", "sqrt_v_rms", "frac_below_eps"}
    assert set(result.probes["attention_logit_max"]) == {"blocks.0.attn", "blocks.1.attn"}
    # The input of each norm layer: in this pre-LN model the residual stream each block and the readout read.
    assert set(result.probes["norm_input"]) == {"blocks.0.ln1", "blocks.0.ln2", "blocks.1.ln1", "blocks.1.ln2", "ln_f"}
    assert all(len(series) == 4 for kind in result.probes.values() for series in kind.values())


def test_a_norm_without_a_learned_gain_still_reports_its_input() -> None:
    """The depth check reads the final norm's input; a parameter-free LayerNorm has no output probe but that input."""
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8, elementwise_affine=False), nn.Linear(8, 2))
    with torch.no_grad(), probing(model) as recorder:
        model(torch.ones(3, 4))
        hidden = float(model[0](torch.ones(3, 4)).abs().mean())
    assert set(recorder.activation_size) == {"0", "2"} and set(recorder.norm_input_size) == {"1"}
    assert recorder.norm_input_size["1"] == pytest.approx(hidden)


def test_trained_gpt_approaches_but_never_beats_the_markov_entropy() -> None:
    task = tasks.markov_language(vocab=16, seq_len=16, seed=1)
    family = families.gpt(task=task, base_width=32, widths=(32, 64))
    result = train_run(family, 32, 1e-2, seed=0, steps=150, batch_size=32, warmup=15, schedule="cosine")
    # Each step's loss is measured on fresh samples, so it estimates the true expected loss;
    # the mean of the last 15 steps (7.7k tokens) has a standard error near 0.01 nats.
    gap = result.final_loss() - task.loss_floor
    assert -0.03 < gap < 0.1, f"final {result.final_loss():.4f} vs entropy {task.loss_floor:.4f}"
    assert result.initial_loss - task.loss_floor > 1.0


HIGH_LR = TrainConfig(steps=60, batch_size=16, probe_every=10, probe_kinds=("attention", "output"))


def _late(series: list[float]) -> float:
    return float(np.mean(np.abs(series[-3:])))


def test_z_loss_pulls_log_z_towards_zero_at_high_lr() -> None:
    # Seeds 0-2 gave late |log Z| of 5.6, 5.1, 5.9 without and 1.8, 1.4, 1.8 with z-loss 1e-2.
    plain = train_run(tiny_gpt(parametrization="sp"), 32, 0.1, seed=0, config=HIGH_LR)
    z = train_run(tiny_gpt(parametrization="sp", z_loss=1e-2), 32, 0.1, seed=0, config=HIGH_LR)
    log_z = (_late(plain.probes["output"]["log_z_mean"]), _late(z.probes["output"]["log_z_mean"]))
    assert log_z[1] < 0.5 * log_z[0], f"|log Z| without / with z-loss: {log_z}"


def test_qk_layernorm_bounds_the_attention_logits_at_high_lr() -> None:
    def max_attention(result) -> float:
        return max(_late(series) for series in result.probes["attention_logit_max"].values())

    plain = train_run(tiny_gpt(parametrization="sp"), 32, 0.1, seed=0, config=HIGH_LR)
    qkln = train_run(tiny_gpt(parametrization="sp", qk_layernorm=True), 32, 0.1, seed=0, config=HIGH_LR)
    assert max_attention(qkln) * 10 < max_attention(plain), (max_attention(plain), max_attention(qkln))


def test_tiny_gradients_collapse_adamw_but_not_adam_atan2() -> None:
    """Gradients scaled by 1e-9 sit far below eps = 1e-8: AdamW stops moving, AdamAtan2 does not care."""

    def scaled_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return 1e-9 * F.cross_entropy(logits, targets)

    task = tasks.teacher_student(input_dim=16, n_classes=10)
    config = TrainConfig(steps=30, batch_size=32, probe_steps=(29,), probe_kinds=("adam_state",))

    def run(optimizer: str, loss) -> object:
        spec = OptimizerSpec(name=optimizer)
        family = ModelFamily("mlp", families.mlp(task=task).build, task, base_width=64, parametrization="mup", loss=loss)
        return train_run(family, 64, 1e-2, seed=0, config=config, optimizer=spec)

    atan2_plain, atan2_tiny = run("adam_atan2", None), run("adam_atan2", scaled_ce)
    np.testing.assert_allclose(atan2_tiny.losses, atan2_plain.losses, rtol=1e-4)
    adamw_plain, adamw_tiny = run("adamw", None), run("adamw", scaled_ce)
    assert adamw_plain.losses[-1] < adamw_plain.losses[0] - 0.2
    assert abs(adamw_tiny.losses[-1] - adamw_tiny.losses[0]) < 0.05
    fractions = [v[-1] for v in adamw_tiny.probes["frac_below_eps"].values()]
    assert min(fractions) > 0.99, "the epsilon probe reports the collapse"
