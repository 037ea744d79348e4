"""Width roles of a family's parameters, inferred from shapes.

Roles come from shapes, as ``mup``'s base shapes do: the family is built at its base width and
at twice that, and each parameter dimension that grows "scales with width" (doubling, or not
exactly: a SwiGLU hidden size of 8·width//3, or one rounded up to a multiple, grows too). A matrix whose
fan-out and fan-in both scale is *hidden*; only fan-out, *input*; only fan-in, *output*
(readout). A vector that scales is a *vector* (bias, norm gain); anything else is *fixed*.
Which dimension of a matrix is its fan-in depends on the layer that owns it (``FAN_DIMS``): raw parameters and
``nn.Linear`` are (out, in); ``nn.Embedding`` and GPT-2's ``Conv1D`` are (in, out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Mapping

import torch
from torch import nn

Role = Literal["input", "hidden", "output", "vector", "fixed"]
ROLES: tuple[str, ...] = ("input", "hidden", "output", "vector", "fixed")


@dataclass(frozen=True)
class ParamRole:
    """What one parameter is, seen across widths."""

    role: Role
    base_shape: tuple[int, ...]
    scaling_dims: tuple[int, ...]
    base_std: float
    # Other names of the same tensor (weight tying), each with the role that use would have.
    tied_uses: tuple[tuple[str, Role], ...] = ()
    # The dimension whose growth is the parameter's width multiplier: the fan-in of a matrix whose fan-in scales, else
    # its scaling fan-out; a vector's one dimension; None for a fixed parameter.
    width_dim: int | None = None

    def multiplier_at(self, shape: tuple[int, ...] | torch.Size) -> float | None:
        """The width multiplier m of this parameter at ``shape``: its width dimension over the base's (the actual
        fan-in ratio where a dimension does not grow exactly with width); None for a fixed parameter."""
        if self.width_dim is None:
            return None
        return shape[self.width_dim] / self.base_shape[self.width_dim]


@dataclass(frozen=True)
class WidthRoles:
    base_width: int
    params: Mapping[str, ParamRole]

    def by_role(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {r: [] for r in ROLES}
        for name, info in self.params.items():
            out[info.role].append(name)
        return out


#: (fan_out dim, fan_in dim) of the weight matrix of a layer class, by class name (so that a class from a library that
#: is not installed can be named); any other owner is (out, in), as ``nn.Linear`` and a raw ``nn.Parameter``.
FAN_DIMS: dict[str, tuple[int, int]] = {"Embedding": (1, 0), "Conv1D": (1, 0)}


def register_fan_dims(layer: type | str, fan_out_dim: int, fan_in_dim: int) -> None:
    """Declare which dimensions of ``layer``'s weight are its fan-out and fan-in (e.g. a layer storing (in, out))."""
    if sorted((fan_out_dim, fan_in_dim)) != [0, 1]:
        raise ValueError(f"fan dims must be 0 and 1 in some order, got ({fan_out_dim}, {fan_in_dim})")
    FAN_DIMS[layer if isinstance(layer, str) else layer.__name__] = (fan_out_dim, fan_in_dim)


def fan_dims(owner: nn.Module) -> tuple[int, int]:
    """(fan_out dim, fan_in dim) of a matrix owned by ``owner``."""
    return next((FAN_DIMS[cls.__name__] for cls in type(owner).__mro__ if cls.__name__ in FAN_DIMS), (0, 1))


