"""A population of muP GPT families written "in many hands": clean ones, and ones with one planted mistake.

Every family is a decoder-only pre-norm GPT whose muP is correct by construction (Tensor Programs V, Adam;
``m = width / base_width``):

* input weights (token and learned position embeddings): init N(0, 1), Adam LR eta;
* hidden matrices (attention projections, ``nn.MultiheadAttention``'s packed in-projection, MLP matrices): init
  N(0, 1/fan_in), Adam LR eta / m, times the Depth-muP factor;
* the untied readout: zero init or an *effective* init std of 1/fan_in (variance 1/fan_in^2), and either a forward
  multiplier 1/m with LR eta (``readout_mult="forward"``, microsoft/mup's MuReadout) or no multiplier with LR
  eta / m (``readout_mult="lr"``, TP5 Table 3). With the forward multiplier the stored weight has std
  m / fan_in = 1 / base_width, so that multiplier x weight has std 1/fan_in as in the "lr" form;
* the tied readout (the token embedding, N(0, 1), LR eta):
  ``logits = F.linear(h, embed.weight) * 1 / (base_width * m)``,
  TP5 Table 8's output multiplier 1/fan_in. Its 1/m part is the muP rule; the width-independent 1/base_width
  keeps the token's own logit (h holds the token's embedding, so <h, e_token> ~ width) at about 1 at init;
* attention logits ``q.k * c / d_head`` with ``c = sqrt(d_head at the base width)``: 1/sqrt(d_head) at the base and
  at every width when the head size is fixed;
* gains and biases (vectors): LR eta, never decayed;
* Depth-muP: residual branches times (n_layers / BASE_DEPTH)^-1/2 and the blocks' hidden LR by the same factor
  (a no-op at the base depth);
* weight decay that keeps each matrix's per-step shrink lr x weight_decay independent of width: either a fixed
  per-step shrink (``decay="independent"``: weight_decay = DECAY_PER_STEP / group LR), or AdamW's coupled decay
  with weight_decay = DECAY_COUPLED x eta / group LR (``decay="coupled_scaled"``: lambda on the outer groups,
  lambda x m on the hidden ones).

``nn.MultiheadAttention`` always divides q.k by sqrt(d_head); to get c / d_head the query argument is multiplied by
``c / sqrt(d_head)`` (``mha(x * query_mult, x, x)``): with a bias-free in-projection q = (a x) W_q = a (x W_q), so
the logits become a q.k / sqrt(d_head) = c q.k / d_head. Adam's update of W_q is unchanged (Adam is invariant to
the gradient's scale up to eps), so this is the same model as an explicit c / d_head scale.

Each choice is one field of ``Spec``; ``family(spec)`` builds the ``ModelFamily``. A planted spec is a clean spec
with ``mistake`` set to one of ``MISTAKES``; the model and optimizer read ``spec.mistake`` at the line where it acts,
so a planted spec equals its clean spec in every other field. Specs are drawn with hypothesis strategies
(``clean_specs``, ``planted_specs``) and reproducibly in bulk with ``draw_population(n, seed, strategy)``:

    specs = draw_population(30, seed=0, strategy=planted_specs())
    families = [family(s) for s in specs]

Hand-written attention (``attention="manual"``) does not call ``record_attention_logits``, as users' code does not.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from dataclasses import dataclass

import hypothesis
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from torch import nn

from pytest_scaling import ModelFamily, tasks

BASE_DEPTH = 2
WIDTH_MULTIPLES = (0.5, 0.75, 1, 1.5, 2, 3, 4, 8, 16)
"""Every spec builds at base_width times each of these (``Spec.check`` makes sure)."""
N_HEADS = 4  # heads="count_fixed": four heads whose size grows with width
ROPE_THETA = 10000.0
NORM_EPS = 1e-6
ADAM_BETA1 = 0.9
DECAY_PER_STEP = 1e-4
"""decay="independent": the fraction of each matrix removed per step, whatever the LR."""
DECAY_COUPLED = 0.1
"""decay="coupled_scaled": AdamW's weight_decay lambda on the outer groups (lambda x eta / group LR on the others)."""
LARGE_EPS = 1e-3

