"""The Adam-epsilon check passes at the default ε, fails with its evidence at a large one, and does not apply to AdamAtan2."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import training_session
from examples import population
from pytest_scaling import checks, families, metrics, model_facts
from pytest_scaling.assertions import assert_adam_epsilon
from pytest_scaling.optim import AdamAtan2
from pytest_scaling.session import ScalingSession
from pytest_scaling.tiers import EpsilonGrid

# muP MLP, the lowest LR of the cpu tier, 60 steps. Measured (seed 0), width 128, second half of training: at ε = 1e-8
# the RMS of √v̂ ≥ 6.1e4·ε and at most 3.8% of a layer's coordinates below ε (columns fed by dead ReLU units, gradient
# exactly 0); at ε = 1e-3 the RMS of √v̂ is 0.55-0.58·ε in the input and hidden weights and 90-100% of their
# coordinates sit below ε. Widths stay small: 2 CPU threads shared with other jobs made larger ones 15x slower than one thread.
CHEAP = EpsilonGrid(widths=(64, 128), lrs=(1e-3,), steps=60, batch_size=64, probe_every=10, max_frac_below_eps=0.25,
                    min_rms_ratio=10.0, stacking="none")


@pytest.fixture
def session() -> ScalingSession:
    return training_session()


def test_default_eps_passes_and_a_large_eps_fails_with_the_layers_in_its_message(session: ScalingSession) -> None:
    family = families.mlp()
    clean = checks.adam_epsilon(session, family, CHEAP)
    assert clean is not None and np.all(clean.rms_ratio[:, -1] >= 1e3)
    with pytest.raises(AssertionError, match="Adam epsilon check failed") as failure:
        checks.adam_epsilon(session, family, dataclasses.replace(CHEAP, eps=1e-3))
    message = str(failure.value)
    assert "AdamAtan2" in message and "RMS of √v̂ ≥ 10·ε" in message
    hidden = next(line.split() for line in message.splitlines() if line.startswith("2.weight"))
    assert hidden[2] == "0.001" and float(hidden[3]) < 1 and float(hidden[4]) > 0.9 and hidden[5] == "128"
    values = [record["values"] for record in session.records]
    assert [v["property"] for v in values] == ["adam_epsilon"] * 2 and values[0]["value"] <= 0.25 < values[1]["value"]


def test_adam_atan2_is_not_applicable_and_trains_nothing(session: ScalingSession, monkeypatch: pytest.MonkeyPatch) -> None:
    family = dataclasses.replace(families.mlp(parametrization=None), name="mlp-atan2",
                                 optimizer=lambda model, lr: AdamAtan2(model.parameters(), lr=lr))
    monkeypatch.setattr(session, "sweep", lambda *args, **kwargs: pytest.fail("trained a family without ε"))
    assert checks.adam_epsilon(session, family, CHEAP) is None
    assert session.records[-1]["values"]["applicable"] is False


def test_a_family_optimizer_factory_is_probed_at_its_own_eps(session: ScalingSession) -> None:
    family = dataclasses.replace(families.mlp(parametrization=None), name="mlp-torch-adamw",
                                 optimizer=lambda model, lr: torch.optim.AdamW(model.parameters(), lr=lr, eps=1e-3))
    with pytest.raises(AssertionError, match="Adam epsilon check failed"):
        checks.adam_epsilon(session, family, dataclasses.replace(CHEAP, widths=(32, 64), steps=20))
    assert session.records[-1]["values"]["eps"] == [1e-3] * 8


def test_assertion_skips_unprobed_cells_and_asserts_the_largest_width_only() -> None:
    layers, widths, lrs = ["hidden", "readout"], [64, 128], [1e-3, 1e-2]
    sqrt_v_rms = np.array([[[1e-9, 1e-9], [1e-4, np.nan]], [[1e-3, 1e-3], [1e-3, 1e-3]]])
    frac = np.array([[[1.0, 1.0], [0.0, np.nan]], [[0.0, 0.0], [0.1, 0.1]]])
    result = metrics.epsilon_margins(layers, widths, lrs, [1e-8, 1e-8], sqrt_v_rms, frac)
    assert assert_adam_epsilon(result) is result
    with pytest.raises(AssertionError, match=r"1 of 2 layers fail") as failure:
        assert_adam_epsilon(result, max_frac_below_eps=0.05)
    assert str(failure.value).splitlines()[4].split()[0] == "readout"


def test_a_parameter_the_loss_ignores_is_listed_not_asserted(session: ScalingSession) -> None:
    # A LayerNorm over the keys has a bias the softmax cancels (every key shifts alike): its gradient is round-off,
    # 5e-13 to 5e-12 at ε 1e-12 in a population family, which failed the check before such parameters were left out.
    # A zero-initialised query is zero-gradient at init only, and stays asserted.
    spec = population.Spec(norm="layernorm", qk_norm=True, query_zero=True, eps=1e-12, n_layers=1)
    family = population.family(spec)
    assert model_facts.loss_independent_parameters(family) == ("blocks.0.attn.k_norm.bias",)
    result = checks.adam_epsilon(session, family, dataclasses.replace(CHEAP, widths=(32, 64), steps=20))
    assert result is not None and "blocks.0.attn.k_norm.bias" not in result.layers
    assert "blocks.0.attn.query.weight" in result.layers
    assert session.records[-1]["values"]["no_gradient"] == ["blocks.0.attn.k_norm.bias"]
