"""The parametrization engine: width roles, the abc table, and muP vs SP on real models."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from pytest_scaling import families, tasks
from pytest_scaling.family import FAN_DIMS, ModelFamily, infer_roles, register_fan_dims
from pytest_scaling.metrics import coord_slopes
from pytest_scaling.parametrization import PARAMETRIZATIONS, MATRIX_ROLES, Parametrization, with_depth_lr
from pytest_scaling.train import TrainConfig, train_run

COORD_WIDTHS = (64, 128, 256, 512, 1024)
COORD_STEPS = 3


class UserNet(nn.Module):
    """A model written by hand, not from our families: two hidden matrices and a readout."""

    def __init__(self, width: int, d_in: int = 16, n_out: int = 10):
        super().__init__()
        self.stem = nn.Linear(d_in, width)
        self.body = nn.Parameter(torch.randn(width, width) / width**0.5)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = torch.relu(self.norm(h @ self.body.T))
        return self.head(h)


def test_roles_of_builtin_mlp() -> None:
    roles = families.mlp(depth=3).roles.params
    assert roles["0.weight"].role == "input"
    assert roles["2.weight"].role == "hidden" and roles["4.weight"].role == "hidden"
    assert roles["6.weight"].role == "output"
    assert roles["0.bias"].role == "vector" and roles["6.bias"].role == "fixed"


def test_roles_of_builtin_gpt_and_tied_embeddings() -> None:
    roles = families.gpt().roles.params
    assert roles["tok_emb.weight"].role == "input" and roles["pos_emb.weight"].role == "input"
    assert roles["blocks.0.attn.qkv.weight"].role == "hidden"
    assert roles["lm_head.weight"].role == "output"
    assert roles["blocks.1.ln2.weight"].role == "vector"
    tied = families.gpt(tie_embeddings=True, parametrization="mup_table8").roles.params
    assert "lm_head.weight" not in tied
    assert tied["tok_emb.weight"].tied_uses == (("lm_head.weight", "output"),)


def test_tied_embeddings_need_one_lr_for_both_uses() -> None:
    family = families.gpt(tie_embeddings=True, parametrization="mup")
    with pytest.raises(ValueError, match="different LRs.*mup_table8"):
        family.instantiate(128, seed=0)
    model, _ = families.gpt(tie_embeddings=True, parametrization="mup_table8").instantiate(128, seed=0)
    assert model.lm_head._forward_pre_hooks, "the readout use of the tied weight gets the 1/m multiplier"


def test_user_module_roles() -> None:
    roles = infer_roles(UserNet, base_width=32).params
    assert [roles[n].role for n in ("stem.weight", "body", "head.weight", "norm.weight")] == ["input", "hidden", "output", "vector"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda w: nn.Linear(8, 8), "no parameter changes shape"),
        (lambda w: nn.Linear(8, 4096 // w), "a dimension must stay fixed or grow with width"),
        (lambda w: nn.Sequential(*[nn.Linear(w, w)] * (w // 32)), "different parameter set"),
        (lambda w: "not a module", "not a torch.nn.Module"),
    ],
)
def test_unusable_families_are_named(build, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        infer_roles(build, base_width=32)


class SwiGLU(nn.Module):
    """A Llama-style block: its hidden size 8·width//3 grows with width but not exactly (170 at 64, 341 at 128)."""

    def __init__(self, width: int, d_in: int = 16, n_out: int = 10):
        super().__init__()
        hidden = 8 * width // 3
        self.stem = nn.Linear(d_in, width)
        self.w1, self.w3 = nn.Linear(width, hidden, bias=False), nn.Linear(width, hidden, bias=False)
        self.w2 = nn.Linear(hidden, width, bias=False)
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(h + self.w2(nn.functional.silu(self.w1(h)) * self.w3(h)))


def test_a_dimension_that_grows_but_does_not_double_scales_and_sets_its_own_multiplier() -> None:
    family = ModelFamily("swiglu", SwiGLU, tasks.teacher_student(input_dim=16, n_classes=10), base_width=64,
                         parametrization="mup")
    roles = family.roles.params
    assert {roles[n].role for n in ("w1.weight", "w2.weight", "w3.weight")} == {"hidden"}
    assert roles["w2.weight"].multiplier_at((256, 682)) == 682 / 170  # its fan-in, not width / base width (4)
    model, groups = family.instantiate(256, seed=0)
    lr_mult = {id(p): g["lr_mult"] for g in groups for p in g["params"]}
    assert lr_mult[id(model.w2.weight)] == pytest.approx(170 / 682) and lr_mult[id(model.w1.weight)] == 0.25
    assert torch.std(model.w2.weight).item() == pytest.approx(roles["w2.weight"].base_std * (170 / 682) ** 0.5, rel=0.02)


