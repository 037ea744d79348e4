"""Probes read during chosen forward passes: layer output sizes, norm-layer input sizes and attention logits.

``probing(model)`` hooks every parameterised leaf module and records the mean |output|
(the coordinate-check statistic) and, for normalisation layers, the mean |input|: in a pre-LN
network the final norm reads the residual stream the readout sees, the depth check's statistic.
Attention modules report their largest logit through ``record_attention_logits`` (user models may
call it too). Outside ``probing`` all of it costs nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn


@dataclass
class ProbeRecorder:
    """Values from the forward passes run while probing, keyed by module name."""

    module_names: dict[int, str]
    activation_size: dict[str, float] = field(default_factory=dict)
    norm_input_size: dict[str, float] = field(default_factory=dict)
    attention_logit_max: dict[str, float] = field(default_factory=dict)


_ACTIVE: contextvars.ContextVar[ProbeRecorder | None] = contextvars.ContextVar("pytest_scaling_probe", default=None)


NORM_TYPES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm)


def _leaf_with_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


@contextlib.contextmanager
def probing(model: nn.Module) -> Iterator[ProbeRecorder]:
    """Record probes for the forward passes inside the block."""
    recorder = ProbeRecorder(module_names={id(m): n for n, m in model.named_modules()})
    leaves = {id(m) for m in model.modules() if _leaf_with_params(m)}

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        name = recorder.module_names[id(module)]
        if id(module) in leaves and isinstance(output, torch.Tensor) and output.numel():
            recorder.activation_size[name] = float(output.detach().float().abs().mean())
        if isinstance(module, NORM_TYPES) and args and isinstance(args[0], torch.Tensor) and args[0].numel():
            recorder.norm_input_size[name] = float(args[0].detach().float().abs().mean())

    # Norm layers are hooked with or without a learned gain: the depth check reads the final one's input.
    handles = [m.register_forward_hook(hook) for m in model.modules() if id(m) in leaves or isinstance(m, NORM_TYPES)]
    token = _ACTIVE.set(recorder)
    try:
        yield recorder
    finally:
        _ACTIVE.reset(token)
        for h in handles:
            h.remove()


def record_attention_logits(module: nn.Module, logits: torch.Tensor) -> None:
    """Record the largest attention logit (``q_i . k_j * scale``, masked entries at -inf) when probing."""
    recorder = _ACTIVE.get()
    if recorder is not None:
        name = recorder.module_names.get(id(module), type(module).__name__)
        recorder.attention_logit_max[name] = float(logits.detach().max())