CHOICES: dict[str, tuple] = {
    "base_width": (32, 64),
    "vocab": (256, 64),
    "seq_len": (32,),
    "norm": ("rmsnorm", "layernorm"),
    "norm_gain": (True, False),
    "mlp": ("gelu", "swiglu"),
    "multiple_of": (None, 8, 16),
    "attention": ("sdpa", "manual", "mha"),
    "positions": ("learned", "rotary", "none"),
    "heads": ("count_fixed", "size_fixed"),
    "d_head": (None, 8, 16),
    "readout": ("untied_zero", "untied_small", "tied"),
    "readout_mult": ("forward", "lr"),
    "readout_name": ("readout", "lm_head", "unembed"),
    "query_zero": (False, True),
    "qk_norm": (False, True),
    "z_loss": (0.0, 1e-4, 1e-3, 1e-2),
    "fused_qkv": (False, True),
    "optimizer": ("adamw", "adam"),
    "decay": ("independent", "coupled_scaled", "none"),
    "eps": (1e-8, 1e-12),
    "beta2": (0.95, 0.999),
    "depth_mup": (True, False),
}
"""The values a clean draw takes for each categorical field (the first is the one shrinking goes to)."""

MISTAKES: dict[str, str] = {
    "no_readout_multiplier": "the readout's 1/m removed (no forward multiplier, or the readout's Adam LR left at eta)",
    "attention_1_over_sqrt_d": "attention scale 1/sqrt(d_head) instead of c/d_head (heads grow with width)",
    "hidden_lr_unscaled": "hidden matrices' Adam LR eta instead of eta/m",
    "input_init_shrinking": "embedding init std width^-1/2 instead of 1",
    "coupled_decay": "AdamW weight_decay lambda on every group, so hidden matrices shrink by eta/m x lambda a step",
    "large_eps": f"Adam eps {LARGE_EPS:g}",
    "unscaled_residuals": "no Depth-muP: residual branches and the blocks' LR not scaled with depth",
}
"""Mistake name -> the one thing it changes."""

LITERATURE_PROPERTY: dict[str, tuple[str, ...]] = {
    "no_readout_multiplier": ("coord_check", "lr_curve_transfer"),
    "attention_1_over_sqrt_d": ("coord_check",),
    "hidden_lr_unscaled": ("coord_check", "lr_curve_transfer"),
    "input_init_shrinking": ("coord_check",),
    "coupled_decay": ("weight_decay",),
    "large_eps": ("adam_epsilon",),
    "unscaled_residuals": ("depth_coord_check",),
}
"""Mistake name -> the properties that should catch it."""


