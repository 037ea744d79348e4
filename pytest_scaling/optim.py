"""Adam-family optimizers with coupled or independent weight decay, and an epsilon probe.

Both optimizers are plain :class:`torch.optim.Optimizer` subclasses over param groups.
A group may carry ``lr_mult`` (default 1.0), the per-layer multiplier set by the
parametrization engine; the trainer sets ``group["lr"] = base_lr * schedule(t) * lr_mult``
each step and the optimizer uses ``group["lr"]`` as given. Batched form: a group whose
parameters stack K runs along dim 0 may carry a tensor ``lr`` (and ``initial_lr``) of shape
[K]; run i then steps exactly as a single run with LR ``lr[i]``. A step runs as a few multi-tensor
(``torch._foreach_*``) ops per group; a subclass of :class:`AdamBase` defines only ``directions``,
the update directions from the moments.

Weight decay (DESIGN.md section 4):

- coupled (torch-style AdamW): ``θ ← θ − lr_t·(Δ + λθ)``;
- independent (Wortsman et al. 2023): ``θ ← θ − s_t·(η·Δ + λθ)`` with ``s_t·η = lr_t`` and
  ``s_t = lr_t / initial_lr`` the schedule factor, so the decay is not scaled by the LR.
  ``initial_lr`` is the group's peak LR: it defaults to ``lr · lr_mult`` at construction
  (construction ``lr`` being the base LR) and may be given explicitly in a group.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["AdamAtan2", "AdamBase", "AdamW", "EpsProbe", "REFERENCE_EPS", "epsilon_probe"]

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
        super().__init__(params, {**defaults, "lr_mult": 1.0})

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
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        if group["weight_decay"]:
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
    """Per-parameter epsilon diagnostics (DESIGN.md section 4, "Adam epsilon").

    ``grad_rms``: RMS of the current gradient (NaN when it is None); ``frac_below_eps``:
    fraction of coordinates with √v̂ < ``eps``; ``update_rms``: RMS of the last update
    direction Δ (the step is ``lr·Δ``); ``eps``: the ε compared against.
    """

    grad_rms: float | list[float]
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
        grad = p.grad if p.grad is not None else torch.full_like(p, math.nan)
        stats = torch.stack(
            [
                _run_means(grad.float().pow(2), runs).sqrt(),
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
