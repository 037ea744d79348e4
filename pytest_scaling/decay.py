"""Weight decay's timescale per parameter across widths, measured on the optimizer a family's runs use.

AdamW's decay shrinks θ by a fraction ηλ a step, so it forgets over τ = 1/(ηλ) steps (Wang & Aitchison: keep τ fixed
as a model grows). Under μP a hidden matrix's LR falls as 1/m, so torch AdamW's ``weight_decay`` (coupled to the LR)
makes τ grow in proportion to width: the narrow proxy decays its hidden weights m times faster than the wide model,
and the LR tuned on it stops transferring once training runs longer than τ (Wortsman et al. decouple the decay from
the LR for this reason). The effect needs runs of τ steps to show in losses; its cause shows in one optimizer step:
with every gradient zero and every parameter 1, whatever the step removes is the decay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._result import Result
from .metrics import log2_slopes


@torch.no_grad()
def shrink_per_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The fraction of each parameter one step of ``optimizer`` removes when every gradient is zero.

    Parameters are set to 1 first (so a zero-initialised readout is measured too) and read back as their mean; 0 for
    a parameter that does not decay, NaN where the step produced a non-finite value. ``model`` is consumed."""
    for parameter in model.parameters():
        parameter.fill_(1.0)
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    shrink = {}
    for name, parameter in model.named_parameters():
        value = 1.0 - float(parameter.double().mean())
        shrink[name] = value if math.isfinite(value) else math.nan
    return shrink


@dataclass(frozen=True, eq=False)
class DecayTimescales(Result):
    """Per decayed parameter, τ = 1/(fraction removed a step) at each width and its slope on log2 width."""

    widths: np.ndarray
    lr: float
    names: tuple[str, ...]  # the parameters that decay at some width
    timescale: np.ndarray  # [name, width] in steps; inf where the parameter does not decay at that width
    slopes: np.ndarray  # [name]; inf where it decays at some widths only

    @property
    def max_abs_slope(self) -> float | None:
        """The largest |slope| over the decayed parameters; None when nothing decays."""
        return float(np.max(np.abs(self.slopes))) if len(self.names) else None

    @property
    def worst(self) -> str | None:
        """The parameter whose timescale moves most with width."""
        return self.names[int(np.argmax(np.abs(self.slopes)))] if len(self.names) else None


def decay_timescales(widths: Sequence[int], lr: float, shrink: Sequence[dict[str, float]]) -> DecayTimescales:
    """τ and its slope on log2 width per parameter, from ``shrink[i]`` (:func:`shrink_per_step` at ``widths[i]``).

    A non-finite step counts as no measurement (NaN τ, excluded from the slope)."""
    names = tuple(name for name in shrink[0] if any(s.get(name, 0.0) != 0.0 for s in shrink))
    table = np.array([[s.get(name, 0.0) for s in shrink] for name in names], dtype=float).reshape(len(names), len(widths))
    with np.errstate(divide="ignore"):
        timescale = np.where(table > 0, 1.0 / np.where(table > 0, table, 1.0), np.where(np.isnan(table), np.nan, np.inf))
    partial = np.isinf(timescale).any(axis=1) | (table < 0).any(axis=1)
    slopes = np.where(partial, np.inf, log2_slopes(widths, np.log2(np.where(partial[:, None], 1.0, timescale)).T))
    return DecayTimescales(widths=np.asarray(widths), lr=float(lr), names=names, timescale=timescale, slopes=slopes)


def measure_decay(instantiate: Callable[[int], tuple[nn.Module, torch.optim.Optimizer]], widths: Sequence[int],
                  lr: float) -> DecayTimescales:
    """:func:`decay_timescales` of the optimizers ``instantiate(width)`` returns: a fresh model and its optimizer at
    peak LR ``lr`` (a float64 model reads a decay of 1e-6 a step to many digits; float32 to about 6%)."""
    return decay_timescales(widths, lr, [shrink_per_step(*instantiate(width)) for width in widths])