@dataclass(frozen=True)
class Spec:
    """One GPT family: every architectural, muP and optimizer choice as a plain value (printable, hashable)."""

    base_width: int = 32
    n_layers: int = BASE_DEPTH
    vocab: int = 256
    seq_len: int = 32
    norm: str = "rmsnorm"  # "rmsnorm" (hand-written RMSNorm) | "layernorm" (nn.LayerNorm)
    norm_gain: bool = True  # learned gain (and, for nn.LayerNorm, bias)
    mlp: str = "gelu"  # "gelu": 4w hidden | "swiglu": multiple_of * ceil(8w / 3 / multiple_of) hidden
    multiple_of: int | None = None  # swiglu only: 8 or 16
    attention: str = "sdpa"  # "sdpa" | "manual" | "mha" (nn.MultiheadAttention)
    positions: str = "learned"  # "learned" | "rotary" | "none"
    heads: str = "count_fixed"  # "count_fixed": N_HEADS heads, d_head = w / N_HEADS | "size_fixed": d_head fixed
    d_head: int | None = None  # size_fixed only: 8 or 16
    readout: str = "untied_zero"  # "untied_zero" | "untied_small" | "tied"
    readout_mult: str = "forward"  # "forward": logits x 1/m, LR eta | "lr": no multiplier, LR eta/m (untied only)
    readout_name: str = "readout"  # the untied readout's attribute name (cosmetic)
    query_zero: bool = False  # query projection zero-initialised
    qk_norm: bool = False  # a norm over each head of q and k, after the projection and before rotary
    z_loss: float = 0.0  # loss = CE + z_loss * mean(logsumexp(logits)^2)
    fused_qkv: bool = False  # one Linear(w, 3w) split into q, k, v
    optimizer: str = "adamw"  # "adamw" | "adam"
    decay: str = "independent"  # "none" | "independent" | "coupled_scaled"
    eps: float = 1e-8
    beta2: float = 0.95
    depth_mup: bool = True  # Depth-muP residual branches and hidden LR
    mistake: str | None = None  # None (clean) or one of MISTAKES

    def check(self) -> "Spec":
        """Raise ValueError if a field is out of range, fields contradict each other, or some width of
        ``widths()`` cannot be built; return the spec."""
        for name, allowed in CHOICES.items():
            if name in ("base_width", "vocab", "seq_len"):
                continue
            if getattr(self, name) not in allowed:
                raise ValueError(f"Spec.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("base_width", "n_layers", "vocab", "seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Spec.{name} must be a positive int, got {value!r}")
        if self.mistake is not None and self.mistake not in MISTAKES:
            raise ValueError(f"Spec.mistake must be None or one of {sorted(MISTAKES)}, got {self.mistake!r}")
        if (self.mlp == "swiglu") != (self.multiple_of is not None):
            raise ValueError("Spec.multiple_of is set exactly when mlp='swiglu'")
        if (self.heads == "size_fixed") != (self.d_head is not None):
            raise ValueError("Spec.d_head is set exactly when heads='size_fixed'")
        if self.readout == "tied" and self.readout_mult != "forward":
            raise ValueError("a tied readout takes its 1/m as a forward multiplier: readout_mult must be 'forward'")
        if self.readout == "tied" and self.readout_name != CHOICES["readout_name"][0]:
            raise ValueError("a tied readout has no readout module to name: leave readout_name at its default")
        if self.attention == "mha":
            if self.positions == "rotary" or self.qk_norm:
                raise ValueError("nn.MultiheadAttention projects q and k inside: no rotary, no qk_norm")
            if not self.fused_qkv:
                raise ValueError("nn.MultiheadAttention packs q, k, v in one in-projection: fused_qkv must be True")
        if self.optimizer == "adam" and self.decay != "none":
            raise ValueError("optimizer 'adam' has no decoupled weight decay: decay must be 'none'")
        if self.mistake is not None and not applicable(dataclasses.replace(self, mistake=None), self.mistake):
            raise ValueError(f"mistake {self.mistake!r} changes nothing in this spec")
        for width in self.widths():
            head_layout(self, width)
        return self

    def widths(self) -> tuple[int, ...]:
        """base_width times each of WIDTH_MULTIPLES (ValueError where that is not an integer)."""
        out = []
        for mult in WIDTH_MULTIPLES:
            width = self.base_width * mult
            if width != int(width):
                raise ValueError(f"base_width {self.base_width} x {mult} is not an integer width")
            out.append(int(width))
        return tuple(out)


def applicable(spec: Spec, mistake: str) -> bool:
    """Whether planting ``mistake`` in the clean ``spec`` changes the model or its optimizer."""
    if mistake not in MISTAKES:
        raise ValueError(f"unknown mistake {mistake!r}; choose one of {sorted(MISTAKES)}")
    if mistake == "attention_1_over_sqrt_d":
        return spec.heads == "count_fixed"  # with a fixed head size 1/sqrt(d_head) is c/d_head
    if mistake == "coupled_decay":
        return spec.decay != "none"
    if mistake == "unscaled_residuals":
        return spec.depth_mup
    if mistake == "large_eps":
        return spec.eps < LARGE_EPS
    return True


# ---------------------------------------------------------------------------------------------------------------------
# The model's parts


def head_layout(spec: Spec, width: int) -> tuple[int, int]:
    """(number of heads, d_head) at ``width``; ValueError where the width does not split into heads."""
    if spec.heads == "size_fixed":
        d_head = spec.d_head
        if width % d_head:
            raise ValueError(f"width {width} is not a multiple of the head size {d_head}")
        n_heads = width // d_head
    else:
        if width % N_HEADS:
            raise ValueError(f"width {width} is not a multiple of the head count {N_HEADS}")
        n_heads, d_head = N_HEADS, width // N_HEADS
    if spec.positions == "rotary" and d_head % 2:
        raise ValueError(f"rotary positions need an even head size, got {d_head} at width {width}")
    return n_heads, d_head


def attention_scale(spec: Spec, d_head: int) -> float:
    """muP's c / d_head with c = sqrt(base d_head); the mistake's 1/sqrt(d_head)."""
    if spec.mistake == "attention_1_over_sqrt_d":
        return d_head**-0.5
    base_d_head = head_layout(spec, spec.base_width)[1]
    return math.sqrt(base_d_head) / d_head


def swiglu_hidden(width: int, multiple_of: int) -> int:
    """LLaMA's SwiGLU hidden size: 8w/3 rounded up to a multiple of ``multiple_of`` (grows with width)."""
    return multiple_of * -(-8 * width // (3 * multiple_of))


class RMSNorm(nn.Module):
    """x / rms(x) over the last dimension, optionally times a learned gain."""

    def __init__(self, dim: int, gain: bool = True, eps: float = NORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if gain else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        y = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)
        return y if self.weight is None else y * self.weight


def make_norm(spec: Spec, dim: int) -> nn.Module:
    if spec.norm == "layernorm":
        return nn.LayerNorm(dim, elementwise_affine=spec.norm_gain)
    return RMSNorm(dim, gain=spec.norm_gain)


def rotate(x: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of x [batch, heads, seq, d_head] (half-split pairs, theta ROPE_THETA)."""
    seq, d_head = x.shape[-2], x.shape[-1]
    half = d_head // 2
    inv_freq = ROPE_THETA ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
    angles = torch.arange(seq, dtype=torch.float32, device=x.device)[:, None] * inv_freq[None, :]
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention written out: SDPA with an explicit scale, or q k^T x scale, mask, softmax, @ v."""

    def __init__(self, width: int, spec: Spec):
        super().__init__()
        self.n_heads, self.d_head = head_layout(spec, width)
        self.width, self.manual, self.rotary = width, spec.attention == "manual", spec.positions == "rotary"
        if spec.fused_qkv:
            self.qkv = nn.Linear(width, 3 * width, bias=False)
        else:
            self.query = nn.Linear(width, width, bias=False)
            self.key = nn.Linear(width, width, bias=False)
            self.value = nn.Linear(width, width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        if spec.qk_norm:
            self.q_norm, self.k_norm = make_norm(spec, self.d_head), make_norm(spec, self.d_head)
        self.qk_norm = spec.qk_norm
        self.scale = attention_scale(spec, self.d_head)
        # SDPA with the scale left out is how the 1/sqrt(d_head) mistake is usually written.
        self.sdpa_scale = None if spec.mistake == "attention_1_over_sqrt_d" else self.scale

    def query_weight(self) -> torch.Tensor:
        """The rows of the weight that make the queries."""
        return self.qkv.weight[: self.width] if hasattr(self, "qkv") else self.query.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        if hasattr(self, "qkv"):
            q, k, v = self.qkv(x).split(c, dim=-1)
        else:
            q, k, v = self.query(x), self.key(x), self.value(x)
        q, k, v = (y.view(b, t, self.n_heads, self.d_head).transpose(1, 2) for y in (q, k, v))
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary:
            q, k = rotate(q), rotate(k)
        if self.manual:
            scores = (q @ k.transpose(-2, -1)) * self.scale
            future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
            y = weights @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.sdpa_scale)
        return self.out(y.transpose(1, 2).reshape(b, t, c))


class TorchMHA(nn.Module):
    """``nn.MultiheadAttention`` with a causal mask; the query argument is scaled so the logits are c q.k / d_head."""

    def __init__(self, width: int, spec: Spec):
        super().__init__()
        self.n_heads, self.d_head = head_layout(spec, width)
        self.width = width
        self.mha = nn.MultiheadAttention(width, self.n_heads, bias=False, batch_first=True)
        self.scale = attention_scale(spec, self.d_head)
        # MHA multiplies q.k by 1/sqrt(d_head); scaling the query input by scale * sqrt(d_head) makes it `scale`.
        self.query_mult = self.scale * math.sqrt(self.d_head)

    def query_weight(self) -> torch.Tensor:
        return self.mha.in_proj_weight[: self.width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        y, _ = self.mha(x * self.query_mult, x, x, attn_mask=future, need_weights=False)
        return y


class GeluMLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc = nn.Linear(width, 4 * width, bias=False)
        self.proj = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class SwiGLU(nn.Module):
    def __init__(self, width: int, multiple_of: int):
        super().__init__()
        hidden = swiglu_hidden(width, multiple_of)
        self.gate = nn.Linear(width, hidden, bias=False)
        self.up = nn.Linear(width, hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """Pre-norm transformer block; both residual branches are multiplied by ``branch_mult``."""

    def __init__(self, width: int, spec: Spec, branch_mult: float):
        super().__init__()
        self.ln_1 = make_norm(spec, width)
        self.attn = TorchMHA(width, spec) if spec.attention == "mha" else CausalSelfAttention(width, spec)
        self.ln_2 = make_norm(spec, width)
        self.mlp = SwiGLU(width, spec.multiple_of) if spec.mlp == "swiglu" else GeluMLP(width)
        self.branch_mult = branch_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.branch_mult * self.attn(self.ln_1(x))
        return x + self.branch_mult * self.mlp(self.ln_2(x))


class PopulationGPT(nn.Module):
    """Token (+ position) embeddings, ``spec.n_layers`` blocks, a final norm and a muP readout."""

    def __init__(self, width: int, spec: Spec):
        super().__init__()
        if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
            raise ValueError(f"width must be a positive int, got {width!r}")
        spec.check()
        head_layout(spec, width)
        self.spec, self.width = spec, width
        self.width_mult = width / spec.base_width
        depth_scaled = spec.depth_mup and spec.mistake != "unscaled_residuals"
        self.depth_mult = (spec.n_layers / BASE_DEPTH) ** -0.5 if depth_scaled else 1.0

        self.tok_embed = nn.Embedding(spec.vocab, width)
        self.pos_embed = nn.Embedding(spec.seq_len, width) if spec.positions == "learned" else None
        self.blocks = nn.ModuleList(Block(width, spec, self.depth_mult) for _ in range(spec.n_layers))
        self.final_norm = make_norm(spec, width)
        self.tied = spec.readout == "tied"
        if not self.tied:
            setattr(self, spec.readout_name, nn.Linear(width, spec.vocab, bias=False))
        m = 1.0 if spec.mistake == "no_readout_multiplier" else self.width_mult
        if self.tied:
            self.readout_multiplier = 1.0 / (spec.base_width * m)
        elif spec.readout_mult == "forward":
            self.readout_multiplier = 1.0 / m
        else:
            self.readout_multiplier = 1.0
        self.reset_parameters()

    @property
    def readout_layer(self) -> nn.Linear | None:
        """The untied readout module (None when the readout is the token embedding)."""
        return None if self.tied else getattr(self, self.spec.readout_name)

    def readout_weight(self) -> torch.Tensor:
        return self.tok_embed.weight if self.tied else self.readout_layer.weight

    @torch.no_grad()
    def reset_parameters(self) -> None:
        spec = self.spec
        embed_std = self.width**-0.5 if spec.mistake == "input_init_shrinking" else 1.0
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=embed_std)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=module.in_features**-0.5)
            elif isinstance(module, nn.MultiheadAttention):
                nn.init.normal_(module.in_proj_weight, std=module.embed_dim**-0.5)
        if spec.query_zero:
            for block in self.blocks:
                block.attn.query_weight().zero_()
        if not self.tied:
            weight = self.readout_layer.weight
            if spec.readout == "untied_zero":
                nn.init.zeros_(weight)
            else:
                # Effective readout (multiplier x weight) std 1/fan_in: the multiplier's share is taken out here.
                clean_multiplier = 1.0 / self.width_mult if spec.readout_mult == "forward" else 1.0
                nn.init.normal_(weight, std=1.0 / (self.width * clean_multiplier))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok_embed(tokens)
        if self.pos_embed is not None:
            x = x + self.pos_embed(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        h = self.final_norm(x)
        if self.tied:
            return F.linear(h, self.tok_embed.weight) * self.readout_multiplier
        logits = self.readout_layer(h)
        return logits if self.readout_multiplier == 1.0 else logits * self.readout_multiplier


# ---------------------------------------------------------------------------------------------------------------------
# Optimizer and loss


def _weight_decay(spec: Spec, lr: float, group_lr: float) -> float:
    if spec.decay == "none":
        return 0.0
    if spec.mistake == "coupled_decay":
        return DECAY_COUPLED
    if spec.decay == "independent":
        return DECAY_PER_STEP / group_lr
    return DECAY_COUPLED * lr / group_lr  # coupled_scaled: group_lr x weight_decay = lr x lambda in every group


def make_optimizer(model: PopulationGPT, lr: float, spec: Spec) -> torch.optim.Optimizer:
    """Adam(W) with muP param groups: input weights, hidden matrices, the untied readout, then vectors (no decay)."""
    m = model.width_mult
    hidden_lr = (lr if spec.mistake == "hidden_lr_unscaled" else lr / m) * model.depth_mult
    inputs = [model.tok_embed.weight] + ([model.pos_embed.weight] if model.pos_embed is not None else [])
    hidden = [p for p in model.blocks.parameters() if p.dim() >= 2]
    matrices = [(inputs, lr), (hidden, hidden_lr)]
    if not model.tied:
        lr_form = spec.readout_mult == "lr" and spec.mistake != "no_readout_multiplier"
        matrices.append(([model.readout_layer.weight], lr / m if lr_form else lr))
    groups = [{"params": params, "lr": group_lr, "weight_decay": _weight_decay(spec, lr, group_lr)}
              for params, group_lr in matrices]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    if vectors:
        groups.append({"params": vectors, "lr": lr, "weight_decay": 0.0})
    eps = LARGE_EPS if spec.mistake == "large_eps" else spec.eps
    optimizer = torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam
    return optimizer(groups, lr=lr, betas=(ADAM_BETA1, spec.beta2), eps=eps)


@dataclass(frozen=True)
class PopulationLoss:
    """Cross-entropy plus z_loss x mean(logsumexp(logits)^2)."""

    z_loss: float = 0.0

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        if self.z_loss:
            loss = loss + self.z_loss * torch.logsumexp(logits, dim=-1).pow(2).mean()
        return loss


# ---------------------------------------------------------------------------------------------------------------------
# Families


@functools.cache
def _task(vocab: int, seq_len: int) -> tasks.Task:
    return tasks.markov_language(vocab=vocab, seq_len=seq_len)


def spec_id(spec: Spec) -> str:
    """A short stable hash of the spec."""
    return hashlib.sha1(repr(spec).encode()).hexdigest()[:8]


def family(spec: Spec) -> ModelFamily:
    """The spec's ModelFamily (widths left to the tier); ``at_depth`` gives the same spec at another depth."""
    spec.check()
    return ModelFamily(
        name=f"pop-{spec_id(spec)}",
        build=functools.partial(PopulationGPT, spec=spec),
        task=_task(spec.vocab, spec.seq_len),
        base_width=spec.base_width,
        widths=(),
        optimizer=functools.partial(make_optimizer, spec=spec),
        loss=PopulationLoss(spec.z_loss),
        at_depth=functools.partial(at_depth, spec),
    )


def at_depth(spec: Spec, n_layers: int) -> ModelFamily:
    if not isinstance(n_layers, int) or isinstance(n_layers, bool) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
    return family(dataclasses.replace(spec, n_layers=n_layers))


def describe(spec: Spec) -> str:
    """The spec's non-default choices in one short line (``clean`` / ``mistake=...`` first)."""
    default = Spec()
    parts = [f"mistake={spec.mistake}" if spec.mistake else "clean"]
    for f in dataclasses.fields(Spec):
        value = getattr(spec, f.name)
        if f.name != "mistake" and value != getattr(default, f.name):
            parts.append(f"{f.name}={value:g}" if isinstance(value, float) else f"{f.name}={value}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------------------
# Strategies


def _allowed_head_sizes(base_width: int, positions: str) -> tuple[int, ...]:
    probe = Spec(base_width=base_width, heads="size_fixed", positions=positions)
    allowed = []
    for d_head in (8, 16):
        try:
            dataclasses.replace(probe, d_head=d_head).check()
        except ValueError:
            continue
        allowed.append(d_head)
    return tuple(allowed)


@st.composite
def _specs(draw: st.DrawFn, base_widths: tuple[int, ...], mistake: str | None = None) -> Spec:
    """A clean spec (fields drawn consistently), then ``mistake``; fields the mistake needs are fixed first."""
    def pick(name: str, values: tuple | None = None) -> object:
        return draw(st.sampled_from(CHOICES[name] if values is None else values))

    base_width = pick("base_width", base_widths)
    vocab = pick("vocab")
    norm, norm_gain = pick("norm"), pick("norm_gain")
    mlp = pick("mlp")
    multiple_of = pick("multiple_of", (8, 16)) if mlp == "swiglu" else None
    attention = pick("attention")
    positions = pick("positions", ("learned", "none") if attention == "mha" else None)
    head_sizes = _allowed_head_sizes(base_width, positions)
    heads = "count_fixed" if mistake == "attention_1_over_sqrt_d" or not head_sizes else pick("heads")
    d_head = pick("d_head", head_sizes) if heads == "size_fixed" else None
    readout = pick("readout")
    readout_mult = "forward" if readout == "tied" else pick("readout_mult")
    readout_name = CHOICES["readout_name"][0] if readout == "tied" else pick("readout_name")
    query_zero = pick("query_zero")
    qk_norm = False if attention == "mha" else pick("qk_norm")
    z_loss = pick("z_loss")
    fused_qkv = True if attention == "mha" else pick("fused_qkv")
    optimizer = "adamw" if mistake == "coupled_decay" else pick("optimizer")
    if optimizer == "adam":
        decay = "none"
    else:
        decay = pick("decay", ("independent", "coupled_scaled") if mistake == "coupled_decay" else None)
    spec = Spec(
        base_width=base_width, vocab=vocab, norm=norm, norm_gain=norm_gain, mlp=mlp, multiple_of=multiple_of,
        attention=attention, positions=positions, heads=heads, d_head=d_head, readout=readout,
        readout_mult=readout_mult, readout_name=readout_name, query_zero=query_zero, qk_norm=qk_norm, z_loss=z_loss,
        fused_qkv=fused_qkv, optimizer=optimizer, decay=decay, eps=pick("eps"), beta2=pick("beta2"), depth_mup=True,
    )
    if mistake is not None:
        assert applicable(spec, mistake), (spec, mistake)
        spec = dataclasses.replace(spec, mistake=mistake)
    return spec.check()


def _check_base_widths(base_widths: tuple[int, ...]) -> tuple[int, ...]:
    base_widths = tuple(base_widths)
    if not base_widths:
        raise ValueError("base_widths is empty")
    for base in base_widths:
        Spec(base_width=base).check()
    return base_widths


def clean_specs(base_widths: tuple[int, ...] = (32, 64)) -> st.SearchStrategy[Spec]:
    """Clean specs: every field drawn, consistently, with ``mistake=None``."""
    return _specs(_check_base_widths(base_widths))


def planted_specs(base_widths: tuple[int, ...] = (32, 64),
                  mistakes: tuple[str, ...] = tuple(MISTAKES)) -> st.SearchStrategy[Spec]:
    """Specs with one planted mistake: the mistake first, then a clean spec it applies to."""
    base_widths, mistakes = _check_base_widths(base_widths), tuple(mistakes)
    if not mistakes:
        raise ValueError("mistakes is empty")
    unknown = [m for m in mistakes if m not in MISTAKES]
    if unknown:
        raise ValueError(f"unknown mistake {unknown[0]!r}; choose from {sorted(MISTAKES)}")
    return st.sampled_from(mistakes).flatmap(functools.partial(_specs, base_widths))


def _spread(pool: list[Spec], n: int) -> list[Spec]:
    """``n`` specs of ``pool`` chosen greedily to be far apart: each next one has the most fields differing from its
    nearest already chosen spec (ties: the earlier drawn), starting from the first."""
    names = [f.name for f in dataclasses.fields(Spec)]
    rows = [tuple(getattr(spec, name) for name in names) for spec in pool]
    chosen = [0]
    nearest = [sum(a != b for a, b in zip(row, rows[0])) for row in rows]
    while len(chosen) < n:
        best = max(range(len(pool)), key=lambda i: (nearest[i], -i))
        chosen.append(best)
        nearest = [min(d, sum(a != b for a, b in zip(row, rows[best]))) for d, row in zip(nearest, rows)]
    return [pool[i] for i in chosen]


def draw_population(n: int, seed: int, strategy: st.SearchStrategy[Spec], pool_factor: int = 8) -> list[Spec]:
    """``n`` distinct specs drawn from ``strategy``, the same list for the same arguments.

    Hypothesis draws ``pool_factor * n`` examples under ``seed`` (its runs start from the simplest example and mutate
    earlier ones, so neighbours are often near-copies); the ``n`` returned are picked from them greedily to differ
    in as many fields as possible, which spreads the population over every field's choices."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(pool_factor, int) or pool_factor < 1:
        raise ValueError(f"pool_factor must be a positive int, got {pool_factor!r}")
    budget = pool_factor * n
    distinct: list[Spec] = []
    for _ in range(6):
        drawn: list[Spec] = []

        @hypothesis.seed(seed)
        @settings(max_examples=budget, database=None, derandomize=False, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
        @hypothesis.given(strategy)
        def collect(spec: Spec) -> None:
            drawn.append(spec)

        collect()
        distinct = list(dict.fromkeys(drawn))
        if len(distinct) >= n:
            return _spread(distinct[: pool_factor * n], n)
        budget *= 2
    raise ValueError(f"the strategy gave only {len(distinct)} distinct specs; {n} were asked for")
