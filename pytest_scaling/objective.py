"""What a family's training objective does to log Z, the softmax's normaliser, measured from the objective itself.

Cross-entropy is unchanged when every logit moves by the same amount, so nothing in it holds log Z anywhere: under
Adam it drifts freely (Wortsman et al.'s output-logit divergence). A z-loss ``c·mean(log Z²)`` pulls it back with a
force ``2c·log Z``. ``log_z_pull`` reads ``c`` off the family's loss by shifting every logit and watching the loss
move, so the logit-divergence check knows whether a drift it sees has anything to stop it (see docs/design.md,
"Logit divergence").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .family import ModelFamily

#: Mean log Z of the probe's logits, and the shift applied either way: for a z-loss the central difference is exact.
_LOG_Z, _SHIFT = 5.0, 0.5
#: Pulls below this are float rounding in a float32 loss of a few nats, not a z-loss (1e-4 reads 1e-4 ± 1e-7).
MIN_PULL = 1e-6


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def log_z_pull(family: ModelFamily) -> float:
    """The coefficient ``c`` with which the family's objective pulls log Z towards 0: half its derivative along a
    shift of every logit, per unit of log Z, at logits whose log Z is 5 nats. A z-loss of weight c reads c;
    cross-entropy alone (``family.loss`` None) reads 0. Measured on one batch of the family's task."""
    _, targets = family.task.batch(4, torch.Generator().manual_seed(0))
    logits = torch.randn(*targets.shape, family.task.n_outputs, generator=torch.Generator().manual_seed(1))
    logits = logits - torch.logsumexp(logits, dim=-1, keepdim=True) + _LOG_Z
    objective = family.loss or _cross_entropy
    with torch.no_grad():
        up, down = (float(objective(logits + shift, targets)) for shift in (_SHIFT, -_SHIFT))
    return (up - down) / (2 * _SHIFT) / (2 * _LOG_Z)
