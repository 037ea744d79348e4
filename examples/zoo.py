"""A zoo of user-written muP GPTs: one clean model, and one variant per classic muP or stability mistake.

The clean model is a decoder-only pre-norm GPT with muP written the way practitioners write it
(Tensor Programs V; microsoft/mup's MuReadout and MuAdam conventions) plus Depth-muP residuals,
qk-layernorm, z-loss and LR-independent weight decay. Every choice a mistake can flip is one field of
``Recipe``, read at the line where it acts; a variant is the clean recipe with one field flipped.
The suite's own tests use the variants as negative controls:

    family = make("no_readout_multiplier")       # the user's family after one bad change
    family.at_depth(8)                           # the same variant at 8 layers

or from the command line: ``pytest scaling_tests/ --scaling-family examples.zoo:clean`` (or ``examples.zoo:<variant>``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pytest_scaling import ModelFamily, tasks

VOCAB, SEQ_LEN = 256, 32
BASE_WIDTH, BASE_DEPTH = 32, 2
WIDTHS = (32, 64, 128)
N_HEADS = 4  # fixed, so d_head = width / 4 grows with width
ATTN_MULT = math.sqrt(BASE_WIDTH // N_HEADS)
"""muP's attention scale is ATTN_MULT / d_head; this constant makes it 1/sqrt(d_head) at the base width (d_head 8)."""
ADAM_BETAS, ADAM_EPS = (0.9, 0.95), 1e-8
WEIGHT_DECAY_PER_STEP = 1e-4
"""Independent weight decay: each step shrinks matrices by this fraction whatever the LR (= 0.1 x LR 1e-3)."""
WEIGHT_DECAY_COUPLED = 0.1
"""torch AdamW's usual ``weight_decay``: a shrink of LR x 0.1 per step, equal to the independent one at LR 1e-3."""
Z_LOSS = 1e-2
"""z-loss weight: 1e-2 rather than PaLM's 1e-4, a weight meant for runs far longer than the suite's few hundred steps."""
NORM_EPS = 1e-6


@dataclass(frozen=True)
class Recipe:
    """The muP and stability choices of the model; each field is flipped by exactly one variant."""

    readout_multiplier: bool = True  # logits = readout(h) / m (MuReadout)
    attention_scale_1_over_d: bool = True  # SDPA scale ATTN_MULT / d_head, else its default 1/sqrt(d_head)
    hidden_lr_over_m: bool = True  # hidden matrices' Adam LR eta / m (MuAdam), else eta
    qk_layernorm: bool = True  # RMSNorm on q and k per head
    z_loss: bool = True  # Z_LOSS * logsumexp(logits)^2 added to the training loss
    adam_eps: float = ADAM_EPS
    independent_weight_decay: bool = True  # per-step decay WEIGHT_DECAY_PER_STEP, else LR x WEIGHT_DECAY_COUPLED
    depth_scaled_residuals: bool = True  # Depth-muP: branches x (L / BASE_DEPTH)^-1/2, blocks' hidden LR likewise
    # Edits that change nothing a property measures (BENIGN): what the readout module is called, and whether a block
    # defines its MLP before its attention (the order parameters are created and drawn from the RNG in).
    readout_name: str = "readout"
    mlp_first: bool = False


