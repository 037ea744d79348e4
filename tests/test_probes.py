"""Probes on models the suite did not write: attention logits from SDPA and nn.MultiheadAttention, layers that are
exactly 0 in the coordinate check, and the user's own norm classes."""

from __future__ import annotations



import dataclasses
import math
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import training_session
from pytest_scaling import ModelFamily, checks, families, tasks
from pytest_scaling.assertions import assert_coord_check, assert_depth_coord_check
from pytest_scaling.properties.depth_coord_check import _top_norm
from pytest_scaling.properties.no_logit_divergence import NO_ATTENTION, _logit_trends
from pytest_scaling.metrics import coord_slopes, seed_geometric_mean
from pytest_scaling.optim import AdamW
from pytest_scaling.probes import LOGITS, is_norm, probing, record_attention_logits
from pytest_scaling.session import ScalingSession
from pytest_scaling.tiers import CoordCheckGrid, StabilityGrid
from pytest_scaling.train import RunResult

# ---- scaled_dot_product_attention --------------------------------------------------------------

BATCH, HEADS, QUERIES, KEYS, HEAD_DIM = 2, 3, 5, 6, 4


class SDPAttention(nn.Module):
    """A user's attention core: SDPA on given q, k, v with the given keyword arguments."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, **kwargs)


class SDPAModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(HEAD_DIM, HEAD_DIM)
        self.attn = SDPAttention()

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.proj(self.attn(q, k, v, **kwargs))


def hand_logit_max(q: torch.Tensor, k: torch.Tensor, scale: float, attend: torch.Tensor | None = None,
                   bias: torch.Tensor | None = None) -> float:
    """max over (batch, head, i, j) with attend[i, j] of q_i . k_j * scale + bias, written out."""
    best = -math.inf
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            for i in range(q.shape[2]):
                for j in range(k.shape[2]):
                    if attend is not None and not attend[b, h, i, j]:
                        continue
                    logit = float(q[b, h, i] @ k[b, h, j]) * scale + (0.0 if bias is None else float(bias[b, h, i, j]))
                    best = max(best, logit)
    return best


def qkv() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random q, k, v whose largest logit is query 0 on the last key: above the diagonal, so every mask hides it."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(BATCH, HEADS, n, HEAD_DIM, generator=g) for n in (QUERIES, KEYS, KEYS))
    q[0, 0, 0] = 3 * k[0, 0, -1]
    return q, k, v


def sdpa_cases() -> dict[str, tuple[dict, dict]]:
    """Per case: SDPA's keyword arguments and the hand computation's (scale, attend, bias)."""
    g = torch.Generator().manual_seed(1)
    default = 1 / math.sqrt(HEAD_DIM)
    causal = torch.ones(QUERIES, KEYS, dtype=torch.bool).tril().expand(BATCH, HEADS, -1, -1)
    boolean = torch.rand(BATCH, 1, QUERIES, KEYS, generator=g) > 0.5  # broadcast over heads
    boolean[..., 0], boolean[0, :, 0, -1] = True, False  # every query attends somewhere; not to the largest logit
    additive = 3 * torch.randn(QUERIES, KEYS, generator=g)  # broadcast over batch and heads
    additive[0, -1] = -20.0
    return {
        "causal": ({"is_causal": True}, {"scale": default, "attend": causal}),
        "custom scale": ({"scale": 0.37}, {"scale": 0.37}),
        "boolean mask": ({"attn_mask": boolean}, {"scale": default, "attend": boolean.expand(-1, HEADS, -1, -1)}),
        "float mask": ({"attn_mask": additive, "scale": 2.0},
                       {"scale": 2.0, "bias": additive.expand(BATCH, HEADS, -1, -1)}),
    }


@pytest.mark.parametrize("case", list(sdpa_cases()))
def test_sdpa_max_logit_is_the_masked_scaled_maximum(case: str) -> None:
    sdpa_kwargs, hand = sdpa_cases()[case]
    q, k, v = qkv()
    model = SDPAModel()
    with torch.no_grad(), probing(model) as recorder:
        out = model(q, k, v, **sdpa_kwargs)
    expected = hand_logit_max(q, k, **hand)
    assert recorder.attention_logit_max == {"attn": pytest.approx(expected, rel=1e-5)}
    assert abs(expected - hand_logit_max(q, k, 1 / math.sqrt(HEAD_DIM))) > 1  # the case changes the maximum
    torch.testing.assert_close(out, model(q, k, v, **sdpa_kwargs))  # the real call ran unchanged


def test_sdpa_with_grouped_query_attention_repeats_the_key_heads() -> None:
    q, k, v = qkv()
    k1, v1 = k[:, :1], v[:, :1]  # one key head shared by the three query heads
    model = SDPAModel()
    with torch.no_grad(), probing(model) as recorder:
        model(q, k1, v1, enable_gqa=True)
    expected = hand_logit_max(q, k1.expand(-1, HEADS, -1, -1), 1 / math.sqrt(HEAD_DIM))
    assert recorder.attention_logit_max["attn"] == pytest.approx(expected, rel=1e-5)


class TwoCallsAndARecord(nn.Module):
    """One module calling SDPA twice and reporting hand-written logits too."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        small = F.scaled_dot_product_attention(q, k, v, scale=0.01)
        large = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        record_attention_logits(self, q @ k.transpose(-2, -1) * 0.5)
        return small + large


