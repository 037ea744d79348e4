"""Adam-family optimizers with coupled or independent weight decay, and an epsilon probe.

Both optimizers are plain :class:`torch.optim.Optimizer` subclasses over param groups.
A group may carry ``lr_mult`` (default 1.0), the per-layer multiplier set by the
parametrization engine; the trainer sets ``group["lr"] = base_lr * schedule(t) * lr_mult``
each step and the optimizer uses ``group["lr"]`` as given. Batched form: a group whose
parameters stack K runs along dim 0 may carry a tensor ``lr`` (and ``initial_lr``) of shape
[K]; run i then steps exactly as a single run with LR ``lr[i]``. A step runs as a few multi-tensor
(``torch._foreach_*``) ops per group; a subclass of :class:`AdamBase` defines only ``directions``,
the update directions from the moments. A group's ``weight_decay`` may be a per-run vector too.
A group may carry ``l2`` (default 0.0): a penalty ``l2·θ`` added to the gradient before the
moments (what ``weight_decay`` means in ``torch.optim.Adam``); the stored gradient is left as is.

``stacked_form`` translates the optimizers of K runs (the family's own factory, built once per
run) into one batched optimizer when that is exact, and says why not otherwise.

Weight decay:

- coupled (torch-style AdamW): ``θ ← θ − lr_t·(Δ + λθ)``;
- independent (Wortsman et al. 2023): ``θ ← θ − s_t·(η·Δ + λθ)`` with ``s_t·η = lr_t`` and
  ``s_t = lr_t / initial_lr`` the schedule factor, so the decay is not scaled by the LR.
  ``initial_lr`` is the group's peak LR: it defaults to ``lr · lr_mult`` at construction
  (construction ``lr`` being the base LR) and may be given explicitly in a group.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["AdamAtan2", "AdamBase", "AdamW", "EpsProbe", "NoStackedForm", "PerRun", "REFERENCE_EPS", "StackedForm",
           "class_name", "describe", "epsilon_probe", "stacked_form"]

REFERENCE_EPS = 1e-8
"""ε against which the probe compares √v̂ for optimizers that have no ε (AdamAtan2)."""


def _adam_directions(exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor], bias1: float, bias2: float, eps: float) -> list[Tensor]:
    """Adam's update directions Δ = m̂ / (√v̂ + ε), with m̂ = m / bias1 and √v̂ = √v / √bias2 (multi-tensor)."""
    denominators = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denominators, math.sqrt(bias2))
    torch._foreach_add_(denominators, eps)
    deltas = torch._foreach_div(exp_avgs, denominators)
    torch._foreach_div_(deltas, bias1)
    return deltas


def _per_run(value: float | Tensor, p: Tensor) -> float | Tensor:
    """A scalar as is; a per-run vector [K] shaped to broadcast over a stacked parameter [K, ...].

    Groups may carry a tensor ``lr`` of shape [K] when their parameters stack K runs along
    dim 0: then every hyperparameter that follows the LR is applied run by run.
    """
    return value.view(-1, *[1] * (p.dim() - 1)) if isinstance(value, Tensor) else value


def _per_param(value: float | Tensor, params: list[Tensor]) -> float | list[Tensor]:
    """``value`` for a multi-tensor op over ``params``: a scalar as is, a per-run vector shaped per parameter."""
    return [_per_run(value, p) for p in params] if isinstance(value, Tensor) else value


def _applies(coefficient: float | Tensor) -> bool:
    """Whether a decay coefficient needs applying: a nonzero scalar, or any per-run vector (a zero entry
    then multiplies by exactly 1; checking its entries would cost a device synchronisation each step)."""
    return isinstance(coefficient, Tensor) or coefficient != 0


