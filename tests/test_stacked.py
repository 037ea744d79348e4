"""K runs trained as one stacked computation give the runs trained alone."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from pytest_scaling import families, tasks
from pytest_scaling.train import OptimizerSpec, TrainConfig, train_group, train_run

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


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_stacked_runs_match_runs_trained_alone(kind: str) -> None:
    family = FAMILIES[kind]()
    config = dataclasses.replace(CONFIG, optimizer=OptimizerSpec(name="adam_atan2")) if "atan2" in kind else CONFIG
    stacked = train_group(family, 64, RUNS, config)
    for result, (lr, seed) in zip(stacked, RUNS):
        alone = train_run(family, 64, lr, seed, config)
        assert (result.lr, result.seed) == (lr, seed)
        np.testing.assert_allclose(result.losses, alone.losses, rtol=1e-5, atol=1e-6)
        assert result.probe_step_list == alone.probe_step_list
        for probe, series in alone.probes.items():
            for key, values in series.items():
                np.testing.assert_allclose(result.probes[probe][key], values, rtol=1e-3, atol=1e-7, err_msg=f"{probe}/{key}")


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