def test_a_module_keeps_its_largest_logit_over_calls() -> None:
    q, k, v = qkv()
    model = TwoCallsAndARecord()  # the root module: named by its class
    with torch.no_grad(), probing(model) as recorder:
        model(q, k, v)
    assert recorder.attention_logit_max == {"TwoCallsAndARecord": pytest.approx(hand_logit_max(q, k, 1.0), rel=1e-5)}


# ---- hand-written attention (softmax over a square score matrix) ---------------------------------


class HandWrittenAttention(nn.Module):
    """Attention as users write it out: scores, a causal mask filled with ``fill``, softmax by ``how``, then values."""

    def __init__(self, scale: float, fill: float, how: str) -> None:
        super().__init__()
        self.scale, self.fill, self.how = scale, fill, how

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scores = q @ k.transpose(-2, -1) * self.scale
        causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).triu(1)
        scores = scores.masked_fill(causal, self.fill)
        weights = {"method": lambda: scores.softmax(-1), "functional": lambda: F.softmax(scores, dim=-1),
                   "torch": lambda: torch.softmax(scores, dim=3)}[self.how]()
        return weights @ v


class HandWrittenModel(nn.Module):
    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.proj = nn.Linear(HEAD_DIM, HEAD_DIM)
        self.attn = attention

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attn(q, k, v))


@pytest.mark.parametrize("how", ["method", "functional", "torch"])
@pytest.mark.parametrize("fill", [-math.inf, -1e9])
def test_hand_written_attention_logits_are_read_at_its_softmax(how: str, fill: float) -> None:
    q, k, v = (torch.randn(BATCH, HEADS, QUERIES, HEAD_DIM, generator=torch.Generator().manual_seed(i)) for i in range(3))
    model = HandWrittenModel(HandWrittenAttention(0.7, fill, how))
    with torch.no_grad(), probing(model) as recorder:
        model(q, k, v)
    attend = torch.ones(QUERIES, QUERIES, dtype=torch.bool).tril()
    logits = (q @ k.transpose(-2, -1) * 0.7)[..., attend]
    assert recorder.attention_logit_max["attn"] == pytest.approx(hand_logit_max(q, k, 0.7, attend.expand(BATCH, HEADS, -1, -1)), rel=1e-5)
    # The mask's fill value (-1e9 as often as -inf) is not a score: the mean |logit| is over attended entries only.
    assert recorder.attention_logit_size["attn"] == pytest.approx(float(logits.abs().mean()), rel=1e-5)