CLEAN = Recipe()
_MISTAKES: dict[str, tuple[str, Recipe]] = {
    "no_readout_multiplier": ("the readout's 1/m forward multiplier removed (LR left at eta)",
                              Recipe(readout_multiplier=False)),
    "attention_1_over_sqrt_d": ("SDPA's default 1/sqrt(d_head) attention scale instead of muP's 1/d_head",
                                Recipe(attention_scale_1_over_d=False)),
    "hidden_lr_unscaled": ("hidden matrices' Adam LR eta instead of eta/m", Recipe(hidden_lr_over_m=False)),
    "no_qk_layernorm": ("qk-layernorm removed", Recipe(qk_layernorm=False)),
    "no_z_loss": ("z-loss removed (plain cross-entropy)", Recipe(z_loss=False)),
    "adam_eps_1e-3": ("Adam eps 1e-3 instead of 1e-8", Recipe(adam_eps=1e-3)),
    "coupled_weight_decay": (f"weight decay coupled to the LR (torch AdamW weight_decay={WEIGHT_DECAY_COUPLED})",
                             Recipe(independent_weight_decay=False)),
    "unscaled_residuals": ("residual branches and the blocks' LR not scaled with depth (no Depth-muP)",
                           Recipe(depth_scaled_residuals=False)),
}
VARIANTS: dict[str, str] = {name: description for name, (description, _) in _MISTAKES.items()}
"""Variant name -> the one mistake it makes."""
_BENIGN: dict[str, tuple[str, Recipe]] = {
    "renamed_readout": ("the readout module renamed from 'readout' to 'head'", Recipe(readout_name="head")),
    "reordered_parameters": ("each block defines its MLP before its attention (another init draw order)",
                             Recipe(mlp_first=True)),
}
BENIGN: dict[str, str] = {name: description for name, (description, _) in _BENIGN.items()}
"""Edit name -> a change a property must not flag (a refactor, not a mistake)."""