def _role_from_shapes(name: str, owner: nn.Module, base: tuple[int, ...], wide: tuple[int, ...]) -> tuple[Role, tuple[int, ...]]:
    if len(base) != len(wide):
        raise ValueError(f"parameter {name!r} changes rank across widths: {base} vs {wide}")
    scaling = tuple(i for i, (s0, s1) in enumerate(zip(base, wide)) if s0 != s1)
    for i in scaling:
        if wide[i] < base[i]:
            raise ValueError(
                f"parameter {name!r} dim {i} goes {base[i]} -> {wide[i]} when width doubles: "
                "a dimension must stay fixed or grow with width"
            )
    if len(base) < 2:
        return ("vector" if scaling else "fixed"), scaling
    fan_out, fan_in = fan_dims(owner)
    if len(scaling) >= 2:
        return "hidden", scaling
    if not scaling:
        return "fixed", scaling
    if scaling[0] == fan_out:
        return "input", scaling
    if scaling[0] == fan_in:
        return "output", scaling
    raise ValueError(
        f"parameter {name!r} of shape {base} scales only in dim {scaling[0]}, which is neither its "
        "fan-in nor fan-out dim; name its role in ModelFamily(role_overrides=...)"
    )


def _width_dim(owner: nn.Module, scaling: tuple[int, ...], rank: int) -> int | None:
    """Which scaling dimension measures the parameter's width multiplier (see ``ParamRole.width_dim``)."""
    if not scaling:
        return None
    if rank >= 2:
        fan_out, fan_in = fan_dims(owner)
        if fan_in in scaling:
            return fan_in
        if fan_out in scaling:
            return fan_out
    return scaling[0]


def _owner(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name.rpartition(".")[0])


def infer_roles(
    build: Callable[[int], nn.Module],
    base_width: int,
    role_overrides: Mapping[str, Role] | None = None,
    seed: int = 0,
) -> WidthRoles:
    """Build at ``base_width`` and ``2 * base_width`` and give every parameter its width role."""
    overrides = dict(role_overrides or {})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = build_checked(build, base_width)
        wide = build_checked(build, 2 * base_width)
    base_named = dict(base.named_parameters(remove_duplicate=False))
    wide_named = dict(wide.named_parameters(remove_duplicate=False))
    if base_named.keys() != wide_named.keys():
        diff = sorted(base_named.keys() ^ wide_named.keys())
        raise ValueError(f"build(width) makes a different parameter set at width {2 * base_width}: {diff[0]!r} (and {len(diff) - 1} more)")
    unknown = set(overrides) - base_named.keys()
    if unknown:
        raise ValueError(f"role_overrides names no parameter of the model: {sorted(unknown)[0]!r}")
    bad = {r for r in overrides.values() if r not in ROLES}
    if bad:
        raise ValueError(f"unknown role {sorted(bad)[0]!r}; roles are {ROLES}")

    uses: dict[int, list[tuple[str, Role, tuple[int, ...]]]] = {}
    for name, p in base_named.items():
        role, scaling = _role_from_shapes(name, _owner(base, name), tuple(p.shape), tuple(wide_named[name].shape))
        uses.setdefault(id(p), []).append((name, overrides.get(name, role), scaling))
    if not any(scaling for use in uses.values() for _, _, scaling in use):
        raise ValueError(f"no parameter changes shape between widths {base_width} and {2 * base_width}: does build(width) use its width?")

    params: dict[str, ParamRole] = {}
    for name, p in base.named_parameters():
        first, *others = uses[id(p)]
        # A tied tensor keeps the role of its first (defining) use, e.g. the embedding.
        std = float(p.detach().float().std()) if p.numel() > 1 else 0.0
        params[name] = ParamRole(
            role=first[1],
            base_shape=tuple(p.shape),
            scaling_dims=first[2],
            base_std=std if math.isfinite(std) else 0.0,
            tied_uses=tuple((n, r) for n, r, _ in others),
            width_dim=_width_dim(_owner(base, name), first[2], p.dim()),
        )
    return WidthRoles(base_width=base_width, params=params)


def build_checked(build: Callable[[int], nn.Module], width: int) -> nn.Module:
    """``build(width)``, checked to be an ``nn.Module`` with parameters (one-line errors otherwise)."""
    model = build(width)
    if not isinstance(model, nn.Module):
        raise TypeError(f"build({width}) returned {type(model).__name__}, not a torch.nn.Module")
    if not any(True for _ in model.parameters()):
        raise ValueError(f"build({width}) returned a module without parameters")
    return model
