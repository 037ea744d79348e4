"""The objective's pull on log Z, read off the family's loss (pytest_scaling.objective)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pytest_scaling import ModelFamily, families, tasks
from pytest_scaling.objective import MIN_PULL, log_z_pull


def family_with(loss) -> ModelFamily:
    return ModelFamily(name="f", build=lambda w: torch.nn.Linear(w, 64), task=tasks.markov_language(vocab=64, seq_len=8),
                       base_width=8, loss=loss)


def z_loss(c: float):
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        flat = logits.reshape(-1, logits.shape[-1]).float()
        return F.cross_entropy(flat, targets.reshape(-1)) + c * torch.logsumexp(flat, -1).pow(2).mean()
    return loss


@pytest.mark.parametrize("c", [1e-4, 1e-3, 1e-2])
def test_a_z_loss_reads_its_weight(c: float) -> None:
    assert log_z_pull(family_with(z_loss(c))) == pytest.approx(c, rel=1e-3)


def test_cross_entropy_alone_does_not_pull() -> None:
    assert abs(log_z_pull(family_with(None))) < MIN_PULL
    assert abs(log_z_pull(family_with(z_loss(0.0)))) < MIN_PULL


def test_the_built_in_gpts_z_loss_is_read() -> None:
    assert log_z_pull(families.gpt(parametrization="mup", z_loss=1e-4)) == pytest.approx(1e-4, rel=1e-3)
