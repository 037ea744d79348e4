"""The population's families: they build and train at every width, are muP by construction, and a planted family
differs from its clean spec in its one mistake only."""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections import Counter
from typing import Any
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples import population as P

EXAMPLES = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ANY_SPEC = st.one_of(P.clean_specs(), P.planted_specs())
LR = 1.0  # group LRs then read as multiples of the base LR


def tokens(spec: P.Spec, batch: int = 2) -> torch.Tensor:
    return torch.randint(spec.vocab, (batch, spec.seq_len), generator=torch.Generator().manual_seed(1))


def build(spec: P.Spec, width: int, seed: int = 0) -> P.PopulationGPT:
    torch.manual_seed(seed)
    return P.family(spec).build(width)


def group_of(optimizer: torch.optim.Optimizer, parameter: torch.Tensor) -> dict:
    return next(g for g in optimizer.param_groups if any(p is parameter for p in g["params"]))


def a_hidden_matrix(model: P.PopulationGPT) -> torch.Tensor:
    return next(p for p in model.blocks[0].mlp.parameters() if p.dim() == 2)


def readout_multiplier(model: P.PopulationGPT, spec: P.Spec) -> float:
    """logits / (h W^T) with h the final norm's output and W a random readout: the readout's forward multiplier."""
    with torch.no_grad():
        if not model.tied:
            model.readout_layer.weight.normal_(generator=torch.Generator().manual_seed(2))
    seen: list[torch.Tensor] = []
    handle = model.final_norm.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():
        logits = model(tokens(spec))
    handle.remove()
    with torch.no_grad():
        ratio = logits / F.linear(seen[0], model.readout_weight())
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-3), "one scalar multiplier"
    return float(ratio.flatten()[0])


def observe(spec: P.Spec, width: int, n_layers: int | None = None) -> dict[str, Any]:
    """What a mistake can change, read off the model and optimizer built at ``width``."""
    if n_layers is not None:
        spec = dataclasses.replace(spec, n_layers=n_layers)
    family = P.family(spec)
    model = build(spec, width)
    optimizer = family.optimizer(model, LR)
    embed = model.tok_embed.weight
    matrices = [embed, a_hidden_matrix(model)] + ([] if model.tied else [model.readout_layer.weight])
    attn = model.blocks[0].attn
    obs = {
        "embed_std": round(float(embed.detach().std()), 1),
        "hidden_lr": group_of(optimizer, a_hidden_matrix(model))["lr"],
        "readout_lr": None if model.tied else group_of(optimizer, model.readout_layer.weight)["lr"],
        "readout_multiplier": model.readout_multiplier,
        "attention_scale": attn.scale,
        "eps": optimizer.defaults["eps"],
        "decay_per_step": tuple(round(group_of(optimizer, p)["lr"] * group_of(optimizer, p)["weight_decay"], 12)
                                for p in matrices),
        "branch_mult": model.blocks[0].branch_mult,
    }
    return obs


def mean_abs_logit(spec: P.Spec, width: int) -> float:
    model = build(spec, width)
    with torch.no_grad():
        return float(model(tokens(spec)).abs().mean())


@EXAMPLES
@given(ANY_SPEC)
def test_builds_runs_and_steps(spec: P.Spec) -> None:
    family = P.family(spec)
    assert family.name == f"pop-{P.spec_id(spec)}" and family.base_width == spec.base_width
    for width in (spec.base_width, 2 * spec.base_width, 4 * spec.base_width):
        model = build(spec, width)
        logits = model(tokens(spec))
        assert logits.shape == (2, spec.seq_len, spec.vocab) and torch.isfinite(logits).all()
        optimizer = family.optimizer(model, 1e-2)
        assert isinstance(optimizer, torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam)
        assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
        loss = family.loss(logits, tokens(spec))
        loss.backward()
        optimizer.step()
        assert torch.isfinite(model(tokens(spec))).all()
    # Causal: changing the last token changes no earlier position's logits.
    model = build(spec, spec.base_width)
    with torch.no_grad():
        model.readout_weight().normal_(generator=torch.Generator().manual_seed(4))  # a zero readout hides everything
        x = tokens(spec)
        changed = x.clone()
        changed[:, -1] = (changed[:, -1] + 1) % spec.vocab
        before, after = model(x), model(changed)
    assert torch.allclose(before[:, :-1], after[:, :-1], atol=1e-5) and not torch.allclose(before[:, -1], after[:, -1])
    roles = family.roles.by_role()
    assert roles["input"] and roles["hidden"]
    assert len(roles["output"]) == (0 if spec.readout == "tied" else 1)


