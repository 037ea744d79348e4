"""The built-in GPT family: decoder-only, pre-LN, causal attention, d_model = width.

Switches cover what the suite probes: the attention scale (1/d_head under muP, 1/sqrt(d_head)
under SP), qk-layernorm, z-loss, weight tying and residual-branch scaling (1/sqrt(L) branches, or
Depth-muP: those plus the blocks' LR scaled by (L / base_depth)^-1/2). Heads are either a
fixed number (``n_heads``; d_head grows with width, so the 1/d vs 1/sqrt(d) choice matters) or
of fixed size (``head_dim``).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..family import ModelFamily
from ..parametrization import Parametrization, with_depth_lr, with_zero_readout
from ._common import parametrization_label, require_input_kind
from ..probes import record_attention_logits
from ..tasks import Task, markov_language

AttnScale = Literal["1/d", "1/sqrt(d)"]
ResidualScale = Literal["1/sqrt(L)", "depth-mup"]


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, seq_len: int, n_heads: int, attn_scale: AttnScale, attn_mult: float, qk_layernorm: bool):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = width // n_heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        # 1/d keeps logits Theta(1) when q and k align (muP); attn_mult / d equals 1/sqrt(d) at d = attn_mult^2.
        self.scale = attn_mult / self.head_dim if attn_scale == "1/d" else 1.0 / math.sqrt(self.head_dim)
        self.q_norm = nn.LayerNorm(self.head_dim, bias=False) if qk_layernorm else None
        self.k_norm = nn.LayerNorm(self.head_dim, bias=False) if qk_layernorm else None
        self.register_buffer("causal_mask", torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        # Written out rather than fused so that stacked runs (vmap) batch it and probes see the logits.
        logits = (q @ k.transpose(-2, -1)) * self.scale
        logits = logits.masked_fill(self.causal_mask[:t, :t], float("-inf"))
        record_attention_logits(self, logits)
        y = torch.softmax(logits.float(), dim=-1).to(v.dtype) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(
        self, width: int, seq_len: int, n_heads: int, attn_scale: AttnScale, attn_mult: float, qk_layernorm: bool, branch_mult: float
    ):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, seq_len, n_heads, attn_scale, attn_mult, qk_layernorm)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.fc_out = nn.Linear(4 * width, width)
        self.branch_mult = branch_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.branch_mult * self.attn(self.ln1(x))
        return x + self.branch_mult * self.fc_out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """Token + learned position embeddings, ``n_layers`` pre-LN blocks, final LN, readout to logits."""

    def __init__(
        self,
        width: int,
        vocab: int,
        seq_len: int,
        n_layers: int = 2,
        n_heads: int | None = 4,
        head_dim: int | None = None,
        attn_scale: AttnScale = "1/d",
        attn_mult: float = 8.0,
        qk_layernorm: bool = False,
        tie_embeddings: bool = False,
        residual_scale: ResidualScale | None = None,
    ):
        super().__init__()
        n_heads = _heads(width, n_heads, head_dim)
        if attn_scale not in ("1/d", "1/sqrt(d)"):
            raise ValueError(f"attn_scale must be '1/d' or '1/sqrt(d)', got {attn_scale!r}")
        if residual_scale not in (None, "1/sqrt(L)", "depth-mup"):
            raise ValueError(f"residual_scale must be None, '1/sqrt(L)' or 'depth-mup', got {residual_scale!r}")
        branch_mult = 1.0 / math.sqrt(n_layers) if residual_scale else 1.0
        self.tok_emb = nn.Embedding(vocab, width)
        self.pos_emb = nn.Embedding(seq_len, width)
        self.blocks = nn.ModuleList(
            Block(width, seq_len, n_heads, attn_scale, attn_mult, qk_layernorm, branch_mult) for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tok_emb(tokens) + self.pos_emb(pos)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def _heads(width: int, n_heads: int | None, head_dim: int | None) -> int:
    if (n_heads is None) == (head_dim is None):
        raise ValueError("give exactly one of n_heads (fixed count) or head_dim (fixed size)")
    if head_dim is not None:
        if width % head_dim:
            raise ValueError(f"width {width} is not a multiple of head_dim {head_dim}")
        return width // head_dim
    if width % n_heads:
        raise ValueError(f"width {width} is not a multiple of n_heads {n_heads}")
    return n_heads


def z_loss_term(logits: torch.Tensor) -> torch.Tensor:
    """mean(log Z²) over the predictions of ``logits`` (last dimension: the classes), in float32."""
    return torch.logsumexp(logits.reshape(-1, logits.shape[-1]).float(), dim=-1).pow(2).mean()


class CrossEntropyWithZLoss:
    """Cross-entropy plus ``coef * mean(log Z ** 2)`` (Wortsman et al.'s z-loss): keeps log Z near 0."""

    def __init__(self, coef: float):
        if coef < 0:
            raise ValueError(f"z_loss must be >= 0, got {coef}")
        self.coef = coef

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        return ce + self.coef * z_loss_term(logits)

    def __repr__(self) -> str:
        return f"CrossEntropyWithZLoss({self.coef!r})"


def gpt(
    *,
    parametrization: "str | Parametrization | None" = "mup",
    task: Task | None = None,
    base_width: int = 64,
    widths: tuple[int, ...] = (64, 128, 256),
    n_layers: int = 2,
    n_heads: int | None = 4,
    head_dim: int | None = None,
    attn_scale: AttnScale | None = None,
    qk_layernorm: bool = False,
    z_loss: float = 0.0,
    tie_embeddings: bool = False,
    residual_scale: ResidualScale | None = None,
    base_depth: int = 2,
    zero_readout: bool = False,
    name: str | None = None,
) -> ModelFamily:
    """A GPT family on ``task`` (default: a sparse Markov language). ``attn_scale`` defaults to
    1/d under muP-type parametrizations and 1/sqrt(d) otherwise. ``residual_scale="depth-mup"``
    scales the branches by 1/sqrt(L) and the hidden matrices' LR by (n_layers / base_depth)^-1/2.
    ``zero_readout`` initialises the readout at zero (``parametrization.with_zero_readout``)."""
    task = task if task is not None else markov_language()
    require_input_kind(task, "tokens", "GPT")
    if base_depth < 1:
        raise ValueError(f"base_depth must be >= 1, got {base_depth}")
    if zero_readout:
        if parametrization is None or tie_embeddings:
            raise ValueError("zero_readout needs a parametrization (e.g. 'mup') and an untied readout: a tied one is "
                             "the token embedding, which cannot start at zero")
        parametrization = with_zero_readout(parametrization)
    if residual_scale == "depth-mup":
        if parametrization is None:
            raise ValueError("residual_scale='depth-mup' scales the LR of a parametrization; give one (e.g. 'mup')")
        parametrization = with_depth_lr(parametrization, n_layers / base_depth)
    if attn_scale is None:
        attn_scale = "1/d" if parametrization_label(parametrization).startswith("mup") else "1/sqrt(d)"
    build = functools.partial(
        GPT,
        vocab=task.n_outputs,
        seq_len=task.seq_len,
        n_layers=n_layers,
        n_heads=n_heads,
        head_dim=head_dim,
        attn_scale=attn_scale,
        qk_layernorm=qk_layernorm,
        tie_embeddings=tie_embeddings,
        residual_scale=residual_scale,
    )
    variant = "".join(
        f"-{tag}" for tag, on in (("qkln", qk_layernorm), (f"z{z_loss:g}", z_loss > 0), ("tied", tie_embeddings),
                                  ("sqrtL", residual_scale is not None)) if on
    )
    return ModelFamily(
        name=name or f"gpt-L{n_layers}-{parametrization_label(parametrization)}{variant}",
        build=build,
        task=task,
        base_width=base_width,
        widths=widths,
        parametrization=parametrization,
        loss=CrossEntropyWithZLoss(z_loss) if z_loss > 0 else None,
    )