def _bias_corrected(state: Mapping[str, Any], group: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    """(m̂, v̂) from an Adam state (``step`` may be an int or a tensor, as in torch's Adam)."""
    beta1, beta2 = group["betas"]
    step = float(state["step"])
    return state["exp_avg"] / (1 - beta1**step), state["exp_avg_sq"] / (1 - beta2**step)


def _check(ok: bool | Tensor, message: str) -> None:
    """Raise ValueError unless ``ok`` holds (everywhere, for a tensor of per-run bools)."""
    if not bool(torch.as_tensor(ok).all()):
        raise ValueError(message)


class AdamBase(torch.optim.Optimizer, abc.ABC):
    """Bias-corrected Adam moments and weight decay; subclasses define the update direction."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        super().__init__(params, {**defaults, "lr_mult": 1.0, "l2": 0.0})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group after validating its hyperparameters; record its peak LR as ``initial_lr``."""
        self._validate({**self.defaults, **param_group})
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.setdefault("initial_lr", group["lr"] * group["lr_mult"])

    def _validate(self, group: Mapping[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        _check(group["lr"] >= 0, f"lr must be >= 0, got {group['lr']}")
        _check(group["lr_mult"] >= 0, f"lr_mult must be >= 0, got {group['lr_mult']}")
        _check(0 <= beta1 < 1 and 0 <= beta2 < 1, f"betas must lie in [0, 1), got {group['betas']}")
        _check(group["weight_decay"] >= 0, f"weight_decay must be >= 0, got {group['weight_decay']}")
        _check(group["l2"] >= 0, f"l2 must be >= 0, got {group['l2']}")

    @staticmethod
    def decay_factor(group: Mapping[str, Any]) -> float | Tensor:
        """Fraction of θ removed by weight decay this step: ``lr·λ`` (coupled) or ``s_t·λ``."""
        if not group["independent_wd"]:
            return group["lr"] * group["weight_decay"]
        peak = group["initial_lr"]
        if isinstance(peak, Tensor):
            return torch.where(peak > 0, group["lr"] / peak, 0.0) * group["weight_decay"]
        return group["lr"] / peak * group["weight_decay"] if peak > 0 else 0.0

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimizer step over every parameter that has a gradient, as a few multi-tensor
        (``torch._foreach_*``) kernels per group rather than ~10 small kernels per parameter."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            by_step: dict[int, list[Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                by_step.setdefault(int(state["step"]), []).append(p)
            for step, params in by_step.items():  # one bucket unless some parameter skipped steps
                self._update(params, step, group)
        return loss

    def _update(self, params: list[Tensor], step: int, group: Mapping[str, Any]) -> None:
        """Moments, weight decay and the step ``θ ← θ − lr·Δ`` for parameters that share a step count."""
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params]
        if _applies(group["l2"]):
            grads = torch._foreach_add(torch._foreach_mul(params, _per_param(group["l2"], params)), grads)
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        if _applies(group["weight_decay"]):
            torch._foreach_mul_(params, _per_param(1 - self.decay_factor(group), params))
        deltas = self.directions(exp_avgs, exp_avg_sqs, 1 - beta1**step, 1 - beta2**step, group)
        torch._foreach_mul_(deltas, _per_param(group["lr"], params))
        torch._foreach_sub_(params, deltas)

    @abc.abstractmethod
    def directions(self, exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor], bias1: float, bias2: float,
                   group: Mapping[str, Any]) -> list[Tensor]:
        """The update directions Δ from raw moments and their bias corrections ``1 − β^t``; the step is ``−lr·Δ``."""

    def direction(self, m_hat: Tensor, v_hat: Tensor, group: Mapping[str, Any]) -> Tensor:
        """Δ from bias-corrected moments (what the epsilon probe reports)."""
        return self.directions([m_hat], [v_hat], 1.0, 1.0, group)[0]


class AdamW(AdamBase):
    """Adam with decoupled weight decay, coupled to the LR (torch-style) or independent of it."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        independent_wd: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, independent_wd=independent_wd)
        super().__init__(params, defaults)

    def _validate(self, group: Mapping[str, Any]) -> None:
        super()._validate(group)
        _check(group["eps"] >= 0, f"eps must be >= 0, got {group['eps']}")

    def directions(self, exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor], bias1: float, bias2: float,
                   group: Mapping[str, Any]) -> list[Tensor]:
        """Δ = m̂ / (√v̂ + ε)."""
        return _adam_directions(exp_avgs, exp_avg_sqs, bias1, bias2, group["eps"])


class AdamAtan2(AdamBase):
    """Adam with ``a·atan2(m̂, b·√v̂)`` in place of ``m̂/(√v̂+ε)`` (Everett et al. 2024): no ε,
    invariant to the scale of the gradients, each coordinate's step bounded by ``lr·a·π/2``."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        a: float = 1.27,
        b: float = 1.0,
        weight_decay: float = 0.0,
        independent_wd: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, a=a, b=b, weight_decay=weight_decay, independent_wd=independent_wd)
        super().__init__(params, defaults)

    def _validate(self, group: Mapping[str, Any]) -> None:
        super()._validate(group)
        _check(group["a"] > 0, f"a must be > 0, got {group['a']}")
        _check(group["b"] > 0, f"b must be > 0, got {group['b']}")

    def directions(self, exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor], bias1: float, bias2: float,
                   group: Mapping[str, Any]) -> list[Tensor]:
        """Δ = a·atan2(m̂, b·√v̂), with m̂ = m / bias1 and √v̂ = √v / √bias2."""
        scaled_roots = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_mul_(scaled_roots, group["b"] * bias1 / math.sqrt(bias2))  # atan2(y/c, x/c) = atan2(y, x)
        return [group["a"] * torch.atan2(m, root) for m, root in zip(exp_avgs, scaled_roots)]


