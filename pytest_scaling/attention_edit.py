"""Edits to a model's attention without touching its code: the logits' scale and qk-normalisation, applied to every
``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention`` call its forward makes.

A torch function mode, entered by a forward pre-hook on the model's root and left by its forward hook, sees each
attention call and runs it edited: the same hooks run under ``functional_call`` and ``vmap``, so stacked runs are
edited too. ``attention_calls`` reads, from one forward pass, each call's head size and the scale it used: what an
edit needs to know whether it applies (does the head size grow with width; is the scale already 1/d).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)


@dataclass(frozen=True)
class AttentionCall:
    """One attention call: ``kind`` ("sdpa" or "mha"), the head size and the logits' scale it used."""

    kind: str
    head_dim: int
    scale: float


def _sdpa_call(args: tuple, kwargs: dict) -> AttentionCall:
    head_dim = int(args[0].shape[-1])
    scale = kwargs.get("scale")
    return AttentionCall("sdpa", head_dim, 1.0 / math.sqrt(head_dim) if scale is None else float(scale))


def _mha_call(bound: inspect.BoundArguments) -> AttentionCall:
    head_dim = int(bound.arguments["embed_dim_to_check"]) // int(bound.arguments["num_heads"])
    return AttentionCall("mha", head_dim, 1.0 / math.sqrt(head_dim))


@dataclass(frozen=True)
class AttentionEdit:
    """What to change in each attention call: multiply its logits by ``sqrt(base_head_dim / head_dim)`` (None: keep
    the scale), and/or RMS-normalise q and k over the head dimension (``qk_norm``, SDPA only)."""

    base_head_dim: int | None = None
    qk_norm: bool = False

    def factor(self, head_dim: int) -> float:
        return 1.0 if self.base_head_dim is None else math.sqrt(self.base_head_dim / head_dim)

    def sdpa(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        """Run one ``scaled_dot_product_attention`` call edited."""
        call = _sdpa_call(args, kwargs)
        query, key, *rest = args
        if self.qk_norm:
            query = F.rms_norm(query, (call.head_dim,), eps=1e-6)
            key = F.rms_norm(key, (int(key.shape[-1]),), eps=1e-6)
        return func(query, key, *rest, **{**kwargs, "scale": call.scale * self.factor(call.head_dim)})

    def mha(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        """Run one ``multi_head_attention_forward`` call with its logits scaled: q's projection (weight and bias)
        times the factor, which scales q·kᵀ and its gradient exactly as a smaller scale would."""
        bound = _MHA_SIGNATURE.bind(*args, **kwargs)
        factor = self.factor(_mha_call(bound).head_dim)
        values = bound.arguments
        embed = int(values["embed_dim_to_check"])
        scale_q = torch.ones(3 * embed, device=values["query"].device)
        scale_q[:embed] = factor
        if values.get("use_separate_proj_weight"):
            values["q_proj_weight"] = values["q_proj_weight"] * factor
        else:
            values["in_proj_weight"] = values["in_proj_weight"] * scale_q[:, None].to(values["in_proj_weight"].dtype)
        if values.get("in_proj_bias") is not None:
            values["in_proj_bias"] = values["in_proj_bias"] * scale_q.to(values["in_proj_bias"].dtype)
        return func(*bound.args, **bound.kwargs)


class _EditMode(TorchFunctionMode):
    """Runs each attention call through ``edit``; everything else unchanged."""

    def __init__(self, edit: AttentionEdit):
        super().__init__()
        self.edit = edit

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self.edit.sdpa(func, args, kwargs)
        if func is F.multi_head_attention_forward and self.edit.base_head_dim is not None:
            return self.edit.mha(func, args, kwargs)
        return func(*args, **kwargs)


class EditedAttention:
    """The pair of hooks on a model's root that run its forward under an ``_EditMode`` of ``edit``."""

    def __init__(self, edit: AttentionEdit):
        self.edit = edit
        self._active: list[_EditMode] = []

    def enter(self, module: nn.Module, args: tuple) -> None:
        mode = _EditMode(self.edit)
        mode.__enter__()
        self._active.append(mode)

    def leave(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._active.pop().__exit__(None, None, None)


def edit_attention(model: nn.Module, edit: AttentionEdit) -> nn.Module:
    """Make every forward of ``model`` run its attention calls edited by ``edit``; returns the model."""
    hooks = EditedAttention(edit)
    model.register_forward_pre_hook(hooks.enter)
    model.register_forward_hook(hooks.leave, always_call=True)
    return model


class _RecordMode(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[AttentionCall] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.calls.append(_sdpa_call(args, kwargs))
        elif func is F.multi_head_attention_forward:
            self.calls.append(_mha_call(_MHA_SIGNATURE.bind(*args, **kwargs)))
        # While a mode handles a call it is off, so the attention an nn.MultiheadAttention runs inside is not seen twice.
        return func(*args, **kwargs)


@torch.no_grad()
def attention_calls(model: nn.Module, inputs: torch.Tensor) -> list[AttentionCall]:
    """The attention calls one forward pass of ``model`` on ``inputs`` makes, in order."""
    with _RecordMode() as recorder:
        model(inputs)
    return recorder.calls
