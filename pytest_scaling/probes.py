"""Probes read during chosen forward passes: layer output sizes, norm-layer input sizes and attention logits.

``probing(model)`` hooks every parameterised leaf module and records the mean |output|
(the coordinate-check statistic) and, for normalisation layers (``is_norm``), the mean |input|: in a
pre-LN network the final norm reads the residual stream the readout sees, the depth check's statistic.
The largest attention logit of each attention module is recorded from any of: calls to
``F.scaled_dot_product_attention`` and, for hand-written attention, softmax calls over a square score matrix inside a
module (both seen by a torch function mode), ``nn.MultiheadAttention`` modules (recomputed from their weights and
inputs by a pre-hook), and ``record_attention_logits`` for attention none of these sees. A model needs no change for any of it; outside ``probing`` nothing is installed.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


@dataclass
class ProbeRecorder:
    """Values from the forward passes run while probing, keyed by module name."""

    module_names: dict[int, str]
    activation_size: dict[str, float] = field(default_factory=dict)
    norm_input_size: dict[str, float] = field(default_factory=dict)
    attention_logit_max: dict[str, float] = field(default_factory=dict)
    attention_logit_size: dict[str, float] = field(default_factory=dict)  # mean |logit| over attended entries
    attention_heads: dict[str, float] = field(default_factory=dict)  # heads per call, where the logits show them

    def name_of(self, module: nn.Module) -> str:
        """The module's name in the probed model; its class name for the root (named "") or a foreign module."""
        return self.module_names.get(id(module)) or type(module).__name__

    def note_logits(self, logits: torch.Tensor, readout: str | None, readout_output: torch.Tensor | None) -> None:
        """The model's output, measured as the readout's when it is the last module's output times a constant: a
        readout multiplier written after the module (``logits = readout(h) / m``) is part of the readout, as it is
        inside microsoft/mup's MuReadout. Otherwise (a tied readout computed without a module) it is its own row,
        ``LOGITS``."""
        if readout_output is logits:
            return
        if readout is not None and _proportional(logits, readout_output):
            self.activation_size[readout] = _mean_abs(logits)
        else:
            self.activation_size[LOGITS] = _mean_abs(logits)

    def note_attention(self, name: str, logits: tuple[float, float], heads: int | None = None) -> None:
        """Keep the largest logit (NaN, a diverged run, wins) and the largest mean |logit| a module produced over its
        calls: ``logits`` is (max, mean |logit|) of one call's attended entries; ``heads``, its head count where the
        call shows it (the coordinate check expects μP's logits at init from how the head size grows)."""
        if heads is not None:
            self.attention_heads[name] = float(heads)
        logit_max, logit_size = logits
        previous = self.attention_logit_max.get(name, -math.inf)
        self.attention_logit_max[name] = float(np.maximum(previous, logit_max))
        self.attention_logit_size[name] = float(np.maximum(self.attention_logit_size.get(name, 0.0), logit_size))


#: The coordinate check's row for the model's output when no module's output is the logits (up to a constant).
LOGITS = "(logits)"


def _mean_abs(tensor: torch.Tensor) -> float:
    return float(tensor.detach().float().abs().mean())


def _proportional(logits: torch.Tensor, output: torch.Tensor) -> bool:
    """Whether ``logits`` is ``output`` times one constant (both exactly 0 counts: a zero readout at step 0)."""
    if output.shape != logits.shape:
        return False
    a, b = logits.detach().double().flatten(), output.detach().double().flatten()
    scale = float(b @ b)
    c = float(a @ b) / scale if scale > 0 else 0.0
    return bool(torch.allclose(a, c * b, rtol=1e-4, atol=1e-6 * float(a.abs().max().clamp_min(1e-30))))


_ACTIVE: contextvars.ContextVar[ProbeRecorder | None] = contextvars.ContextVar("pytest_scaling_probe", default=None)