def _group_param_names(optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Parameters named by their groups' ``param_names`` (torch's named groups) or ``g{group}.{index}``."""
    named: dict[str, Tensor] = {}
    for i, group in enumerate(optimizer.param_groups):
        names = group.get("param_names") or [f"g{i}.{j}" for j in range(len(group["params"]))]
        named.update(zip(names, group["params"]))
    return named


def _run_means(t: Tensor, runs: int) -> Tensor:
    """Means over all but a leading split into ``runs`` runs: shape [runs]."""
    return t.float().reshape(runs, -1).mean(1)


@dataclass(frozen=True)
class EpsProbe:
    """Per-parameter epsilon diagnostics (docs/design.md, "Adam ε").

    ``sqrt_v_rms``: RMS of √v̂, the denominator ε is added to (Adam's memory of the gradients' size, which
    outlasts a gradient that has just fallen); ``frac_below_eps``: fraction of coordinates with √v̂ < ``eps``; ``update_rms``: RMS of the last update
    direction Δ (the step is ``lr·Δ``); ``eps``: the ε compared against.
    """

    sqrt_v_rms: float | list[float]
    frac_below_eps: float | list[float]
    update_rms: float | list[float]
    eps: float


def epsilon_probe(
    optimizer: torch.optim.Optimizer,
    named_params: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | None = None,
    eps: float | None = None,
    per_run: bool = False,
) -> dict[str, EpsProbe]:
    """Probe how close each parameter's second moment is to ε, from the optimizer state.

    Works for :class:`AdamBase` optimizers and for torch's Adam/AdamW (any optimizer whose
    state holds ``step``, ``exp_avg`` and ``exp_avg_sq`` and whose groups hold ``betas``).
    ``named_params`` (e.g. ``model.named_parameters()``) names the parameters; by default
    the groups' ``param_names`` or ``"g{group}.{index}"``. ``eps`` overrides the group's ε
    (or :data:`REFERENCE_EPS` where the group has none). Parameters without optimizer state
    are left out. One device synchronisation in all. ``per_run=True`` is for parameters that
    stack K runs along dim 0: each field is then a list of K per-run values.
    """
    group_of = {p: g for g in optimizer.param_groups for p in g["params"]}
    named = dict(named_params) if named_params is not None else _group_param_names(optimizer)
    names, rows, eps_used = [], [], []
    for name, p in named.items():
        state = optimizer.state.get(p)
        if not state or "exp_avg_sq" not in state:
            continue
        group = group_of[p]
        ref_eps = eps if eps is not None else group.get("eps", REFERENCE_EPS)
        m_hat, v_hat = _bias_corrected(state, group)
        if isinstance(optimizer, AdamBase):
            delta = optimizer.direction(m_hat, v_hat, group)
        else:
            delta = _adam_directions([m_hat], [v_hat], 1.0, 1.0, group["eps"])[0]
        runs = p.shape[0] if per_run else 1
        stats = torch.stack(
            [
                _run_means(v_hat.float(), runs).sqrt(),
                _run_means(v_hat.sqrt() < ref_eps, runs),
                _run_means(delta.float().pow(2), runs).sqrt(),
            ]
        )
        rows.append(stats.to(rows[0].device) if rows else stats)
        names.append(name)
        eps_used.append(ref_eps)
    values = torch.stack(rows).tolist() if rows else []
    unwrap = (lambda v: v) if per_run else (lambda v: v[0])
    return {n: EpsProbe(*map(unwrap, v), eps=e) for n, v, e in zip(names, values, eps_used)}


class NoStackedForm(ValueError):
    """The optimizers of K runs have no exact batched form; the message says why in one line."""


@dataclass(frozen=True)
class PerRun:
    """A hyperparameter that differs between stacked runs: run i's value is ``values[i]``."""

    values: tuple[float, ...]


