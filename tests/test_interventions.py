"""Interventions (pytest_scaling.interventions): each does exactly what it says, on a built-in family and on models
written as users write them (the zoo's μP GPT, an nn.MultiheadAttention model), without editing their code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from examples import zoo
from pytest_scaling import ModelFamily, families, tasks
from pytest_scaling.attention_edit import attention_calls
from pytest_scaling.interventions import INTERVENTIONS, Z_LOSS_WEIGHT, get, groups_by_parameter, residual_blocks
from pytest_scaling.probes import probing
from pytest_scaling.train import TrainConfig, train_group

TOKENS = tasks.markov_language(vocab=32, seq_len=8)


class MHAModel(nn.Module):
    """A user's model around nn.MultiheadAttention, with a non-zero readout and its own Adam groups."""

    def __init__(self, width: int):
        super().__init__()
        self.embed = nn.Embedding(32, width)
        self.attn = nn.MultiheadAttention(width, num_heads=2, batch_first=True)
        self.readout = nn.Linear(width, 32)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        return self.readout(x + self.attn(x, x, x, need_weights=False)[0])


def mha_optimizer(model: MHAModel, lr: float) -> torch.optim.Optimizer:
    width = model.embed.embedding_dim
    return torch.optim.AdamW([{"params": [model.embed.weight], "lr": lr},
                              {"params": [p for n, p in model.named_parameters() if not n.startswith("embed")],
                               "lr": lr, "weight_decay": 0.1 * 16 / width}], lr=lr)


MHA_FAMILY = ModelFamily(name="user-mha", build=MHAModel, task=TOKENS, base_width=16, optimizer=mha_optimizer)