class InOutLayer(nn.Module):
    """A layer that stores its weight as (in, out), as GPT-2's Conv1D does."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) / n_in**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


def test_a_registered_in_out_layer_has_its_fan_in_read_from_its_first_dimension() -> None:
    def build(width: int) -> nn.Module:
        return nn.Sequential(nn.Linear(16, width), InOutLayer(width, 4 * width), InOutLayer(4 * width, 10))

    assert infer_roles(build, base_width=32).params["2.weight"].role == "input"  # read as (out, in): wrong
    register_fan_dims(InOutLayer, fan_out_dim=1, fan_in_dim=0)
    try:
        roles = infer_roles(build, base_width=32).params
        assert roles["1.weight"].role == "hidden" and roles["2.weight"].role == "output"
        assert roles["1.weight"].multiplier_at((256, 1024)) == 8.0  # fan-in: dim 0
    finally:
        del FAN_DIMS["InOutLayer"]
    with pytest.raises(ValueError, match="fan dims must be 0 and 1"):
        register_fan_dims(InOutLayer, 1, 1)


def test_unknown_parametrization_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="unknown parametrization 'mupp'"):
        families.mlp(parametrization="mupp")


def test_mup_forms_are_one_parametrization() -> None:
    """Table 3, Table 8 and Everett's gauge differ by the abc symmetry (a+t, b-t, c-t):
    the effective init (a+b) and effective Adam update (a+c) exponents agree per role."""
    forms = [PARAMETRIZATIONS[n] for n in ("mup", "mup_table8", "mup_abc")]
    for role in MATRIX_ROLES:
        effective = {(f.exponents(role)[0] + f.exponents(role)[1], f.exponents(role)[0] + f.exponents(role)[2]) for f in forms}
        assert len(effective) == 1, role


def test_init_follows_the_table() -> None:
    family = families.mlp(parametrization="mup")
    base = family.roles.params
    model, groups = family.instantiate(1024, seed=0)
    m = 1024 / family.base_width
    assert torch.std(model[2].weight).item() == pytest.approx(base["2.weight"].base_std / m**0.5, rel=0.02)
    assert torch.std(model[6].weight).item() == pytest.approx(base["6.weight"].base_std / m, rel=0.05)
    lr_mult = {g["role"]: g["lr_mult"] for g in groups}
    assert lr_mult == {"input": 1.0, "vector": 1.0, "hidden": 1 / m, "output": 1 / m, "fixed": 1.0}


def test_per_layer_constants_multiply_the_lr() -> None:
    p = Parametrization("sp_tuned", a=(0, 0, 0), b=(0, 0.5, 0.5), c=(0, 1, 1), lr_scale={"output": 0.25})
    _, groups = families.mlp(parametrization=p).instantiate(128, seed=0)
    assert {g["role"]: g["lr_mult"] for g in groups}["output"] == pytest.approx(0.25 / 2)


def test_depth_mup_scales_the_blocks_lr_and_branches() -> None:
    """Depth-μP at 8 layers over a base depth of 2: branches × 1/√8, hidden matrices' LR × (8/2)^-1/2, the rest as μP."""
    task = tasks.markov_language(vocab=32, seq_len=16)
    family = families.gpt(parametrization="mup", task=task, n_layers=8, residual_scale="depth-mup")
    model, groups = family.instantiate(128, seed=0)
    assert family.name == "gpt-L8-mup-depth4-sqrtL" and model.blocks[3].branch_mult == pytest.approx(8**-0.5)
    assert {g["role"]: g["lr_mult"] for g in groups} == {"input": 1.0, "vector": 1.0, "hidden": pytest.approx(0.5 / 2),
                                                        "output": 0.5}
    shallow = families.gpt(parametrization="mup", task=task, n_layers=8, residual_scale="1/sqrt(L)")
    assert {g["role"]: g["lr_mult"] for g in shallow.instantiate(128, seed=0)[1]}["hidden"] == 0.5


def test_depth_lr_composes_with_per_layer_constants() -> None:
    p = with_depth_lr(Parametrization("tuned", a=(0, 0, 0), b=(0, 0.5, 1), c=(0, 1, 1), lr_scale={"hidden": 3.0}), 9.0)
    assert p.name == "tuned-depth9" and p.lr_scale == {"hidden": 1.0}
    with pytest.raises(ValueError, match="depth_multiplier must be positive"):
        with_depth_lr("mup", 0.0)
    with pytest.raises(ValueError, match="give one"):
        families.gpt(parametrization=None, residual_scale="depth-mup")
    with pytest.raises(ValueError, match="base_depth must be >= 1"):
        families.gpt(residual_scale="depth-mup", base_depth=0)


def _output_slope(family: ModelFamily, lr: float, batch_size: int) -> np.ndarray:
    """Slope of log mean|logits| vs log width at steps 0..COORD_STEPS."""
    config = TrainConfig(
        steps=COORD_STEPS + 1, batch_size=batch_size, probe_steps=tuple(range(COORD_STEPS + 1)), probe_kinds=("activation",)
    )
    output_layer = [n for n, p in family.roles.params.items() if p.role == "output"][0].rpartition(".")[0]
    sizes = [train_run(family, w, lr, seed=0, config=config).probes["activation"][output_layer] for w in COORD_WIDTHS]
    return coord_slopes(list(COORD_WIDTHS), np.array(sizes).T[None]).slopes[0]


def _user_family(parametrization: str) -> ModelFamily:
    task = tasks.teacher_student(input_dim=16, n_classes=10)
    return ModelFamily("user-net", functools.partial(UserNet, d_in=16, n_out=10), task, base_width=64, parametrization=parametrization)


FAMILIES = {
    "mlp": lambda p: families.mlp(parametrization=p),
    "gpt": lambda p: families.gpt(parametrization=p, task=tasks.markov_language(vocab=32, seq_len=16)),
    "user": _user_family,
}


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_output_logits_grow_with_width_under_sp_and_stay_flat_under_mup(kind: str) -> None:
    batch = 8 if kind == "gpt" else 64
    sp = _output_slope(FAMILIES[kind]("sp"), lr=1e-2, batch_size=batch)
    mup = _output_slope(FAMILIES[kind]("mup"), lr=1e-2, batch_size=batch)
    # At step 0 muP logits shrink like m^-1/2 by design (readout variance 1/fan_in^2); the
    # property is that training does not make them grow: flat once updates dominate.
    assert sp[COORD_STEPS] >= 0.5, f"SP output slope after {COORD_STEPS} steps: {sp}"
    assert abs(mup[COORD_STEPS]) <= 0.15, f"muP output slopes per step: {mup}"