# "norm" not followed by "al": LayerNorm, RMSNorm, ScaleNorm, BatchNorm1d, QKNorm; not Normal(izer|ization|ize).
_NORM_NAME = re.compile(r"norm(?!al)", re.IGNORECASE)


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalisation layer: its class (or a base class) is named like one, e.g. LayerNorm,
    RMSNorm, GroupNorm, a user's own ``class RMSNorm(nn.Module)`` or a LayerNorm subclass, and it holds no
    submodule with parameters.

    By name rather than by behaviour (output invariant to the input's scale) because the depth check must find the
    final norm in a freshly built model, without knowing its input shape or running user code. "Norm" followed by
    "al" is not a norm: ``Normalizer``/``Normalize``/``Normalization`` name fixed-statistics input scalers (sklearn,
    torchvision, keras), ``Normal`` a distribution; a norm class so named is missed (rename it, e.g. ``...Norm``).
    A module holding parameterised submodules is a container (``PreNormBlock``), not the norm itself.
    """
    named = any(_NORM_NAME.search(cls.__name__) for cls in type(module).__mro__)
    return named and not any(True for child in module.children() for _ in child.parameters())


def _leaf_with_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _mask_bias(mask: torch.Tensor, *, true_means_attend: bool) -> torch.Tensor:
    """An attention mask as an additive float bias: boolean masks give 0 where attended, -inf elsewhere."""
    if mask.dtype != torch.bool:
        return mask.float()
    blocked = ~mask if true_means_attend else mask
    return torch.zeros(mask.shape, device=mask.device).masked_fill(blocked, -math.inf)


def _causal_bias(query_len: int, key_len: int, device: torch.device) -> torch.Tensor:
    """SDPA's causal mask (top-left aligned: query i attends keys j <= i) as an additive bias."""
    attend = torch.ones(query_len, key_len, dtype=torch.bool, device=device).tril()
    return _mask_bias(attend, true_means_attend=True)


def _logit_stats(q: torch.Tensor, k: torch.Tensor, scale: float, biases: list[torch.Tensor]) -> tuple[float, float]:
    """(max, mean |logit|) over the attended entries of ``q kᵀ scale + biases`` (q [..., L, E], k [..., S, E], biases
    broadcast to [..., L, S]; an entry a bias sets to -inf is not attended)."""
    logits = (q.float() @ k.float().transpose(-2, -1)) * scale
    for bias in biases:
        logits = logits + bias
    return _stats(logits)


def _stats(logits: torch.Tensor) -> tuple[float, float]:
    """(max, mean |logit|) of attention logits, masked entries (-inf) left out of the mean."""
    attended = logits[logits != -math.inf]
    return float(logits.max()), float(attended.abs().mean()) if attended.numel() else 0.0


def _sdpa_logits(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None,
                    dropout_p: float = 0.0, is_causal: bool = False, *, scale: float | None = None,
                    enable_gqa: bool = False) -> tuple[float, float] | None:
    """(max, mean |logit|) of the logits ``F.scaled_dot_product_attention`` computes with these arguments (same
    signature); None for nested (jagged) tensors, which have no dense logits to take them from."""
    if query.is_nested or key.is_nested:
        return None
    if enable_gqa and key.size(-3) != query.size(-3):
        key = key.repeat_interleave(query.size(-3) // key.size(-3), dim=-3)
    biases = [] if attn_mask is None else [_mask_bias(attn_mask, true_means_attend=True)]
    if is_causal:
        biases.append(_causal_bias(query.size(-2), key.size(-2), query.device))
    return _logit_stats(query, key, 1.0 / math.sqrt(query.size(-1)) if scale is None else scale, biases)


def _mha_logits(mha: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                   attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                   is_causal: bool = False) -> tuple[float, float]:
    """(max, mean |logit|) of the logits (q·kᵀ/√head_dim after the in-projection, masked) of ``mha`` called with these arguments
    (``nn.MultiheadAttention.forward``'s signature); computed from its weights, whichever kernel it then runs."""
    if query.dim() == 2:  # unbatched [L, E]: a batch of one
        query, key = query.unsqueeze(1), key.unsqueeze(1)
        key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
    elif mha.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    embed, heads = mha.embed_dim, mha.num_heads
    head_dim = embed // heads
    if mha._qkv_same_embed_dim:
        w_q, w_k = mha.in_proj_weight[:embed], mha.in_proj_weight[embed:2 * embed]
    else:
        w_q, w_k = mha.q_proj_weight, mha.k_proj_weight
    b_q, b_k = (None, None) if mha.in_proj_bias is None else mha.in_proj_bias.chunk(3)[:2]
    q, k = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k)  # [L, N, E], [S, N, E]
    batch = q.size(1)
    if mha.bias_k is not None:
        k = torch.cat([k, mha.bias_k.expand(1, batch, embed)])
    q = q.reshape(q.size(0), batch, heads, head_dim).permute(1, 2, 0, 3)  # [N, H, L, head_dim]
    k = k.reshape(k.size(0), batch, heads, head_dim).permute(1, 2, 0, 3)
    if mha.add_zero_attn:
        k = torch.cat([k, k.new_zeros(batch, heads, 1, head_dim)], dim=2)
    extra_keys = k.size(2) - key.size(0)  # bias_k and the zero key are attended whatever the masks say
    biases = []
    if attn_mask is not None:  # True = masked; [L, S] or [N * H, L, S]; is_causal only says it is causal
        bias = _mask_bias(attn_mask, true_means_attend=False)
        biases.append(F.pad(bias.reshape(-1, heads, *bias.shape[-2:]) if bias.dim() == 3 else bias, (0, extra_keys)))
    elif is_causal:
        biases.append(_causal_bias(q.size(2), k.size(2), q.device))
    if key_padding_mask is not None:  # [N, S], True = padding
        bias = _mask_bias(key_padding_mask, true_means_attend=False)
        biases.append(F.pad(bias, (0, extra_keys))[:, None, None, :])
    return _logit_stats(q, k, 1.0 / math.sqrt(head_dim), biases)


#: Below this an attention logit is a mask (a hand-written ``masked_fill(mask, -1e9)``), not a score.
MASKED_LOGIT = -1e4
_SOFTMAX = (torch.softmax, F.softmax, torch.Tensor.softmax)


def _heads(scores_or_query: torch.Tensor) -> int | None:
    """The head count of a [batch, heads, L, ...] tensor; None with fewer dimensions (heads not told apart)."""
    return int(scores_or_query.size(-3)) if scores_or_query.dim() >= 4 else None


def _softmax_attention_logits(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The input of a softmax call when it looks like hand-written attention: a [..., L, L] score matrix (at least 3
    dimensions, square in its last two) normalised over its last dimension; None otherwise."""
    scores = args[0] if args else kwargs.get("input")
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    if not isinstance(scores, torch.Tensor) or scores.dim() < 3 or dim is None:
        return None
    if dim % scores.dim() != scores.dim() - 1 or scores.size(-1) != scores.size(-2) or scores.is_nested:
        return None
    return scores


class _AttentionLogits(TorchFunctionMode):
    """Records the logits of every ``F.scaled_dot_product_attention`` call, and of every softmax over a square score
    matrix called inside a module (hand-written attention: ``(q @ k.T * scale).masked_fill(...).softmax(-1)``), under
    the innermost running module, then runs the call unchanged. A softmax outside every module (a loss) is not
    attention."""

    def __init__(self, recorder: ProbeRecorder, running: list[nn.Module]):
        super().__init__()
        self.recorder, self.running = recorder, running

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        logits, heads = None, None
        if func is F.scaled_dot_product_attention:
            with torch.no_grad():
                logits = _sdpa_logits(*args, **kwargs)
            query = args[0] if args else kwargs.get("query")
            heads = _heads(query) if isinstance(query, torch.Tensor) and not query.is_nested else None
        elif func in _SOFTMAX and len(self.running) > 1:
            scores = _softmax_attention_logits(args, kwargs)
            if scores is not None:
                with torch.no_grad():
                    scores = scores.detach().float()
                    logits, heads = _stats(scores.masked_fill(scores <= MASKED_LOGIT, -math.inf)), _heads(scores)
        if logits is not None:
            name = self.recorder.name_of(self.running[-1]) if self.running else "scaled_dot_product_attention"
            self.recorder.note_attention(name, logits, heads)
        return func(*args, **kwargs)


@contextlib.contextmanager
def probing(model: nn.Module) -> Iterator[ProbeRecorder]:
    """Record probes for the forward passes inside the block; every hook and the function mode go when it exits."""
    recorder = ProbeRecorder(module_names={id(m): n for n, m in model.named_modules()})
    leaves = {id(m) for m in model.modules() if m is not model and _leaf_with_params(m)}
    norms = {id(m) for m in model.modules() if is_norm(m)}
    running: list[nn.Module] = []  # the modules whose forward is running, innermost last
    last_leaf: list[tuple[str, torch.Tensor]] = []  # the latest leaf output: the readout's, once the forward ends

    def record_sizes(module: nn.Module, args: tuple, output: object) -> None:
        name = recorder.module_names[id(module)]
        if id(module) in leaves and isinstance(output, torch.Tensor) and output.numel():
            recorder.activation_size[name] = _mean_abs(output)
            last_leaf[:] = [(name, output)]
        if id(module) in norms and args and isinstance(args[0], torch.Tensor) and args[0].numel():
            recorder.norm_input_size[name] = _mean_abs(args[0])

    def record_logits(module: nn.Module, args: tuple, output: object) -> None:
        logits = getattr(output, "logits", output)
        if isinstance(logits, torch.Tensor) and logits.numel():
            recorder.note_logits(logits, *(last_leaf[0] if last_leaf else (None, None)))

    def enter(module: nn.Module, args: tuple) -> None:
        running.append(module)

    def leave(module: nn.Module, args: tuple, output: object) -> None:
        running.pop()  # a hook's return value would replace the output: return None

    def record_mha(module: nn.Module, args: tuple, kwargs: dict) -> None:
        with torch.no_grad():
            recorder.note_attention(recorder.name_of(module), _mha_logits(module, *args, **kwargs), module.num_heads)

    handles = [model.register_forward_hook(record_logits)]
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(enter))
        handles.append(m.register_forward_hook(leave, always_call=True))
        # Norm layers are hooked with or without a learned gain: the depth check reads the final one's input.
        if id(m) in leaves or id(m) in norms:
            handles.append(m.register_forward_hook(record_sizes))
        if isinstance(m, nn.MultiheadAttention):
            handles.append(m.register_forward_pre_hook(record_mha, with_kwargs=True))
    token = _ACTIVE.set(recorder)
    try:
        with _AttentionLogits(recorder, running):
            yield recorder
    finally:
        _ACTIVE.reset(token)
        for h in handles:
            h.remove()


def record_attention_logits(module: nn.Module, logits: torch.Tensor) -> None:
    """Record the largest attention logit (``q_i . k_j * scale``, masked entries at -inf) when probing; for hand-written
    attention (SDPA calls and ``nn.MultiheadAttention`` are seen without it). Several calls keep the largest. A compiled
    training step has no probe (probes run their own eager forward), so it is never traced."""
    if torch.compiler.is_compiling():
        return
    recorder = _ACTIVE.get()
    if recorder is not None:
        recorder.note_attention(recorder.name_of(module), _stats(logits.detach().float()), _heads(logits))