@dataclass(frozen=True)
class StackedForm:
    """K runs' optimizers as one batched optimizer: the runs' optimizer class (``source``), the batched class,
    and per param group the parameter names and hyperparameters (a :class:`PerRun` where the runs differ)."""

    source: str
    optimizer: type[AdamBase]
    groups: tuple[tuple[tuple[str, ...], Mapping[str, Any]], ...]

    def per_run(self) -> list[str]:
        """The hyperparameters that differ between the runs, in group order."""
        return list(dict.fromkeys(k for _, hyper in self.groups for k, v in hyper.items() if isinstance(v, PerRun)))

    def build(self, params: Mapping[str, Tensor]) -> AdamBase:
        """The batched optimizer over ``params`` (name → the K runs' parameter stacked along dim 0);
        per-run hyperparameters become vectors of shape [K] on the parameters' device."""
        reference = next(iter(params.values()))

        def value(v: Any) -> Any:
            return torch.tensor(v.values, dtype=reference.dtype, device=reference.device) if isinstance(v, PerRun) else v

        return self.optimizer([{"params": [params[n] for n in names], **{k: value(v) for k, v in hyper.items()}}
                               for names, hyper in self.groups])


# Hyperparameters the batched optimizers take as per-run vectors; runs that differ in any other must train one by one.
_PER_RUN_KEYS = ("lr", "initial_lr", "lr_mult", "weight_decay", "l2")
# torch.optim.Adam/AdamW options that change what a step computes and that the batched optimizers lack.
_UNSUPPORTED_TORCH_OPTIONS = ("amsgrad", "maximize", "differentiable")


def class_name(cls: type) -> str:
    """A class as users write it: ``torch.optim.Adam``, ``pytest_scaling.optim.AdamW``, else module and name."""
    if getattr(torch.optim, cls.__name__, None) is cls:
        return f"torch.optim.{cls.__name__}"
    if globals().get(cls.__name__) is cls:
        return f"{__name__}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(value: Any) -> Any:
    """A hyperparameter comparable with ``==``: tensors as numbers (or tuples of them), sequences as tuples."""
    if isinstance(value, Tensor):
        return value.item() if value.numel() == 1 else tuple(value.tolist())
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v) for v in value)
    return value


def _translated_groups(optimizer: torch.optim.Optimizer) -> tuple[type[AdamBase], list[dict[str, Any]]]:
    """The batched class and, per group, the hyperparameters with which it steps exactly as ``optimizer`` does."""
    cls, name = type(optimizer), class_name(type(optimizer))
    if cls in (AdamW, AdamAtan2):
        return cls, [{k: _plain(v) for k, v in g.items() if k not in ("params", "param_names")} for g in optimizer.param_groups]
    if cls not in (torch.optim.Adam, torch.optim.AdamW):
        raise NoStackedForm(f"{name} has no stacked form")
    groups = []
    for g in optimizer.param_groups:
        for option in _UNSUPPORTED_TORCH_OPTIONS:
            if g.get(option):
                raise NoStackedForm(f"{name}({option}=True) has no stacked form")
        decoupled = g.get("decoupled_weight_decay", cls is torch.optim.AdamW)
        decay = float(g["weight_decay"])
        groups.append({"lr": float(g["lr"]), "betas": _plain(g["betas"]), "eps": float(g["eps"]), "independent_wd": False,
                       "weight_decay": decay if decoupled else 0.0, "l2": 0.0 if decoupled else decay})
    return AdamW, groups


def _group_names(optimizer: torch.optim.Optimizer, named_params: Mapping[str, Tensor]) -> tuple[tuple[str, ...], ...]:
    """Which parameters, by name, each group of ``optimizer`` steps."""
    name_of = {id(p): n for n, p in named_params.items()}
    try:
        return tuple(tuple(name_of[id(p)] for p in g["params"]) for g in optimizer.param_groups)
    except KeyError:
        raise NoStackedForm(f"{class_name(type(optimizer))} steps a tensor that is not a parameter of the model") from None


