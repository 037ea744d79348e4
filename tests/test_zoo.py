"""The zoo's clean muP GPT and its variants: each variant differs from the clean model in its one mistake only."""

from __future__ import annotations

import math
from typing import Any, Iterator

import pytest
import torch
import torch.nn.functional as F

from examples import zoo
from pytest_scaling.train import train_run

WIDE, DEEP = 128, 8
M = WIDE / zoo.BASE_WIDTH
LR = 1e-2
# What each variant must change, observed on the built objects; everything else must match the clean model.
CHANGES = {
    "no_readout_multiplier": {"readout_multiplier"},
    "attention_1_over_sqrt_d": {"attention_scale"},
    "hidden_lr_unscaled": {"hidden_lr"},
    "no_qk_layernorm": {"qk_norm_gains"},
    "no_z_loss": {"loss"},
    "adam_eps_1e-3": {"adam_eps"},
    "coupled_weight_decay": {"decay_per_step"},
    "unscaled_residuals": {"branch_multiplier", "hidden_lr"},
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(variant: str | None, width: int = WIDE, n_layers: int = DEEP, seed: int = 0) -> zoo.ZooGPT:
    torch.manual_seed(seed)
    return zoo.make(variant, n_layers=n_layers).build(width)


def tokens(batch: int = 2) -> torch.Tensor:
    return torch.randint(zoo.VOCAB, (batch, zoo.SEQ_LEN), generator=torch.Generator().manual_seed(1))


def readout_ratio(model: zoo.ZooGPT) -> float:
    """logits / readout(h): the readout's forward multiplier, with a nonzero readout so the ratio is defined."""
    with torch.no_grad():
        model.readout.weight.normal_(generator=torch.Generator().manual_seed(2))
    seen: list[torch.Tensor] = []
    handle = model.readout.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():
        logits = model(tokens())
    handle.remove()
    ratio = logits / seen[0]
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio)), "the readout multiplier is one scalar"
    return float(ratio.flatten()[0])


