"""abc-parametrizations (Everett et al. 2024) as data: init scales, forward multipliers, per-layer LR.

Every parameter gets a role (input, hidden, output, vector, fixed; see ``family.infer_roles``).
With width multiplier ``m = width / base_width``, a matrix of role r is trained as
``W = m^(-a_r) * w`` with ``w ~ N(0, (sigma_base * m^(-b_r))^2)`` and Adam LR ``eta * m^(-c_r)``,
where ``sigma_base`` is the parameter's own init std at the base width. At ``m = 1`` every
parametrization is the model as written; they differ only in how they scale away from it.
A parametrization is therefore one row of numbers, not a code path.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from .roles import Role, WidthRoles

MATRIX_ROLES: tuple[Role, ...] = ("input", "hidden", "output")


@dataclass(frozen=True)
class Parametrization:
    """One row of the abc table: exponents (a, b, c) for (input, hidden, output) matrices.

    ``a``: forward multiplier ``m^-a``; ``b``: init std ``sigma_base * m^-b``; ``c``: Adam LR
    ``eta * m^-c``. Vectors (biases, norm gains) keep their base-width init and get the input
    row's effective LR exponent ``a + c`` (they carry no multiplier); parameters of fixed shape
    keep their init and the base LR. ``lr_scale`` holds the
    per-role constants gamma_l ("SP + per-layer constants"), tuned once at base width.
    ``zero_readout`` initialises output matrices at zero (allowed under muP).
    """

    name: str
    a: tuple[float, float, float]
    b: tuple[float, float, float]
    c: tuple[float, float, float]
    lr_scale: Mapping[str, float] = field(default_factory=dict)
    zero_readout: bool = False

    def exponents(self, role: Role) -> tuple[float, float, float]:
        """(a, b, c) for a role; vectors scale their LR like input weights, fixed params not at all."""
        if role in MATRIX_ROLES:
            i = MATRIX_ROLES.index(role)
            return self.a[i], self.b[i], self.c[i]
        if role == "vector":
            return 0.0, 0.0, self.a[0] + self.c[0]
        return 0.0, 0.0, 0.0

    def multiplier(self, role: Role, m: float) -> float:
        return m ** -self.exponents(role)[0]

    def init_scale(self, role: Role, m: float) -> float:
        return m ** -self.exponents(role)[1]

    def lr_mult(self, role: Role, m: float) -> float:
        return self.lr_scale.get(role, 1.0) * m ** -self.exponents(role)[2]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "a": list(self.a),
            "b": list(self.b),
            "c": list(self.c),
            "lr_scale": dict(sorted(self.lr_scale.items())),
            "zero_readout": self.zero_readout,
        }


_H = 0.5
PARAMETRIZATIONS: dict[str, Parametrization] = {
    p.name: p
    for p in (
        # PyTorch-default init (std ~ 1/sqrt(fan_in)), one global LR: the usual baseline.
        Parametrization("sp", a=(0, 0, 0), b=(0, _H, _H), c=(0, 0, 0)),
        # SP with Everett et al.'s full-alignment per-layer LR exponents.
        Parametrization("sp_perlayer", a=(0, 0, 0), b=(0, _H, _H), c=(0, 1, 1)),
        Parametrization("ntk", a=(0, _H, _H), b=(0, 0, 0), c=(0, _H, _H)),
        # muP, Tensor Programs V Table 3: readout var 1/fan_in^2, hidden and readout LR eta/m.
        Parametrization("mup", a=(0, 0, 0), b=(0, _H, 1), c=(0, 1, 1)),
        # muP, Table 8 form: Theta(1) readout init with a 1/m forward multiplier (allows tying).
        Parametrization("mup_table8", a=(0, 0, 1), b=(0, _H, 0), c=(0, 1, 0)),
        # muP in Everett et al.'s gauge (input multiplier sqrt(m)).
        Parametrization("mup_abc", a=(-_H, 0, _H), b=(_H, _H, _H), c=(_H, 1, _H)),
        Parametrization("mfp", a=(0, _H, 1), b=(0, 0, 0), c=(0, _H, 0)),
    )
}


def get_parametrization(p: str | Parametrization) -> Parametrization:
    """Look a parametrization up by name (``"sp"``, ``"mup"``, ...) or pass one through."""
    if isinstance(p, Parametrization):
        return p
    try:
        return PARAMETRIZATIONS[p]
    except KeyError:
        raise ValueError(
            f"unknown parametrization {p!r}; choose one of {sorted(PARAMETRIZATIONS)} or pass a Parametrization"
        ) from None


def with_depth_lr(parametrization: str | Parametrization, depth_multiplier: float) -> Parametrization:
    """Depth-μP's LR rule for Adam (Yang et al. 2023; CompleteP's alpha = 1/2): with residual branches scaled by
    1/√L, the blocks' hidden matrices train at LR × (L / L_base)^-1/2, so that L branches' updates add up to a
    depth-independent change of the residual stream. ``depth_multiplier`` is L / L_base."""
    if not depth_multiplier > 0:
        raise ValueError(f"depth_multiplier must be positive, got {depth_multiplier}")
    p = get_parametrization(parametrization)
    scale = dict(p.lr_scale)
    scale["hidden"] = scale.get("hidden", 1.0) * depth_multiplier**-0.5
    return dataclasses.replace(p, name=f"{p.name}-depth{depth_multiplier:g}", lr_scale=scale)


def with_zero_readout(parametrization: str | Parametrization) -> Parametrization:
    """The parametrization with its output matrices initialised at zero (Tensor Programs V's practice for μP). Table 3's
    random readout (variance 1/fan_in²) vanishes only in the limit; at the small widths a CPU affords, the low-LR flank
    of the GPT's loss-vs-LR curve then moves with width (benchmarks/RESULTS.md, "GPT LR transfer"). At zero, every
    width starts from the same uniform prediction."""
    p = get_parametrization(parametrization)
    return dataclasses.replace(p, name=f"{p.name}-zero-readout", zero_readout=True)


class _InputScale(nn.Module):
    """Forward pre-hook: scaling a Linear's input by k is exactly scaling its weight by k."""

    def __init__(self, k: float):
        super().__init__()
        self.k = k

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (args[0] * self.k,) + tuple(args[1:])


class _OutputScale(nn.Module):
    """Forward hook for bias-free lookups (Embedding): output * k equals weight * k."""

    def __init__(self, k: float):
        super().__init__()
        self.k = k

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * self.k


def _attach_multiplier(module: nn.Module, name: str, k: float) -> None:
    # GPT-2's Conv1D computes x @ W + b as nn.Linear computes x @ W.T + b: scaling its input scales W alone.
    if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
        module.register_forward_pre_hook(_InputScale(k))
    elif isinstance(module, nn.Embedding):
        module.register_forward_hook(_OutputScale(k))
    else:
        raise ValueError(
            f"parameter {name!r} needs a forward multiplier of {k:.4g}, which is supported on nn.Linear, "
            f"nn.Embedding and Conv1D only, not {type(module).__name__}; use a parametrization whose "
            "a-exponents are zero for this role (e.g. 'mup', Table 3 form)"
        )


def _check_tied_lr(p: Parametrization, name: str, role: Role, use_name: str, use_role: Role, m: float) -> None:
    """A tied tensor has one LR, so all its uses must agree on it."""
    if use_name != name and not math.isclose(p.lr_mult(role, m), p.lr_mult(use_role, m)):
        raise ValueError(
            f"{name!r} is tied to {use_name!r} ({role} and {use_role} roles), but parametrization "
            f"{p.name!r} gives those roles different LRs; use one whose rows share c (e.g. 'mup_table8')"
        )


def apply_parametrization(
    model: nn.Module,
    roles: WidthRoles,
    parametrization: str | Parametrization,
    width: int,
    generator: torch.Generator,
) -> list[dict]:
    """Re-initialise ``model`` (built at ``width``) and attach multipliers; return Adam param groups.

    Each returned group has ``params``, ``lr_mult`` (the factor on the base LR) and ``role``. A parameter's width
    multiplier is its own (``ParamRole.multiplier_at``: the actual fan-in ratio where a dimension does not grow exactly
    with width), else width / base width.
    """
    p = get_parametrization(parametrization)
    m = width / roles.base_width
    modules = dict(model.named_modules())
    groups: dict[tuple[Role, float], list[nn.Parameter]] = {}
    with torch.no_grad():
        for name, param in model.named_parameters():
            info = roles.params.get(name)
            if info is None:
                raise ValueError(f"parameter {name!r} was not present when the family's width roles were inferred")
            role, m_param = info.role, info.multiplier_at(param.shape) or m
            if role == "output" and p.zero_readout:
                param.zero_()
            elif role != "fixed" and info.base_std > 0:
                param.normal_(0.0, 1.0, generator=generator).mul_(info.base_std * p.init_scale(role, m_param))
            for use_name, use_role in ((name, role), *info.tied_uses):
                _check_tied_lr(p, name, role, use_name, use_role, m_param)
                k = p.multiplier(use_role, m_param)
                if not math.isclose(k, 1.0):
                    _attach_multiplier(modules[use_name.rpartition(".")[0]], use_name, k)
            groups.setdefault((role, p.lr_mult(role, m_param)), []).append(param)
    return [{"params": ps, "lr_mult": mult, "role": role} for (role, mult), ps in groups.items()]