def _merged(source: str, key: str, values: list[Any]) -> Any:
    """One group hyperparameter over the runs: the shared value, or a PerRun where the batched optimizers allow it."""
    if all(v == values[0] for v in values):
        return values[0]
    if key in _PER_RUN_KEYS and all(isinstance(v, (int, float)) for v in values):
        return PerRun(tuple(float(v) for v in values))
    other = next(v for v in values if v != values[0])
    raise NoStackedForm(f"{source}: {key} differs between the runs ({values[0]!r} vs {other!r}), which has no stacked form")


def stacked_form(optimizers: Sequence[torch.optim.Optimizer], named_params: Sequence[Mapping[str, Tensor]]) -> StackedForm:
    """One batched optimizer that steps run i exactly as ``optimizers[i]`` steps the parameters ``named_params[i]``.

    Exact for torch.optim.Adam (its ``weight_decay`` as ``l2``), torch.optim.AdamW (decay coupled to the LR) and this
    module's AdamW and AdamAtan2. The runs' optimizers must share their class, which parameters (by name) go together
    in each group and every option; the LR and the weight decay may differ (they become per-run vectors).
    Raises NoStackedForm, saying why in one line, otherwise.
    """
    source = class_name(type(optimizers[0]))
    classes = sorted({class_name(type(o)) for o in optimizers})
    if len(classes) > 1:
        raise NoStackedForm(f"the runs' optimizers differ in class ({', '.join(classes)}), which has no stacked form")
    translated = [_translated_groups(o) for o in optimizers]
    structures = {_group_names(o, named) for o, named in zip(optimizers, named_params)}
    if len(structures) > 1:
        raise NoStackedForm(f"{source}: the runs' optimizers group the parameters differently, which has no stacked form")
    structure = structures.pop()
    groups = []
    for i, names in enumerate(structure):
        keys = dict.fromkeys(k for _, run_groups in translated for k in run_groups[i])
        hyper = {k: _merged(source, k, [run_groups[i].get(k) for _, run_groups in translated]) for k in keys}
        groups.append((names, hyper))
    return StackedForm(source, translated[0][0], tuple(groups))


# Group keys ``describe`` leaves out: the parameters, the LR (shown as multiples) and options that do not change the numbers.
_NOT_DESCRIBED = ("params", "param_names", "lr", "initial_lr", "lr_mult", "foreach", "fused", "capturable",
                  "weight_decay", "decoupled_weight_decay", "independent_wd")


def _decay_note(optimizer: torch.optim.Optimizer) -> str | None:
    """The groups' weight decay with what it means for this optimizer, or None when no group decays."""
    groups = optimizer.param_groups
    decays = [_plain(g.get("weight_decay", 0.0)) for g in groups]
    if not any(decays):
        return None
    shown = decays[0] if len(set(decays)) == 1 else "/".join(f"{d:g}" for d in decays)
    if isinstance(optimizer, AdamBase):
        kind = "independent of the LR" if groups[0]["independent_wd"] else "coupled to the LR"
    elif isinstance(optimizer, torch.optim.Adam):
        kind = "coupled to the LR" if groups[0].get("decoupled_weight_decay") else "L2, added to the gradient"
    else:
        kind = "as the optimizer defines it"
    return f"weight decay {shown} ({kind})"


def describe(optimizer: torch.optim.Optimizer, lr: float) -> str:
    """``optimizer`` built for LR ``lr``, in one line: its class, its groups' LRs as multiples of ``lr``, its weight
    decay and every other option that is set (e.g. ``torch.optim.Adam: 2 param groups (LR ×1, ×0.5), betas (0.9, 0.999), eps 1e-08``)."""
    groups = optimizer.param_groups
    multiples = ", ".join(f"×{float(g['lr']) / lr:.3g}" for g in groups)
    parts = [f"{class_name(type(optimizer))}: {len(groups)} param group{'' if len(groups) == 1 else 's'} (LR {multiples})"]
    for key in dict.fromkeys(k for k in [*optimizer.defaults, *(k for g in groups for k in g)] if k not in _NOT_DESCRIBED):
        values = [_plain(g.get(key)) for g in groups]
        if any(values):
            parts.append(f"{key} {values[0] if all(v == values[0] for v in values) else '/'.join(map(str, values))}")
    decay = _decay_note(optimizer)
    return ", ".join(parts + ([decay] if decay else []))