def test_a_softmax_that_is_not_attention_is_not_read() -> None:
    """A softmax over a vocabulary (not square), or one called outside every module (a loss), is not attention."""
    model = HandWrittenModel(HandWrittenAttention(0.7, -math.inf, "method"))
    with torch.no_grad(), probing(model) as recorder:
        torch.softmax(torch.randn(4, 4, 4), dim=-1)  # outside the forward: no module is running
    assert recorder.attention_logit_max == {}

    class VocabSoftmax(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x @ torch.ones(HEAD_DIM, 7)).softmax(-1)

    vocab = nn.Sequential(nn.Linear(HEAD_DIM, HEAD_DIM), VocabSoftmax())
    with torch.no_grad(), probing(vocab) as recorder:
        vocab(torch.randn(2, 5, HEAD_DIM))
    assert recorder.attention_logit_max == {}


# ---- nn.MultiheadAttention ---------------------------------------------------------------------

EMBED, MHA_HEADS, SEQ = 8, 2, 5


class MHAModel(nn.Module):
    def __init__(self, batch_first: bool, kdim: int | None) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(EMBED, MHA_HEADS, batch_first=batch_first, kdim=kdim, vdim=kdim)

    def forward(self, query: torch.Tensor, key: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.attn(query, key, key, **kwargs)[0]


def qk_projection(mha: nn.MultiheadAttention) -> tuple[torch.Tensor, ...]:
    """(w_q, b_q, w_k, b_k) of the in-projection, packed or separate."""
    w_q, w_k, _ = mha.in_proj_weight.chunk(3) if mha._qkv_same_embed_dim else (mha.q_proj_weight, mha.k_proj_weight, None)
    b_q, b_k, _ = mha.in_proj_bias.chunk(3)
    return tuple(t.detach() for t in (w_q, b_q, w_k, b_k))


def mha_inputs(mha: nn.MultiheadAttention) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-first query and key; the last key of batch 0 is aligned with query 0, so its logit is the largest and
    every mask case hides it (above the diagonal, padding, a -20 bias)."""
    g = torch.Generator().manual_seed(3)
    query, key = torch.randn(BATCH, SEQ, EMBED, generator=g), torch.randn(BATCH, SEQ + 1, mha.kdim, generator=g)
    w_q, b_q, w_k, _ = qk_projection(mha)
    toward_query = w_k.T @ (w_q @ query[0, 0] + b_q)
    key[0, -1] = 40 * toward_query / toward_query.dot(toward_query)  # q_0 . k_last = 40 + q_0 . b_k over the heads
    return query, key


def hand_mha_logit_max(mha: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor,
                       masked: torch.Tensor | None = None, additive: torch.Tensor | None = None,
                       padding: torch.Tensor | None = None) -> float:
    """q·k/√head_dim per batch element and head, from the module's weights; query, key batch-first [N, L, E]."""
    w_q, b_q, w_k, b_k = qk_projection(mha)
    q, k = query @ w_q.T + b_q, key @ w_k.T + b_k
    d = EMBED // MHA_HEADS
    best = -math.inf
    for n in range(query.shape[0]):
        for h in range(MHA_HEADS):
            logits = q[n, :, h * d:(h + 1) * d] @ k[n, :, h * d:(h + 1) * d].T / math.sqrt(d)
            if additive is not None:
                logits = logits + additive
            if masked is not None:
                logits = logits.masked_fill(masked, -math.inf)
            if padding is not None:
                logits = logits.masked_fill(padding[n][None, :], -math.inf)
            best = max(best, float(logits.max()))
    return best


def mha_cases() -> dict[str, tuple[dict, dict]]:
    """Per case: the module's mask arguments (True = masked) and the hand computation's."""
    g = torch.Generator().manual_seed(2)
    causal = torch.ones(SEQ, SEQ + 1, dtype=torch.bool).triu(1)
    padding = torch.zeros(BATCH, SEQ + 1, dtype=torch.bool)
    padding[0, 2:] = True
    additive = 3 * torch.randn(SEQ, SEQ + 1, generator=g)
    additive[0, -1] = -20.0
    return {
        "no mask": ({}, {}),
        "causal": ({"attn_mask": causal, "is_causal": True}, {"masked": causal}),
        "key padding": ({"key_padding_mask": padding}, {"padding": padding}),
        "float mask": ({"attn_mask": additive}, {"additive": additive}),
    }


@pytest.mark.parametrize("case", list(mha_cases()))
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
@pytest.mark.parametrize("need_weights", [True, False], ids=["weights", "no_weights"])
@pytest.mark.parametrize("kdim", [None, 6], ids=["packed", "separate"])
def test_multihead_attention_max_logit(case: str, batch_first: bool, need_weights: bool, kdim: int | None) -> None:
    masks, hand = mha_cases()[case]
    torch.manual_seed(0)
    model = MHAModel(batch_first, kdim)
    query, key = mha_inputs(model.attn)
    with torch.no_grad(), probing(model) as recorder:
        args = (query, key) if batch_first else (query.transpose(0, 1), key.transpose(0, 1))
        model(*args, need_weights=need_weights, **masks)
    expected = hand_mha_logit_max(model.attn, query, key, **hand)
    assert recorder.attention_logit_max == {"attn": pytest.approx(expected, rel=1e-5)}
    if masks:  # the case changes the maximum, so ignoring the mask would fail
        assert abs(expected - hand_mha_logit_max(model.attn, query, key)) > 1


# ---- nothing left behind -----------------------------------------------------------------------


def test_probing_leaves_no_hook_or_mode_behind() -> None:
    model = nn.Sequential(nn.Linear(HEAD_DIM, HEAD_DIM), SDPAModel(), nn.MultiheadAttention(HEAD_DIM, 1))
    q, k, v = qkv()
    with torch.no_grad(), probing(model) as recorder:
        model[1](q, k, v)
    recorded = dict(recorder.attention_logit_max)
    assert set(recorded) == {"1.attn"}
    with torch.no_grad():
        model[1](q, k, v, scale=100.0)  # outside probing: the old recorder hears nothing
        record_attention_logits(model[1], torch.full((1,), 1e9))
    assert recorder.attention_logit_max == recorded
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(RuntimeError), probing(model):  # a forward that raises still unwinds everything
        model[0](torch.ones(2, HEAD_DIM + 1))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with torch.no_grad(), probing(model) as recorder:  # and the next probe names modules as before
        model[1](q, k, v)
    assert recorder.attention_logit_max == recorded


# ---- logit divergence without attention --------------------------------------------------------

NO_ATTENTION_GRID = StabilityGrid(widths=(32, 64), lrs=(1e-2,), steps=12, batch_size=16, warmup=2, probe_every=3,
                                  max_sensitivity=0.1, attention_logit_cap=1e3, log_z_cap=20.0, stacking="none")


def test_a_model_without_attention_has_its_log_z_checked_alone(one_thread_session: ScalingSession) -> None:
    mlp = families.mlp(parametrization="mup", widths=(32, 64), base_width=32)
    trends = checks.no_logit_divergence(one_thread_session, mlp, NO_ATTENTION_GRID)
    assert sorted(trends) == ["w=32 lr=0.01 seed=0 |log Z|", "w=64 lr=0.01 seed=0 |log Z|"]
    data = one_thread_session.records[-1]["values"]
    assert data["attention"] == NO_ATTENTION and list(data["series"]) == ["|log Z|"]
    diverging = dataclasses.replace(NO_ATTENTION_GRID, lrs=(1e20,))
    with pytest.raises(AssertionError, match=r"(?s)logit divergence.*\|log Z\|.*DIVERGED"):
        checks.no_logit_divergence(one_thread_session, mlp, diverging)


def test_a_run_that_stopped_early_still_reads_as_diverged() -> None:
    steps = [0, 5, 10, 15]
    run = RunResult(width=32, lr=1.0, seed=0, losses=[1.0] * 6, diverged=True, probe_step_list=steps[:2],
                    probes={"attention_logit_max": {"attn": [1.0, 2.0]}, "output": {"log_z_mean": [1.0, 1.0]}})
    trends = _logit_trends(run, steps, NO_ATTENTION_GRID, attention=True)
    assert trends["attention logit"].diverged and trends["|log Z|"].diverged
    assert list(trends["attention logit"].values) == [1.0, 2.0, math.inf, math.inf]
    assert list(_logit_trends(run, steps, NO_ATTENTION_GRID, attention=False)) == ["|log Z|"]


# ---- exact zeros in the coordinate check -------------------------------------------------------

WIDTHS = np.array([64, 128, 256])


def sizes_with(exponents: list[list[float]], zero: list[tuple[int, int]] = ()) -> np.ndarray:
    """Sizes width**exponent [layer, step, width], with the listed (layer, step) cells 0 at the narrowest width."""
    sizes = WIDTHS[None, None, :] ** np.asarray(exponents, dtype=float)[..., None]
    for layer, step in zero:
        sizes[layer, step, 0] = 0.0
    return sizes


def test_a_zero_cell_has_no_slope_and_is_listed() -> None:
    result = coord_slopes(WIDTHS, sizes_with([[0.0, 0.1], [0.0, 0.05]], zero=[(1, 0)]), layers=["q", "readout"],
                          steps=[1, 2])
    assert result.zero_cells == (("readout", 1),)
    assert np.isnan(result.slopes[1, 0]) and result.slopes[0, 1] == pytest.approx(0.1)
    assert result.max_slope == pytest.approx(0.1) and result.dead_layers == ()
    assert result.to_dict()["slopes"] == [[pytest.approx(0.0, abs=1e-12), pytest.approx(0.1)],
                                          [None, pytest.approx(0.05)]]
    assert result.to_dict()["zero_cells"] == [["readout", 1]]


def test_the_seed_mean_of_a_zero_is_zero_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean = seed_geometric_mean([[[0.0, 4.0]], [[2.0, 1.0]]])
    np.testing.assert_allclose(mean, [[0.0, 2.0]])


def test_zero_cells_pass_and_show_as_exact_zeros_when_growth_fails() -> None:
    quiet = coord_slopes(WIDTHS, sizes_with([[0.0, 0.0], [0.0, 0.1]], zero=[(0, 0)]), layers=["q", "readout"])
    assert assert_coord_check(quiet) is quiet
    growing = coord_slopes(WIDTHS, sizes_with([[0.0, 0.0], [0.0, 0.9]], zero=[(0, 0)]), layers=["q", "readout"])
    with pytest.raises(AssertionError) as failure:
        assert_coord_check(growing)
    message = str(failure.value)
    assert "q        0 (exact)  +0.000  0.000" in message
    assert "worst: readout at step 1, slope +0.900" in message
    assert "exactly 0 at some width, so no slope: q at t=0" in message


@pytest.mark.parametrize("assertion, title", [(assert_coord_check, "a layer never moves off 0"),
                                              (assert_depth_coord_check, "residual stream is exactly 0 throughout")])
def test_a_layer_zero_at_every_step_is_dead_and_fails(assertion, title: str) -> None:
    dead = coord_slopes(WIDTHS, sizes_with([[0.0, 0.0], [0.0, 0.0]], zero=[(0, 0), (0, 1)]), layers=["gate", "readout"])
    assert dead.dead_layers == ("gate",) and dead.zero_cells == (("gate", 0), ("gate", 1))
    with pytest.raises(AssertionError, match=title) as failure:
        assertion(dead)
    message = str(failure.value)
    assert "gate     0 (exact)  0 (exact)  —" in message
    assert "exactly 0 at every step (dead: never moved, never checked): gate" in message


def test_depth_growth_still_fails_next_to_a_zero_cell() -> None:
    result = coord_slopes(WIDTHS, sizes_with([[0.0, 0.5]], zero=[(0, 0)]), layers=["width 32: norm input"])
    with pytest.raises(AssertionError, match="depth coordinate check failed: the residual stream scales with depth"):
        assert_depth_coord_check(result)


# ---- a user's GPT: SDPA, its own RMSNorm, zero-initialised readout and query -------------------

VOCAB, SEQ_LEN, GPT_HEADS, BASE_WIDTH = 32, 16, 4, 64


class RMSNorm(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(width), RMSNorm(width)
        self.q, self.k, self.v, self.out = (nn.Linear(width, width, bias=False) for _ in range(4))
        self.up, self.down = nn.Linear(width, 4 * width, bias=False), nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h = self.norm1(x)
        q, k, v = (proj(h).view(b, t, GPT_HEADS, c // GPT_HEADS).transpose(1, 2) for proj in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=8.0 / (c // GPT_HEADS))  # muP: 1/d
        x = x + self.out(y.transpose(1, 2).reshape(b, t, c))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class UserGPT(nn.Module):
    """muP by hand, with a zero readout and zero queries (Tensor Programs V): both exactly 0 until updated."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(VOCAB, width), nn.Embedding(SEQ_LEN, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(2))
        self.norm = RMSNorm(width)
        self.readout = nn.Linear(width, VOCAB, bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2 and name.startswith("blocks"):
                nn.init.normal_(p, std=1 / math.sqrt(p.shape[1]))
        for block in self.blocks:
            nn.init.zeros_(block.q.weight)
        nn.init.zeros_(self.readout.weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.readout(self.norm(x))


def user_gpt(readout_lr_scaled: bool) -> ModelFamily:
    """Adam LR eta/m for the hidden matrices, and for the readout unless ``readout_lr_scaled`` is False."""

    def make_optimizer(model: UserGPT, lr: float) -> torch.optim.Optimizer:
        m = model.readout.in_features / BASE_WIDTH
        prefixes = ("blocks", "readout") if readout_lr_scaled else ("blocks",)
        scaled = [p for n, p in model.named_parameters() if p.dim() == 2 and n.startswith(prefixes)]
        rest = [p for p in model.parameters() if all(p is not s for s in scaled)]
        return AdamW([{"params": rest, "lr": lr}, {"params": scaled, "lr": lr / m}], lr=lr)

    return ModelFamily(name=f"user-gpt-{'mup' if readout_lr_scaled else 'unscaled-readout'}", build=UserGPT,
                       task=tasks.markov_language(vocab=VOCAB, seq_len=SEQ_LEN), base_width=BASE_WIDTH,
                       widths=(64, 128, 256), optimizer=make_optimizer)


# Two seeds: measured max slope 0.02-0.07 under muP (seed pairs 0-1 to 6-7), 0.90-0.99 with the readout LR unscaled.
# At widths 32-128 one seed's max slope reached 0.24 (an out projection at step 3): too noisy to assert.
USER_COORD = CoordCheckGrid(widths=(64, 128, 256), lr=1e-2, steps=3, batch_size=16, max_abs_slope=0.15)


@pytest.fixture
def two_seed_session() -> ScalingSession:
    """A smoke-tier training session with seeds 0 and 1."""
    return training_session(seeds=(0, 1))


def test_a_user_gpt_with_zero_readout_and_query_passes_the_coord_check(two_seed_session: ScalingSession) -> None:
    scaling = two_seed_session
    result = checks.coord_check(scaling, user_gpt(readout_lr_scaled=True), USER_COORD)
    # Step 0's gradient is 0 behind the zero readout, so the queries, and the attention logits, move at step 2 only.
    zeros = (("readout", 0), *((row, t) for t in (0, 1) for row in ("blocks.0.q", "blocks.1.q", "blocks.0 (attention logits)",
                                                                    "blocks.1 (attention logits)")))
    assert sorted(result.zero_cells) == sorted(zeros)
    record = scaling.records[-1]["values"]
    assert sorted(map(tuple, record["zero_cells"])) == sorted(zeros)
    assert record["slopes"][record["layers"].index("blocks.0.q")][0] is None
    verdicts = record["verdicts"]
    assert [v["name"] for v in verdicts] == ["parametrization", "training dynamics"]
    assert verdicts[0]["steps"] == [0, 1, 2] and verdicts[1]["steps"] == [3]  # the hidden layers first move at step 2
    with pytest.raises(AssertionError, match="the parametrization scales with width") as failure:
        checks.coord_check(scaling, user_gpt(readout_lr_scaled=False), USER_COORD)
    assert "(parametrization): worst slope" in str(failure.value) and "at readout step" in str(failure.value)
    assert re.search(r"blocks\.0\.q +0 \(exact\)", str(failure.value))


# ---- the user's own norm classes ---------------------------------------------------------------


class LayerNormSubclass(nn.LayerNorm):
    pass


class ScaleNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True)


class Normalizer(nn.Module):
    """Standardises inputs with fixed statistics: not a normalisation layer (its output scales with its input)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PreNormBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm, self.fc = RMSNorm(width), nn.Linear(width, width)


@pytest.mark.parametrize("module, expected", [
    (RMSNorm(8), True), (LayerNormSubclass(8), True), (ScaleNorm(), True), (nn.LayerNorm(8), True),
    (nn.RMSNorm(8), True), (nn.GroupNorm(2, 8), True), (nn.LayerNorm(8, elementwise_affine=False), True),
    (Normalizer(8), False), (PreNormBlock(8), False), (nn.Linear(8, 8), False),
], ids=lambda value: type(value).__name__ if isinstance(value, nn.Module) else str(value))
def test_is_norm_recognises_user_norm_classes(module: nn.Module, expected: bool) -> None:
    assert is_norm(module) is expected


def test_the_depth_check_and_the_norm_probe_find_a_user_rmsnorm() -> None:
    assert _top_norm(user_gpt(readout_lr_scaled=True), BASE_WIDTH) == "norm"
    model = nn.Sequential(Normalizer(8), nn.Linear(8, 8), RMSNorm(8))
    with torch.no_grad(), probing(model) as recorder:
        model(torch.full((2, 8), 3.0))
        linear_output = model[1](torch.full((2, 8), 3.0))
    assert recorder.norm_input_size == {"2": pytest.approx(float(linear_output.abs().mean()))}


# --- the model's output: a readout multiplier written after the module, a readout without a module ---------------


class _ScaledReadout(nn.Module):
    """``logits = readout(h) * mult``: the multiplier written after the readout module, as users write 1/m."""

    def __init__(self, mult: float) -> None:
        super().__init__()
        self.hidden, self.readout, self.mult = nn.Linear(4, 8), nn.Linear(8, 3), mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.hidden(x)) * self.mult


class _TiedReadout(nn.Module):
    """Logits from the embedding matrix itself, with no readout module."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.norm = nn.Embedding(10, 8), nn.LayerNorm(8)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.embed(tokens)) @ self.embed.weight.T / 2


@pytest.mark.parametrize("mult", [1.0, 0.25])
def test_a_readout_multiplier_after_the_module_is_measured_with_the_readout(mult: float) -> None:
    model = _ScaledReadout(mult)
    with probing(model) as recorder:
        logits = model(torch.randn(5, 4))
    assert recorder.activation_size["readout"] == pytest.approx(float(logits.detach().abs().mean()))
    assert LOGITS not in recorder.activation_size


def test_logits_made_without_a_readout_module_are_their_own_row() -> None:
    model = _TiedReadout()
    with probing(model) as recorder:
        logits = model(torch.randint(0, 10, (2, 3)))
    assert recorder.activation_size[LOGITS] == pytest.approx(float(logits.detach().abs().mean()))
    assert set(recorder.activation_size) == {"embed", "norm", LOGITS}


def test_a_zero_readout_and_its_multiplier_read_exactly_zero() -> None:
    model = _ScaledReadout(0.5)
    nn.init.zeros_(model.readout.weight), nn.init.zeros_(model.readout.bias)
    with probing(model) as recorder:
        model(torch.randn(5, 4))
    assert recorder.activation_size["readout"] == 0.0 and LOGITS not in recorder.activation_size