def logits(family: ModelFamily, width: int, seed: int = 0) -> torch.Tensor:
    model, _ = family.instantiate(width, seed)
    x, _ = family.task.batch(4, torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(x)


def lrs_by_name(family: ModelFamily, width: int, lr: float = 1e-2) -> dict[str, float]:
    return {name: float(group["lr"]) for name, group in groups_by_parameter(family, width, lr).items()}


def test_the_registry_names_every_intervention_a_property_asks_for():
    from pytest_scaling.properties import PROPERTIES

    assert {name for prop in PROPERTIES.values() for name in prop.interventions} <= set(INTERVENTIONS)
    with pytest.raises(ValueError, match="unknown intervention 'nope'; known: zero_readout"):
        get("nope")


@pytest.mark.parametrize("family", [families.mlp(base_width=16, widths=(16, 32)), MHA_FAMILY], ids=["builtin", "user"])
def test_zero_readout_makes_the_output_zero_at_step_0(family):
    fixed = get("zero_readout").apply(family)
    assert fixed.name == f"{family.name}+zero_readout"
    width = 2 * family.base_width
    readout = next(n for n, info in fixed.roles.params.items() if info.role == "output").rpartition(".")[0]
    model, _ = fixed.instantiate(width, 0)
    bias = model.get_submodule(readout).bias
    assert model.get_submodule(readout).weight.abs().max() == 0
    assert logits(family, width).abs().max() > 0
    out = logits(fixed, width)
    assert torch.equal(out, torch.zeros_like(out) + (0 if bias is None else bias.detach()))  # the readout adds nothing


def test_zero_readout_does_not_apply_to_a_zero_or_tied_readout():
    assert get("zero_readout").unavailable(zoo.make()) == "the readout is already initialised at zero"
    tied = families.gpt(parametrization="mup", tie_embeddings=True, base_width=16, widths=(16, 32))
    assert "tied to the embedding" in get("zero_readout").unavailable(tied)


@pytest.mark.parametrize("family", [families.mlp(base_width=16, widths=(16, 32), parametrization="sp",
                                                 task=tasks.teacher_student(input_dim=8, n_classes=4)), MHA_FAMILY],
                         ids=["builtin", "user"])
def test_readout_multiplier_divides_the_readout_by_m(family):
    fixed = get("readout_multiplier").apply(family)
    for width, m in ((family.base_width, 1), (4 * family.base_width, 4)):
        model, _ = fixed.instantiate(width, 0)
        original, _ = family.instantiate(width, 0)
        features: dict[str, torch.Tensor] = {}
        readout = [n for n, info in family.roles.params.items() if info.role == "output"][0].rpartition(".")[0]
        original.get_submodule(readout).register_forward_pre_hook(lambda mod, args: features.setdefault("h", args[0]))
        x, _ = family.task.batch(4, torch.Generator().manual_seed(1))
        with torch.no_grad():
            original(x)
            expected = F.linear(features["h"] / m, original.get_submodule(readout).weight,
                                original.get_submodule(readout).bias)
            assert torch.allclose(model(x), expected, atol=1e-6)


def test_attention_over_d_halves_the_sdpa_scale_per_doubling_of_the_head_size():
    # (nn.MultiheadAttention has no scale argument: there the intervention scales q, tested against a hand computation)
    for family in (zoo.make("attention_1_over_sqrt_d"),):
        fixed = get("attention_1_over_d").apply(family)
        x, _ = family.task.batch(2, torch.Generator().manual_seed(0))
        calls = {w: attention_calls(fixed.instantiate(w, 0)[0], x)[0] for w in (family.base_width, 2 * family.base_width,
                                                                               4 * family.base_width)}
        before = attention_calls(family.instantiate(family.base_width, 0)[0], x)[0]
        assert calls[family.base_width].scale == pytest.approx(before.scale)  # unchanged at the base width
        for w in calls:  # 1/d: scale × d is the same at every width, so the scale halves when d doubles
            assert calls[w].scale * calls[w].head_dim == pytest.approx(before.scale * before.head_dim)
        assert calls[4 * family.base_width].scale == pytest.approx(before.scale / 4)


def test_attention_over_d_changes_an_mha_model_as_scaling_q_would():
    fixed = get("attention_1_over_d").apply(MHA_FAMILY)
    model, _ = fixed.instantiate(64, 0)
    x, _ = TOKENS.batch(3, torch.Generator().manual_seed(0))
    h = model.embed(x)
    attn = model.attn
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(3, 8, 2, 32).transpose(1, 2)

    q, k, v = heads(F.linear(h, w_q, b_q)), heads(F.linear(h, w_k, b_k)), heads(F.linear(h, w_v, b_v))
    d0, d = 8, 32  # head size at the base width 16 (two heads) and at 64
    y = F.scaled_dot_product_attention(q, k, v, scale=math.sqrt(d0 / d) / math.sqrt(d))
    expected = model.readout(h + attn.out_proj(y.transpose(1, 2).reshape(3, 8, 64)))
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_attention_interventions_say_why_they_do_not_apply():
    no_attention = families.mlp(base_width=16, widths=(16, 32))
    assert "no attention call" in get("attention_1_over_d").unavailable(no_attention)
    assert get("attention_1_over_d").unavailable(zoo.make()) == "the attention scale already falls as 1/d"
    fixed_heads = families.gpt(parametrization="mup", base_width=16, n_heads=None, head_dim=8, widths=(16, 32))
    # The built-in GPT writes its attention out (no SDPA call): nothing to edit, said so.
    assert "no attention call" in get("attention_1_over_d").unavailable(fixed_heads)
    assert "no scaled_dot_product_attention call" in get("qk_layernorm").unavailable(MHA_FAMILY)


def test_qk_layernorm_bounds_the_attention_logits_of_an_sdpa_model():
    family = zoo.make("no_qk_layernorm")
    x, _ = family.task.batch(2, torch.Generator().manual_seed(0))
    largest = []
    for fam in (family, get("qk_layernorm").apply(family)):
        model, _ = fam.instantiate(64, 0)
        with torch.no_grad():
            for block in model.blocks:
                block.attn.query.weight.normal_(0, 10.0)  # large queries: the logits of the model as written blow up
            with probing(model) as recorder:
                model(x)
        largest.append(max(recorder.attention_logit_max.values()))
    head_dim, scale = 16, zoo.ATTN_MULT / 16
    assert largest[0] > 100
    assert largest[1] <= head_dim * scale + 1e-4  # |q̂·k̂| ≤ d for unit-RMS q and k


def test_z_loss_adds_its_term_to_the_family_objective():
    logits_, targets = torch.randn(2, 8, 32) * 3, torch.randint(32, (2, 8))
    for family, base in ((MHA_FAMILY, F.cross_entropy(logits_.reshape(-1, 32), targets.reshape(-1))),
                         (zoo.make(), zoo.ZooLoss()(logits_, targets))):
        fixed = get("z_loss").apply(family)
        expected = base + Z_LOSS_WEIGHT * torch.logsumexp(logits_, -1).pow(2).mean()
        assert torch.allclose(fixed.loss(logits_, targets), expected)


def test_lower_eps_scales_every_group_eps_and_needs_an_own_optimizer():
    fixed = get("lower_eps").apply(zoo.make("adam_eps_1e-3"))
    assert [group["eps"] for group in groups_by_parameter(fixed, 64, 1e-2).values()] == pytest.approx([1e-7] * 24)
    assert "the check's optimizer" in get("lower_eps").unavailable(families.mlp(base_width=16, widths=(16, 32)))


def test_mup_hidden_lr_gives_the_unscaled_variant_the_clean_models_lrs():
    fixed = get("mup_hidden_lr").apply(zoo.make("hidden_lr_unscaled"))
    clean = zoo.make()
    for width in (32, 128):
        assert lrs_by_name(fixed, width) == pytest.approx(lrs_by_name(clean, width))
    # the coupled decay of the regrouped hidden matrices keeps removing what it removed a step
    for name, group in groups_by_parameter(fixed, 128, 1e-2).items():
        assert group["lr"] * group["weight_decay"] == pytest.approx(
            groups_by_parameter(clean, 128, 1e-2)[name]["lr"] * groups_by_parameter(clean, 128, 1e-2)[name]["weight_decay"])


def test_mup_hidden_lr_on_a_builtin_sets_the_hidden_lr_exponent():
    sp = families.gpt(parametrization="sp", base_width=16, widths=(16, 32))
    fixed = get("mup_hidden_lr").apply(sp)
    _, groups = fixed.instantiate(64, 0)
    assert {g["role"]: g["lr_mult"] for g in groups}["hidden"] == pytest.approx(1 / 4)
    assert "one LR as written" in get("mup_hidden_lr").unavailable(MHA_FAMILY.__class__(
        name="plain", build=MHAModel, task=TOKENS, base_width=16))


def test_decay_at_base_lr_makes_the_coupled_variant_decay_like_the_clean_model():
    fixed = get("decay_at_base_lr").apply(zoo.make("coupled_weight_decay"))
    for width in (32, 128):
        decay = {n: g["lr"] * g["weight_decay"] for n, g in groups_by_parameter(fixed, width, 1e-3).items()}
        assert decay == pytest.approx({n: g["lr"] * g["weight_decay"]
                                       for n, g in groups_by_parameter(zoo.make(), width, 1e-3).items()})
    assert "already removes the same fraction" in get("decay_at_base_lr").unavailable(zoo.make())
    assert "the check's optimizer" in get("decay_at_base_lr").unavailable(families.mlp(base_width=16, widths=(16, 32)))


def test_residual_scaling_scales_each_blocks_update_and_lr_by_depth():
    family = zoo.make("unscaled_residuals")
    fixed = get("residual_1_over_sqrt_depth").apply(family)
    deep, deep_fixed = family.at_depth(8), fixed.at_depth(8)
    assert residual_blocks(deep.instantiate(32, 0)[0]) == ("blocks", 8)
    factor = (8 / zoo.BASE_DEPTH) ** -0.5
    x = torch.randn(2, 8, 32)
    original, _ = deep.instantiate(32, 0)
    scaled, _ = deep_fixed.instantiate(32, 0)
    with torch.no_grad():
        assert torch.allclose(scaled.blocks[0](x) - x, factor * (original.blocks[0](x) - x), atol=1e-6)
    lr, fixed_lr = lrs_by_name(deep, 64), lrs_by_name(deep_fixed, 64)
    for name in lr:
        assert fixed_lr[name] == pytest.approx(lr[name] * (factor if name.startswith("blocks.") else 1.0))
    assert "no at_depth" in get("residual_1_over_sqrt_depth").unavailable(MHA_FAMILY)
    assert "branches are already scaled" in get("residual_1_over_sqrt_depth").unavailable(zoo.make("no_z_loss"))


def test_an_intervened_family_has_its_own_fingerprint_and_trains_stacked():
    family = zoo.make("hidden_lr_unscaled")
    prints = {get(name).apply(family).fingerprint() for name in ("mup_hidden_lr", "z_loss", "qk_layernorm")}
    assert len(prints | {family.fingerprint()}) == 4
    assert get("z_loss").apply(family).fingerprint() == get("z_loss").apply(zoo.make("hidden_lr_unscaled")).fingerprint()
    fixed = get("mup_hidden_lr").apply(family)
    stacked = train_group(fixed, 64, [(1e-2, 0), (3e-2, 1)], TrainConfig(steps=3, batch_size=4))
    alone = [train_group(fixed, 64, [run], TrainConfig(steps=3, batch_size=4), stacked=False)[0]
             for run in ((1e-2, 0), (3e-2, 1))]
    for a, b in zip(stacked, alone):
        assert a.losses == pytest.approx(b.losses, rel=1e-4)