def sdpa_calls(model: zoo.ZooGPT, monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """(q, k, attention scale) of each SDPA call in one forward pass (scale 1/sqrt(d_head), SDPA's default, if none)."""
    calls: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    sdpa = F.scaled_dot_product_attention

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        scale = kwargs.get("scale")
        calls.append((q, k, q.shape[-1] ** -0.5 if scale is None else scale))
        return sdpa(q, k, v, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(F, "scaled_dot_product_attention", spy)
        with torch.no_grad():
            model(tokens())
    return calls


def attention_scales(model: zoo.ZooGPT, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    return [scale for _, _, scale in sdpa_calls(model, monkeypatch)]


def branch_multiplier(model: zoo.ZooGPT) -> float:
    """c in block(x) = x + c * (attn(...) + mlp(...)), read off the first block's forward pass."""
    block, seen = model.blocks[0], {}
    hooks = [block.register_forward_pre_hook(lambda module, args: seen.__setitem__("x", args[0])),
             block.register_forward_hook(lambda module, args, out: seen.__setitem__("y", out)),
             block.attn.register_forward_hook(lambda module, args, out: seen.__setitem__("attn", out)),
             block.mlp.register_forward_hook(lambda module, args, out: seen.__setitem__("mlp", out))]
    with torch.no_grad():
        model(tokens())
    for hook in hooks:
        hook.remove()
    branches = (seen["attn"] + seen["mlp"]).double()
    return float(((seen["y"] - seen["x"]).double() * branches).sum() / branches.pow(2).sum())


def decay_per_step(variant: str | None, lr: float) -> dict[str, float]:
    """The fraction each parameter shrinks in one AdamW step from all-ones weights and zero gradients
    (Adam's own update is then 0, so the shrink is lr x weight_decay); in float64 to resolve shrinks of 1e-5."""
    model = build(variant).double()
    optimizer = zoo.ZooGPT.configure_optimizer(model, lr)
    for p in model.parameters():
        p.data.fill_(1.0)
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return {name: round(1 - float(p.detach().mean()), 9) for name, p in model.named_parameters()}


def group_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict:
    (group,) = [g for g in optimizer.param_groups if any(p is param for p in g["params"])]
    return group


def given_logits() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(2, 5, zoo.VOCAB, generator=generator) + 4.0  # log Z far from 0
    return logits, torch.randint(zoo.VOCAB, (2, 5), generator=generator)


def without_qk_norms(by_name: dict[str, Any]) -> dict[str, Any]:
    """The entries of parameters every variant has (all but the qk-norm gains)."""
    return {name: value for name, value in by_name.items() if ".q_norm." not in name and ".k_norm." not in name}


def observe(variant: str | None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Everything a variant could change, measured at width 128 and depth 8."""
    model = build(variant)
    family = zoo.make(variant, n_layers=DEEP)
    optimizer = family.optimizer(model, LR)
    init = {name: p.detach().clone() for name, p in model.named_parameters()}
    return {
        "init": without_qk_norms(init),
        "qk_norm_gains": sorted(init.keys() - without_qk_norms(init).keys()),
        "readout_multiplier": readout_ratio(build(variant)),
        "attention_scale": attention_scales(model, monkeypatch),
        "branch_multiplier": round(branch_multiplier(model), 6),
        "hidden_lr": group_of(optimizer, model.blocks[0].mlp.up.weight)["lr"],
        "adam_eps": {g["eps"] for g in optimizer.param_groups},
        "betas": {g["betas"] for g in optimizer.param_groups},
        "decay_per_step": {lr: without_qk_norms(decay_per_step(variant, lr)) for lr in (1e-3, 1e-2)},
        "loss": float(family.loss(*given_logits())),
        "family": (family.name, family.base_width, family.widths, family.task.config()),
    }


@pytest.fixture(scope="module")
def clean_observed() -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return observe(None, monkeypatch)


def differences(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    def same(x: Any, y: Any) -> bool:
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        return torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y

    return {key for key in a if not same(a[key], b[key])}


def test_the_variants_are_the_eight_documented_mistakes() -> None:
    assert set(zoo.VARIANTS) == set(CHANGES)
    assert all(isinstance(text, str) and text for text in zoo.VARIANTS.values())
    for variant in zoo.VARIANTS:
        recipe = zoo.recipe_of(variant)
        flipped = [f for f in zoo.Recipe.__dataclass_fields__ if getattr(recipe, f) != getattr(zoo.CLEAN, f)]
        assert len(flipped) == 1, f"{variant} flips {flipped}"


@pytest.mark.parametrize("variant", sorted(CHANGES))
def test_each_variant_differs_from_the_clean_model_in_its_one_mistake(
        variant: str, clean_observed: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    assert differences(observe(variant, monkeypatch), clean_observed) == CHANGES[variant]


@pytest.mark.parametrize("width", [64, 128])
def test_readout_is_zero_at_init_and_scaled_by_1_over_m(width: int) -> None:
    with torch.no_grad():
        assert torch.equal(build(None, width)(tokens()), torch.zeros(2, zoo.SEQ_LEN, zoo.VOCAB))
    assert readout_ratio(build(None, width)) == pytest.approx(zoo.BASE_WIDTH / width, rel=1e-5)
    assert readout_ratio(build("no_readout_multiplier", width)) == pytest.approx(1.0, rel=1e-5)


def test_init_is_mup() -> None:
    model = build(None).requires_grad_(False)
    assert float(model.tok_embed.weight.std()) == pytest.approx(1.0, rel=0.05)
    assert float(model.pos_embed.weight.std()) == pytest.approx(1.0, rel=0.05)
    for block in model.blocks:
        assert not block.attn.query.weight.any(), "the query projection starts at zero"
        for matrix in (block.attn.key, block.attn.value, block.attn.out, block.mlp.up, block.mlp.down):
            assert float(matrix.weight.std()) == pytest.approx(matrix.in_features**-0.5, rel=0.05)
    assert not model.readout.weight.any(), "the readout starts at zero"
    assert all(bool((p == 1).all()) for p in model.parameters() if p.dim() == 1), "norm gains start at one"


@pytest.mark.parametrize("width", zoo.WIDTHS)
def test_attention_scale_is_mup_1_over_d(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    d_head = width // zoo.N_HEADS
    clean = attention_scales(build(None, width, n_layers=2), monkeypatch)
    default = attention_scales(build("attention_1_over_sqrt_d", width, n_layers=2), monkeypatch)
    assert clean == pytest.approx([zoo.ATTN_MULT / d_head] * 2)
    assert default == pytest.approx([d_head**-0.5] * 2)
    assert (clean == pytest.approx(default)) == (width == zoo.BASE_WIDTH), "the two scales agree at the base width only"


@pytest.mark.parametrize(("n_layers", "depth_factor"), [(2, 1.0), (8, 0.5)])
def test_hidden_lr_is_lr_over_m_times_the_depth_factor(n_layers: int, depth_factor: float) -> None:
    for variant, expected in [(None, LR / M * depth_factor), ("hidden_lr_unscaled", LR * depth_factor),
                              ("unscaled_residuals", LR / M)]:
        model = build(variant, n_layers=n_layers)
        optimizer = zoo.ZooGPT.configure_optimizer(model, LR)
        for block in model.blocks:
            attn, mlp = block.attn, block.mlp
            for matrix in (attn.query, attn.key, attn.value, attn.out, mlp.up, mlp.down):
                assert group_of(optimizer, matrix.weight)["lr"] == pytest.approx(expected), variant
        for param in (model.tok_embed.weight, model.pos_embed.weight, model.readout.weight,
                      model.final_norm.weight, model.blocks[0].attn.q_norm.weight):
            assert group_of(optimizer, param)["lr"] == LR, variant


def test_qk_layernorm_normalises_q_and_k_per_head(monkeypatch: pytest.MonkeyPatch) -> None:
    attn = build(None).blocks[0].attn
    assert isinstance(attn.q_norm, zoo.RMSNorm) and isinstance(attn.k_norm, zoo.RMSNorm)
    assert attn.q_norm.weight.shape == attn.k_norm.weight.shape == (WIDE // zoo.N_HEADS,)
    plain = build("no_qk_layernorm").blocks[0].attn
    assert isinstance(plain.q_norm, torch.nn.Identity) and isinstance(plain.k_norm, torch.nn.Identity)
    for variant, normalised in [(None, True), ("no_qk_layernorm", False)]:
        model = build(variant)
        with torch.no_grad():
            for block in model.blocks:  # a nonzero query, so q has a size to normalise
                block.attn.query.weight.copy_(block.attn.key.weight)
        for q, k, _ in sdpa_calls(model, monkeypatch):
            for x in (q, k):  # [batch, head, position, d_head]: unit RMS per head and position
                assert torch.allclose(x.pow(2).mean(-1), torch.ones(()), atol=1e-4) == normalised, variant


def test_attention_is_causal() -> None:
    model = build(None, 64, n_layers=2)
    with torch.no_grad():
        model.readout.weight.normal_(generator=torch.Generator().manual_seed(2))
        for block in model.blocks:
            block.attn.query.weight.copy_(block.attn.key.weight)
        x = tokens()
        changed = x.clone()
        changed[:, -1] = (changed[:, -1] + 1) % zoo.VOCAB
        before, after = model(x), model(changed)
    assert torch.equal(before[:, :-1], after[:, :-1]), "a later token changes no earlier logit"
    assert not torch.equal(before[:, -1], after[:, -1])


def test_rms_norm_gives_unit_rms_times_its_gain() -> None:
    norm = zoo.RMSNorm(16)
    with torch.no_grad():
        norm.weight.fill_(2.0)
    x = 5 * torch.randn(3, 16, generator=torch.Generator().manual_seed(4))
    assert norm(x).pow(2).mean(-1).sqrt().tolist() == pytest.approx([2.0] * 3, rel=1e-4)


def test_z_loss_adds_its_term_and_the_variant_is_plain_cross_entropy() -> None:
    logits, targets = given_logits()
    ce = F.cross_entropy(logits.reshape(-1, zoo.VOCAB), targets.reshape(-1))
    z = torch.logsumexp(logits, -1).pow(2).mean()
    assert float(zoo.make().loss(logits, targets)) == pytest.approx(float(ce + zoo.Z_LOSS * z), rel=1e-6)
    assert float(zoo.make("no_z_loss").loss(logits, targets)) == pytest.approx(float(ce), rel=1e-6)


def test_adam_eps_and_betas() -> None:
    for variant, eps in [(None, 1e-8), ("adam_eps_1e-3", 1e-3)]:
        optimizer = zoo.ZooGPT.configure_optimizer(build(variant, n_layers=2), LR)
        assert isinstance(optimizer, torch.optim.AdamW)
        assert {(g["eps"], g["betas"]) for g in optimizer.param_groups} == {(eps, (0.9, 0.95))}


def test_weight_decay_per_step_is_constant_unless_coupled() -> None:
    model = build(None)
    for lr in (1e-3, 1e-2):
        clean, coupled = decay_per_step(None, lr), decay_per_step("coupled_weight_decay", lr)
        for name, param in model.named_parameters():
            if param.dim() == 1:  # norm gains are not decayed
                assert clean[name] == coupled[name] == 0.0, name
            else:
                lr_group = group_of(model.configure_optimizer(lr), param)["lr"]
                assert clean[name] == pytest.approx(zoo.WEIGHT_DECAY_PER_STEP, rel=1e-3), name
                assert coupled[name] == pytest.approx(lr_group * zoo.WEIGHT_DECAY_COUPLED, rel=1e-3), name


@pytest.mark.parametrize(("n_layers", "clean_multiplier"), [(2, 1.0), (8, 0.5)])
def test_residual_branches_are_scaled_by_1_over_sqrt_depth(n_layers: int, clean_multiplier: float) -> None:
    assert branch_multiplier(build(None, 64, n_layers)) == pytest.approx(clean_multiplier, rel=1e-4)
    assert branch_multiplier(build("unscaled_residuals", 64, n_layers)) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("variant", [None, *sorted(CHANGES)])
@pytest.mark.parametrize("n_layers", [2, 8])
def test_every_variant_builds_at_every_width_and_depth(variant: str | None, n_layers: int) -> None:
    family = zoo.make(variant, n_layers=n_layers)
    for width in family.widths:
        model = family.build(width)
        assert len(model.blocks) == n_layers
        with torch.no_grad():
            assert model(tokens()).shape == (2, zoo.SEQ_LEN, zoo.VOCAB)
    roles = family.roles.by_role()
    assert roles["input"] == ["tok_embed.weight", "pos_embed.weight"]
    assert roles["output"] == ["readout.weight"]
    assert len(roles["hidden"]) == 6 * n_layers


@pytest.mark.parametrize("variant", [None, *sorted(CHANGES)])
def test_param_groups_cover_every_parameter_once(variant: str | None) -> None:
    model = build(variant, n_layers=2)
    grouped = [p for g in zoo.ZooGPT.configure_optimizer(model, LR).param_groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(list(model.parameters()))
    assert {id(p) for p in grouped} == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("variant", [None, "no_qk_layernorm"])
def test_at_depth_keeps_the_variant(variant: str | None) -> None:
    family = zoo.make(variant, name="mine")
    deeper = family.at_depth(8)
    assert deeper.name == "mine"
    model = deeper.build(32)
    assert len(model.blocks) == 8 and model.recipe == zoo.recipe_of(variant)
    assert len(deeper.at_depth(3).build(32).blocks) == 3


def test_variants_share_the_name_but_not_the_fingerprint() -> None:
    families = [zoo.make(v) for v in [None, *CHANGES]]
    assert {f.name for f in families} == {"zoo-gpt"}
    fingerprints = [f.fingerprint() for f in families]
    assert len(set(fingerprints)) == len(fingerprints)
    assert zoo.make().fingerprint() == fingerprints[0], "the fingerprint is stable"
    assert zoo.make(n_layers=8).fingerprint() != fingerprints[0]


def test_bad_arguments_name_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown zoo variant 'no_such'"):
        zoo.make("no_such")
    with pytest.raises(ValueError, match="n_layers must be a positive int"):
        zoo.make(n_layers=0)
    with pytest.raises(ValueError, match="positive multiple of 4"):
        zoo.make().build(30)


@pytest.mark.parametrize("variant", [None, "no_z_loss"])
def test_the_engine_trains_it_for_two_steps(variant: str | None) -> None:
    result = train_run(zoo.make(variant), 32, 1e-2, seed=0, steps=2, batch_size=4)
    assert len(result.losses) == 2 and not result.diverged
    assert result.losses[0] == pytest.approx(math.log(zoo.VOCAB), rel=1e-6), "a zero readout predicts uniformly"


def test_a_renamed_readout_trains_exactly_like_the_clean_model() -> None:
    clean, renamed = (train_run(zoo.make(v), 32, 1e-2, seed=0, steps=3, batch_size=4) for v in (None, "renamed_readout"))
    assert renamed.losses == clean.losses
    assert "head.weight" in dict(zoo.make("renamed_readout").build(32).named_parameters())


def test_reordered_parameters_draw_another_init_of_the_same_model() -> None:
    torch.manual_seed(0)
    clean = dict(zoo.make().build(32).named_parameters())
    torch.manual_seed(0)
    reordered = dict(zoo.make("reordered_parameters").build(32).named_parameters())
    assert set(clean) == set(reordered) and all(clean[n].shape == reordered[n].shape for n in clean)
    assert not torch.equal(clean["blocks.0.attn.key.weight"], reordered["blocks.0.attn.key.weight"])
    assert list(reordered).index("blocks.0.mlp.up.weight") < list(reordered).index("blocks.0.attn.key.weight")
    assert set(zoo.BENIGN) == {"renamed_readout", "reordered_parameters"} and not set(zoo.BENIGN) & set(zoo.VARIANTS)
