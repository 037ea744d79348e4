"""ModelFamily: a ``build(width)`` factory plus its task, optimizer, loss and depth factory; its parameters' width
roles come from ``roles``."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from .fingerprint import FingerprintError, fingerprint_values, model_structure
from .parametrization import Parametrization, apply_parametrization, get_parametrization
from .roles import FAN_DIMS, ROLES, ParamRole, Role, WidthRoles, build_checked, fan_dims, infer_roles, register_fan_dims
from .tasks import Task

__all__ = ["FAN_DIMS", "ROLES", "ModelFamily", "ParamRole", "Role", "WidthRoles", "check_widths", "fan_dims",
           "infer_roles", "register_fan_dims"]


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
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_checked(self.build, width)
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
                model = build_checked(self.build, self.base_width)
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
