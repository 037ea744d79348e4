"""ModelFamily (a ``build(width)`` factory plus its task) and width-role inference.

Roles come from shapes, as ``mup``'s base shapes do: the family is built at its base width and
at twice that, and each parameter dimension that grows "scales with width" (doubling, or not
exactly: a SwiGLU hidden size of 8·width//3, or one rounded up to a multiple, grows too). A matrix whose
fan-out and fan-in both scale is *hidden*; only fan-out, *input*; only fan-in, *output*
(readout). A vector that scales is a *vector* (bias, norm gain); anything else is *fixed*.
Which dimension of a matrix is its fan-in depends on the layer that owns it (``FAN_DIMS``): raw parameters and
``nn.Linear`` are (out, in); ``nn.Embedding`` and GPT-2's ``Conv1D`` are (in, out).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping

import torch
from torch import nn

from .fingerprint import FingerprintError, fingerprint_values, model_structure

if TYPE_CHECKING:
    from .parametrization import Parametrization
    from .tasks import Task

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
        base = _build_checked(build, base_width)
        wide = _build_checked(build, 2 * base_width)
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


def _build_checked(build: Callable[[int], nn.Module], width: int) -> nn.Module:
    model = build(width)
    if not isinstance(model, nn.Module):
        raise TypeError(f"build({width}) returned {type(model).__name__}, not a torch.nn.Module")
    if not any(True for _ in model.parameters()):
        raise ValueError(f"build({width}) returned a module without parameters")
    return model


@dataclass(frozen=True, eq=False)
class ModelFamily:
    """A family of models indexed by width, with the task it trains on.

    ``build(width)`` returns an ``nn.Module`` mapping the task's inputs to logits.
    ``parametrization`` (``"sp"``, ``"mup"``, ... or a ``Parametrization``) makes the engine
    re-initialise and set per-layer LRs; ``None`` trains the model exactly as written, with
    ``optimizer(model, lr)`` if given (the user's own param groups), else one global LR.
    ``loss(logits, targets)`` replaces the training objective (the recorded loss is always
    cross-entropy, so runs stay comparable). ``at_depth(n_layers)``, if given, returns the family at
    that depth (its own ``at_depth`` included) and enables the depth properties.

    ``fingerprint()`` identifies the family's runs in the run cache by the code and the values
    that define them (see ``pytest_scaling.fingerprint``); ``cache_key``, if given, stands in for
    that code and those values, for a family that captures something with no stable hash (a
    socket, a file); change it whenever the model changes.
    """

    name: str
    build: Callable[[int], nn.Module]
    task: "Task"
    base_width: int
    widths: tuple[int, ...] = ()
    parametrization: "str | Parametrization | None" = None
    optimizer: Callable[[nn.Module, float], torch.optim.Optimizer] | None = None
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    role_overrides: Mapping[str, Role] = field(default_factory=dict)
    at_depth: "Callable[[int], ModelFamily] | None" = None
    cache_key: str | None = None

    def __post_init__(self) -> None:
        from .parametrization import Parametrization, get_parametrization
        from .tasks import Task

        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"ModelFamily: name must be a non-empty str, got {self.name!r}")
        if not callable(self.build):
            raise TypeError(f"ModelFamily {self.name!r}: build must be callable build(width) -> nn.Module")
        if not isinstance(self.task, Task):
            raise TypeError(f"ModelFamily {self.name!r}: task must be a pytest_scaling.tasks.Task "
                            f"(e.g. tasks.teacher_student()), got {type(self.task).__name__}")
        if self.at_depth is not None and not callable(self.at_depth):
            raise TypeError(f"ModelFamily {self.name!r}: at_depth must be callable at_depth(n_layers) -> ModelFamily")
        if self.optimizer is not None and not callable(self.optimizer):
            raise TypeError(f"ModelFamily {self.name!r}: optimizer must be callable optimizer(model, lr) -> Optimizer, "
                            f"got {type(self.optimizer).__name__}")
        if self.loss is not None and not callable(self.loss):
            raise TypeError(f"ModelFamily {self.name!r}: loss must be callable loss(logits, targets) -> Tensor, "
                            f"got {type(self.loss).__name__}")
        if not isinstance(self.role_overrides, Mapping):
            raise TypeError(f"ModelFamily {self.name!r}: role_overrides must be a mapping of parameter name to role, "
                            f"got {type(self.role_overrides).__name__}")
        if self.cache_key is not None and (not isinstance(self.cache_key, str) or not self.cache_key):
            raise TypeError(f"ModelFamily {self.name!r}: cache_key must be a non-empty string, got {self.cache_key!r}")
        if not isinstance(self.base_width, int) or isinstance(self.base_width, bool) or self.base_width <= 0:
            raise ValueError(f"ModelFamily {self.name!r}: base_width must be a positive int, got {self.base_width!r}")
        if isinstance(self.widths, (str, bytes)) or not isinstance(self.widths, Iterable):
            raise TypeError(f"ModelFamily {self.name!r}: widths must be a sequence of positive ints, got {self.widths!r}")
        object.__setattr__(self, "widths", tuple(self.widths))
        if self.widths:
            check_widths(self.widths)
        if self.parametrization is not None:
            if not isinstance(self.parametrization, (str, Parametrization)):
                raise TypeError(f"ModelFamily {self.name!r}: parametrization must be a name such as 'mup' or a "
                                f"Parametrization, got {type(self.parametrization).__name__}")
            object.__setattr__(self, "parametrization", get_parametrization(self.parametrization))

    @functools.cached_property
    def roles(self) -> WidthRoles:
        return infer_roles(self.build, self.base_width, self.role_overrides)

    def instantiate(self, width: int, seed: int) -> tuple[nn.Module, list[dict]]:
        """A fresh model at ``width`` (init from ``seed``) and its optimizer param groups."""
        from .parametrization import apply_parametrization

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _build_checked(self.build, width)
        if self.parametrization is None:
            return model, [{"params": list(model.parameters()), "lr_mult": 1.0, "role": "all"}]
        generator = torch.Generator().manual_seed(seed)
        return model, apply_parametrization(model, self.roles, self.parametrization, width, generator)

    def fingerprint(self) -> str:
        """Hash of everything that defines the family's runs: code and captured values (or
        ``cache_key``), the model's structure and shapes, task, parametrization and role overrides.
        Raises ``FingerprintError`` when a captured value has no stable hash."""
        result = self._fingerprint
        if isinstance(result, FingerprintError):
            raise result.with_traceback(None)
        return result

    @functools.cached_property
    def _fingerprint(self) -> str | FingerprintError:
        """Computed once per family object: it builds the model and hashes the code it reaches."""
        if self.cache_key is not None:
            identity: dict[str, Any] = {"cache_key": self.cache_key}
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = _build_checked(self.build, self.base_width)
            identity = {"build": self.build, "optimizer": self.optimizer, "loss": self.loss, "the built model": model_structure(model)}
        values = {
            **identity,
            "name": self.name,
            "shapes": {n: p.base_shape for n, p in self.roles.params.items()},
            "task": self.task.config(),
            "parametrization": None if self.parametrization is None else self.parametrization.to_dict(),
            "role overrides": dict(self.role_overrides),
        }
        try:
            return fingerprint_values(values)[:16]
        except FingerprintError as error:
            return error


def check_widths(widths: tuple[int, ...] | list[int], min_count: int = 2) -> tuple[int, ...]:
    """Validate a width list: positive ints, strictly increasing, at least ``min_count``."""
    ws = tuple(widths)
    if len(ws) < min_count:
        raise ValueError(f"need at least {min_count} width{'s' if min_count > 1 else ''}, got {list(ws)}")
    if any(not isinstance(w, int) or isinstance(w, bool) or w <= 0 for w in ws):
        raise ValueError(f"widths must be positive integers, got {list(ws)}")
    if any(b <= a for a, b in zip(ws, ws[1:])):
        raise ValueError(f"widths must be strictly increasing, got {list(ws)}")
    return ws