class RMSNorm(nn.Module):
    """x / rms(x) over the last dimension, times a learned gain (computed in float32)."""

    def __init__(self, dim: int, eps: float = NORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class Attention(nn.Module):
    """Causal multi-head self-attention through ``F.scaled_dot_product_attention``."""

    def __init__(self, width: int, recipe: Recipe):
        super().__init__()
        self.d_head = width // N_HEADS
        self.query, self.key, self.value, self.out = (nn.Linear(width, width, bias=False) for _ in range(4))
        self.q_norm = RMSNorm(self.d_head) if recipe.qk_layernorm else nn.Identity()
        self.k_norm = RMSNorm(self.d_head) if recipe.qk_layernorm else nn.Identity()
        self.scale = ATTN_MULT / self.d_head if recipe.attention_scale_1_over_d else None  # None: SDPA's default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, N_HEADS, self.d_head).transpose(1, 2)

        q, k, v = self.q_norm(heads(self.query(x))), self.k_norm(heads(self.key(x))), heads(self.value(x))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.out(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.up = nn.Linear(width, 4 * width, bias=False)
        self.down = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-norm block; each residual branch is multiplied by ``branch_mult``."""

    def __init__(self, width: int, recipe: Recipe, branch_mult: float):
        super().__init__()
        if recipe.mlp_first:
            self.mlp_norm, self.mlp = RMSNorm(width), MLP(width)
        self.attn_norm, self.attn = RMSNorm(width), Attention(width, recipe)
        if not recipe.mlp_first:
            self.mlp_norm, self.mlp = RMSNorm(width), MLP(width)
        self.branch_mult = branch_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.branch_mult * self.attn(self.attn_norm(x))
        return x + self.branch_mult * self.mlp(self.mlp_norm(x))


class ZooGPT(nn.Module):
    """Token + position embeddings, ``n_layers`` blocks, final RMSNorm and a zero-initialised muP readout."""

    def __init__(self, width: int, n_layers: int = BASE_DEPTH, recipe: Recipe = CLEAN):
        super().__init__()
        if not isinstance(width, int) or width <= 0 or width % N_HEADS:
            raise ValueError(f"width must be a positive multiple of {N_HEADS} (the head count), got {width!r}")
        self.recipe = recipe
        self.width_mult = width / BASE_WIDTH
        # Depth-muP: 1/sqrt(L) branches, and (configure_optimizer) the blocks' hidden LR by the same factor.
        self.depth_mult = (n_layers / BASE_DEPTH) ** -0.5 if recipe.depth_scaled_residuals else 1.0
        self.tok_embed = nn.Embedding(VOCAB, width)
        self.pos_embed = nn.Embedding(SEQ_LEN, width)
        self.blocks = nn.ModuleList(Block(width, recipe, self.depth_mult) for _ in range(n_layers))
        self.final_norm = RMSNorm(width)
        setattr(self, recipe.readout_name, nn.Linear(width, VOCAB, bias=False))
        self.readout_mult = 1 / self.width_mult if recipe.readout_multiplier else 1.0
        self._init_weights()

    def _init_weights(self) -> None:
        """Embeddings N(0, 1), hidden matrices N(0, 1/fan_in); query and readout at zero (muP allows both)."""
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=1.0)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=module.in_features**-0.5)
        for block in self.blocks:
            nn.init.zeros_(block.attn.query.weight)
        nn.init.zeros_(self.readout_layer.weight)

    @property
    def readout_layer(self) -> nn.Linear:
        """The readout module, whatever the recipe names it."""
        return getattr(self, self.recipe.readout_name)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tok_embed(tokens) + self.pos_embed(positions)
        for block in self.blocks:
            x = block(x)
        return self.readout_layer(self.final_norm(x)) * self.readout_mult

    def configure_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """AdamW with muP groups: embeddings, readout and gains at ``lr``; the blocks' matrices at lr/m x depth factor.

        The readout keeps ``lr`` because its 1/m lives in the forward multiplier. Matrices are decayed, gains
        are not; with independent decay each group's ``weight_decay`` is WEIGHT_DECAY_PER_STEP / its LR, so the
        per-step shrink lr x weight_decay stays WEIGHT_DECAY_PER_STEP (times the LR schedule) at any peak LR.
        """
        hidden_lr = (lr / self.width_mult if self.recipe.hidden_lr_over_m else lr) * self.depth_mult
        hidden = [p for p in self.blocks.parameters() if p.dim() == 2]
        outer = [self.tok_embed.weight, self.pos_embed.weight, self.readout_layer.weight]
        gains = [p for p in self.parameters() if p.dim() == 1]
        groups = [{"params": outer, "lr": lr}, {"params": hidden, "lr": hidden_lr}]
        for group in groups:
            group["weight_decay"] = (WEIGHT_DECAY_PER_STEP / group["lr"] if self.recipe.independent_weight_decay
                                     else WEIGHT_DECAY_COUPLED)
        groups.append({"params": gains, "lr": lr, "weight_decay": 0.0})
        return torch.optim.AdamW(groups, lr=lr, betas=ADAM_BETAS, eps=self.recipe.adam_eps)


@dataclass(frozen=True)
class ZooLoss:
    """Training objective: cross-entropy plus, if the recipe has it, the z-loss Z_LOSS * mean(logsumexp(logits)^2)."""

    recipe: Recipe = CLEAN

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        if self.recipe.z_loss:
            loss = loss + Z_LOSS * torch.logsumexp(logits, dim=-1).pow(2).mean()
        return loss


@functools.cache
def _task() -> tasks.Task:
    return tasks.markov_language(vocab=VOCAB, seq_len=SEQ_LEN)


def recipe_of(variant: str | None) -> Recipe:
    """The recipe of a variant (None: the clean model)."""
    if variant is None:
        return CLEAN
    known = {**_MISTAKES, **_BENIGN}
    if variant not in known:
        raise ValueError(f"unknown zoo variant {variant!r}; choose None or one of {sorted(known)}")
    return known[variant][1]


def make(variant: str | None = None, *, n_layers: int = BASE_DEPTH, name: str = "zoo-gpt") -> ModelFamily:
    """The zoo GPT family at ``n_layers`` layers, clean or with one of ``VARIANTS``' mistakes.

    Variants share the family name so a variant reads as a change to the user's own family;
    ``at_depth`` returns the same variant at another depth.
    """
    recipe = recipe_of(variant)
    if not isinstance(n_layers, int) or isinstance(n_layers, bool) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")

    def at_depth(depth: int) -> ModelFamily:
        return make(variant, n_layers=depth, name=name)

    return ModelFamily(
        name=name,
        build=functools.partial(ZooGPT, n_layers=n_layers, recipe=recipe),
        task=_task(),
        base_width=BASE_WIDTH,
        widths=WIDTHS,
        optimizer=ZooGPT.configure_optimizer,
        loss=ZooLoss(recipe),
        at_depth=at_depth,
    )



def clean() -> ModelFamily:
    """The clean model, for ``--scaling-family examples.zoo:clean``."""
    return make()


def __getattr__(name: str) -> functools.partial:
    """Each variant by name, for ``--scaling-family examples.zoo:<variant>`` (e.g. ``examples.zoo:no_z_loss``)."""
    if name in _MISTAKES or name in _BENIGN:
        return functools.partial(make, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