@EXAMPLES
@given(ANY_SPEC)
def test_every_width_builds(spec: P.Spec) -> None:
    """base_width x each WIDTH_MULTIPLES (0.5 to 16) builds and runs, shapes only (on the meta device)."""
    for width in spec.widths():
        with torch.device("meta"):
            model = P.family(spec).build(width)
            logits = model(torch.zeros(2, spec.seq_len, dtype=torch.long))
        assert logits.shape == (2, spec.seq_len, spec.vocab)
        if spec.mlp == "swiglu":
            hidden = model.blocks[0].mlp.gate.out_features
            assert hidden % spec.multiple_of == 0 and hidden >= 8 * width / 3


FEW = settings(EXAMPLES, max_examples=3)


@EXAMPLES
@given(P.clean_specs())
def test_clean_is_mup_by_construction(spec: P.Spec) -> None:
    check_mup(spec)


@pytest.mark.parametrize("mistake", list(P.MISTAKES))
@FEW
@given(data=st.data())
def test_planted_breaks_mup_as_its_mistake_says(mistake: str, data: st.DataObject) -> None:
    check_mup(data.draw(P.planted_specs(mistakes=(mistake,))))


def check_mup(spec: P.Spec) -> None:
    """muP's rules, read at the base width and 4x it; a planted spec breaks exactly the rule its mistake names."""
    base, wide = spec.base_width, 4 * spec.base_width
    m = wide / base
    at_base, at_wide = observe(spec, base), observe(spec, wide)
    mistake = spec.mistake

    # (a) logits at init: exactly 0 with a zero readout, else shrinking with width.
    if spec.readout == "untied_zero":
        assert mean_abs_logit(spec, base) == 0.0 and mean_abs_logit(spec, wide) == 0.0
    elif mistake != "no_readout_multiplier":
        assert mean_abs_logit(spec, wide) / mean_abs_logit(spec, base) < 0.8

    if spec.readout == "untied_small" and mistake != "no_readout_multiplier":
        for width in (base, wide):  # multiplier x weight has std 1/fan_in (variance 1/fan_in^2)
            model = build(spec, width)
            effective = float(model.readout_layer.weight.detach().std()) * model.readout_multiplier
            assert effective == pytest.approx(1 / width, rel=0.1)

    # (b) hidden matrices' LR: eta / m.
    hidden_ratio = at_wide["hidden_lr"] / at_base["hidden_lr"]
    assert hidden_ratio == pytest.approx(1.0 if mistake == "hidden_lr_unscaled" else 1 / m)

    # (c) the readout's 1/m: a forward multiplier (untied "forward", tied) or the readout's LR (untied "lr").
    multiplier_ratio = readout_multiplier(build(spec, wide), spec) / readout_multiplier(build(spec, base), spec)
    forward_form = spec.readout == "tied" or spec.readout_mult == "forward"
    unscaled = mistake == "no_readout_multiplier"
    assert multiplier_ratio == pytest.approx(1 / m if forward_form and not unscaled else 1.0, rel=1e-3)
    if spec.readout != "tied":
        readout_ratio = at_wide["readout_lr"] / at_base["readout_lr"]
        assert readout_ratio == pytest.approx(1 / m if not forward_form and not unscaled else 1.0)

    # (d) attention logits scaled by c / d_head (1/sqrt(d_head) at the base width).
    n_heads, d_head = P.head_layout(spec, wide)
    base_d_head = P.head_layout(spec, base)[1]
    assert at_base["attention_scale"] == pytest.approx(base_d_head**-0.5)
    expected = d_head**-0.5 if mistake == "attention_1_over_sqrt_d" else math.sqrt(base_d_head) / d_head
    assert at_wide["attention_scale"] == pytest.approx(expected)
    attn = build(spec, wide).blocks[0].attn
    x = torch.randn(1, 4, wide, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        attn.query_weight().normal_(std=wide**-0.5)  # a zero query would hide the scale
    if spec.attention == "mha":
        # MHA scales q.k by 1/sqrt(d_head) itself; the query it is given carries the rest of the scale.
        queries: list[torch.Tensor] = []
        handle = attn.mha.register_forward_pre_hook(lambda module, args, kwargs: queries.append(args[0]),
                                                    with_kwargs=True)
        with torch.no_grad():
            attn(x)
        handle.remove()
        assert torch.allclose(queries[0], x * (expected * math.sqrt(d_head)))
    else:
        # The SDPA form's scale as the call receives it; hand-written attention must compute the same output.
        via_sdpa = attn
        if spec.attention == "manual":
            via_sdpa = P.CausalSelfAttention(wide, dataclasses.replace(spec, attention="sdpa"))
            via_sdpa.load_state_dict(attn.state_dict())
        scales: list[float] = []
        sdpa = F.scaled_dot_product_attention

        def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            scale = kwargs.get("scale")
            scales.append(q.shape[-1] ** -0.5 if scale is None else scale)
            return sdpa(q, k, v, **kwargs)

        with mock.patch.object(F, "scaled_dot_product_attention", spy), torch.no_grad():
            reference = via_sdpa(x)
        assert scales == [pytest.approx(expected)]
        if spec.attention == "manual":
            with torch.no_grad():
                assert torch.allclose(attn(x), reference, atol=1e-5)

    # (e) embeddings N(0, 1); the mistake's std width^-1/2.
    for width, obs in ((base, at_base), (wide, at_wide)):
        target = width**-0.5 if mistake == "input_init_shrinking" else 1.0
        assert obs["embed_std"] == pytest.approx(target, rel=0.15, abs=0.05)

    # Weight decay: every matrix's per-step shrink is the same at both widths (coupled decay: the hidden one falls).
    if spec.decay == "none":
        assert set(at_base["decay_per_step"]) == {0.0} and at_base["decay_per_step"] == at_wide["decay_per_step"]
    elif mistake == "coupled_decay":
        assert at_wide["decay_per_step"][1] == pytest.approx(at_base["decay_per_step"][1] / m)
    else:
        assert at_wide["decay_per_step"] == pytest.approx(at_base["decay_per_step"])
        assert len(set(at_base["decay_per_step"])) == 1
    assert at_base["eps"] == (P.LARGE_EPS if mistake == "large_eps" else spec.eps)


def expected_changes(spec: P.Spec) -> set[str]:
    """The observables a planted mistake changes (at a width and depth above the base)."""
    return {
        "no_readout_multiplier": {"readout_lr"} if spec.readout_mult == "lr" and spec.readout != "tied"
        else {"readout_multiplier"},
        "attention_1_over_sqrt_d": {"attention_scale"},
        "hidden_lr_unscaled": {"hidden_lr"},
        "input_init_shrinking": {"embed_std"},
        "coupled_decay": {"decay_per_step"},
        "large_eps": {"eps"},
        "unscaled_residuals": {"branch_mult", "hidden_lr"},
    }[spec.mistake]


@pytest.mark.parametrize("mistake", list(P.MISTAKES))
@FEW
@given(data=st.data())
def test_planted_differs_from_clean_in_its_mistake_only(mistake: str, data: st.DataObject) -> None:
    spec = data.draw(P.planted_specs(mistakes=(mistake,)))
    clean = dataclasses.replace(spec, mistake=None)
    differing = [f.name for f in dataclasses.fields(P.Spec) if getattr(spec, f.name) != getattr(clean, f.name)]
    assert differing == ["mistake"]
    assert P.applicable(clean.check(), spec.mistake)
    width, depth = 2 * spec.base_width, 4
    planted_obs, clean_obs = observe(spec, width, depth), observe(clean, width, depth)
    changed = {k for k in planted_obs if planted_obs[k] != clean_obs[k]}
    assert changed == expected_changes(spec)
    # Same seed, same initial weights, except the embeddings the init mistake shrinks.
    planted_model = build(dataclasses.replace(spec, n_layers=depth), width)
    clean_model = build(dataclasses.replace(clean, n_layers=depth), width)
    clean_params = dict(clean_model.named_parameters())
    differ = {n for n, p in planted_model.named_parameters() if not torch.equal(p, clean_params[n])}
    embeddings = {"tok_embed.weight", "pos_embed.weight"} & clean_params.keys()
    assert differ == (embeddings if spec.mistake == "input_init_shrinking" else set())
    # At the base depth the Depth-muP mistake is a no-op.
    if spec.mistake == "unscaled_residuals":
        assert observe(spec, width) == observe(clean, width)


def test_population_is_reproducible_and_covers_every_choice() -> None:
    clean = P.draw_population(30, seed=0, strategy=P.clean_specs())
    assert clean == P.draw_population(30, seed=0, strategy=P.clean_specs())
    assert clean != P.draw_population(30, seed=1, strategy=P.clean_specs())
    assert len(set(clean)) == 30 and all(s.mistake is None for s in clean)
    for name in ("base_width", "vocab", "norm", "norm_gain", "mlp", "attention", "positions", "heads", "readout",
                 "readout_mult", "query_zero", "qk_norm", "fused_qkv", "optimizer", "decay", "eps", "beta2"):
        drawn = {getattr(s, name) for s in clean}
        missing = [v for v in P.CHOICES[name] if v not in drawn and not (v is None)]
        assert not missing, f"{name}: {missing} never drawn"
    assert {s.z_loss for s in clean} == set(P.CHOICES["z_loss"])

    planted = P.draw_population(30, seed=0, strategy=P.planted_specs())
    assert planted == P.draw_population(30, seed=0, strategy=P.planted_specs())
    assert len(set(planted)) == 30
    counts = Counter(s.mistake for s in planted)
    assert set(counts) == set(P.MISTAKES) and min(counts.values()) >= 2, counts
    for spec in planted:
        assert P.applicable(dataclasses.replace(spec, mistake=None), spec.mistake)


def test_family_pickles_and_fingerprints() -> None:
    specs = [P.Spec(), P.Spec(attention="mha", fused_qkv=True, positions="none", readout="tied", mlp="swiglu",
                              multiple_of=16, heads="size_fixed", d_head=8, mistake="no_readout_multiplier")]
    for spec in specs:
        family = P.family(spec)
        build, optimizer, loss = (pickle.loads(pickle.dumps(x)) for x in (family.build, family.optimizer, family.loss))
        torch.manual_seed(0)
        model = build(spec.base_width)
        torch.manual_seed(0)
        original = family.build(spec.base_width)
        for (name, p), q in zip(model.named_parameters(), original.parameters()):
            assert torch.equal(p, q), name
        assert [g["lr"] for g in optimizer(model, 0.1).param_groups] == \
               [g["lr"] for g in family.optimizer(original, 0.1).param_groups]
        logits = model(tokens(spec))
        assert torch.equal(loss(logits, tokens(spec)), family.loss(logits, tokens(spec)))
        assert isinstance(family.fingerprint(), str)
        deeper = pickle.loads(pickle.dumps(family.at_depth))(4)
        assert deeper.build.keywords["spec"] == dataclasses.replace(spec, n_layers=4)
    assert P.family(specs[0]).fingerprint() == P.family(P.Spec()).fingerprint()
    assert P.family(specs[0]).fingerprint() != P.family(dataclasses.replace(specs[0], z_loss=1e-4)).fingerprint()


@pytest.mark.parametrize("fields", [
    {"optimizer": "adam", "decay": "independent"},
    {"attention": "mha", "fused_qkv": True, "positions": "rotary"},
    {"attention": "mha", "fused_qkv": True, "qk_norm": True},
    {"attention": "mha", "fused_qkv": False},
    {"readout": "tied", "readout_mult": "lr"},
    {"heads": "size_fixed", "d_head": 16},  # base 32 x 0.75 = 24 does not split into heads of 16
    {"heads": "size_fixed"},
    {"d_head": 8},
    {"mlp": "swiglu"},
    {"multiple_of": 8},
    {"norm": "batchnorm"},
    {"heads": "size_fixed", "d_head": 8, "mistake": "attention_1_over_sqrt_d"},  # not a mistake with a fixed head size
    {"decay": "none", "mistake": "coupled_decay"},
    {"mistake": "no_such_mistake"},
    {"base_width": 30},
])
def test_check_rejects_inconsistent_specs(fields: dict) -> None:
    with pytest.raises(ValueError):
        P.Spec(**fields).check()
    with pytest.raises(ValueError):
        P.family(P.Spec(**fields))


def test_rotary_logits_depend_on_relative_position_only() -> None:
    q = torch.randn(1, 1, 1, 8).expand(1, 1, 6, 8)
    k = torch.randn(1, 1, 1, 8).expand(1, 1, 6, 8)
    logits = P.rotate(q) @ P.rotate(k).transpose(-2, -1)
    for offset in range(-5, 6):
        diagonal = torch.diagonal(logits[0, 0], offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-5)
    assert not torch.allclose(torch.diagonal(logits[0, 0], 0)[0], torch.diagonal(logits[0, 0], 1)[0])
    assert torch.allclose(P.rotate(q)[..., 0, :], q[..., 0, :])  # position 0 is not rotated


def test_describe_and_loss() -> None:
    assert P.describe(P.Spec()) == "clean"
    line = P.describe(P.Spec(base_width=64, z_loss=1e-3, mistake="large_eps"))
    assert line == "mistake=large_eps base_width=64 z_loss=0.001"
    logits, targets = torch.randn(2, 3, 5), torch.randint(5, (2, 3))
    ce = F.cross_entropy(logits.reshape(-1, 5), targets.reshape(-1))
    assert torch.allclose(P.PopulationLoss(0.0)(logits, targets), ce)
    z = torch.logsumexp(logits, -1).pow(2).mean()
    assert torch.allclose(P.PopulationLoss(1e-2)(logits, targets), ce + 1e-2 * z)
    assert set(P.LITERATURE_PROPERTY) == set(P.MISTAKES)
