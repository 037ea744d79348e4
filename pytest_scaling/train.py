"""One training run with probes: the unit every sweep is made of.

A run is deterministic given (family, width, lr, seed, config) on one machine. The data stream
depends on the seed only, not the LR, so runs that differ in LR see the same batches (common
random numbers make the loss-vs-LR curve far less noisy). A run whose loss turns non-finite
stops and is recorded as diverged; it never raises.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .family import ModelFamily
from .optim import AdamAtan2, AdamW, epsilon_probe
from .probes import ProbeRecorder, probing

# What a probe step can record: layer output sizes (coord check), attention logits,
# output log Z / max |logit|, and the Adam epsilon probe (gradient RMS, sqrt(v_hat) < eps).
PROBE_KINDS: tuple[str, ...] = ("activation", "attention", "output", "adam")

# Offsets the data stream's seed from the init seed so the two never share a stream.
_DATA_SEED_OFFSET = 0x5CA1E


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimizer and its hyperparameters; ``independent_wd`` decouples decay from the LR."""

    name: Literal["adamw", "adam_atan2"] = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    independent_wd: bool = True

    def build(self, groups: list[dict], lr: float) -> torch.optim.Optimizer:
        groups = [{**g, "lr": lr * g.get("lr_mult", 1.0)} for g in groups]
        if self.name == "adamw":
            return AdamW(groups, lr=lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay, independent_wd=self.independent_wd)
        if self.name == "adam_atan2":
            return AdamAtan2(groups, lr=lr, betas=self.betas, weight_decay=self.weight_decay, independent_wd=self.independent_wd)
        raise ValueError(f"unknown optimizer {self.name!r}; choose 'adamw' or 'adam_atan2'")


@dataclass(frozen=True)
class TrainConfig:
    """Everything about a run except the family, width, LR and seed."""

    steps: int = 300
    batch_size: int = 128
    optimizer: OptimizerSpec = OptimizerSpec()
    warmup: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_frac: float = 0.0
    grad_clip: float | None = None
    probe_steps: tuple[int, ...] = ()
    probe_every: int = 0
    probe_kinds: tuple[str, ...] = PROBE_KINDS
    bf16: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        if not 0 <= self.warmup <= self.steps:
            raise ValueError(f"warmup must be in [0, steps], got {self.warmup}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        unknown = set(self.probe_kinds) - set(PROBE_KINDS)
        if unknown:
            raise ValueError(f"unknown probe kind {sorted(unknown)[0]!r}; kinds are {PROBE_KINDS}")
        object.__setattr__(self, "probe_steps", tuple(sorted(set(self.probe_steps))))

    def lr_factor(self, step: int) -> float:
        """Schedule factor s_t: linear warmup, then constant or cosine down to ``min_lr_frac``."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.min_lr_frac + (1 - self.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))

    def probes_at(self, step: int) -> bool:
        return step in self.probe_steps or (self.probe_every > 0 and (step % self.probe_every == 0 or step == self.steps - 1))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    """A run's loss curve (cross-entropy before each update) and its probes.

    ``probes`` maps a probe name to ``{series key: [values at probe_step_list]}``:
    ``activation`` (mean |output| per module), ``attention_logit_max`` (per attention module),
    ``output`` (``log_z_mean``, ``log_z_max``, ``logit_abs_max``), ``grad_rms`` and
    ``frac_below_eps`` (per parameter).
    """

    width: int
    lr: float
    seed: int
    losses: list[float]
    diverged: bool
    probe_step_list: list[int] = field(default_factory=list)
    probes: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def initial_loss(self) -> float:
        return self.losses[0]

    def final_loss(self, window: float = 0.1) -> float:
        """Mean loss over the last ``window`` fraction of steps; +inf for a diverged run."""
        if self.diverged:
            return math.inf
        n = max(1, int(round(len(self.losses) * window)))
        return float(sum(self.losses[-n:]) / n)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunResult":
        return cls(**data)


def _add(probes: dict[str, dict[str, list[float]]], kind: str, values: dict[str, float]) -> None:
    for key, value in values.items():
        probes.setdefault(kind, {}).setdefault(key, []).append(value)


def _output_stats(logits: torch.Tensor) -> dict[str, float]:
    flat = logits.detach().float().reshape(-1, logits.shape[-1])
    log_z = torch.logsumexp(flat, dim=-1)
    return {"log_z_mean": float(log_z.mean()), "log_z_max": float(log_z.abs().max()), "logit_abs_max": float(flat.abs().max())}


def _record_probes(
    probes: dict[str, dict[str, list[float]]],
    kinds: tuple[str, ...],
    recorder: ProbeRecorder,
    logits: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    named_params: dict[str, torch.Tensor],
) -> None:
    if "activation" in kinds:
        _add(probes, "activation", recorder.activation_size)
    if "attention" in kinds:
        _add(probes, "attention_logit_max", recorder.attention_logit_max)
    if "output" in kinds:
        _add(probes, "output", _output_stats(logits))
    if "adam" in kinds:
        eps = epsilon_probe(optimizer, named_params)
        _add(probes, "grad_rms", {n: e.grad_rms for n, e in eps.items()})
        _add(probes, "frac_below_eps", {n: e.frac_below_eps for n, e in eps.items()})


def train_run(
    family: ModelFamily,
    width: int,
    lr: float,
    seed: int,
    config: TrainConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> RunResult:
    """Train ``family`` at ``width`` with peak LR ``lr`` from ``seed``; ``overrides`` replace config fields."""
    config = dataclasses.replace(config or TrainConfig(), **overrides)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not isinstance(width, int) or width <= 0:
        raise ValueError(f"width must be a positive int, got {width!r}")
    device = torch.device(device)
    model, groups = family.instantiate(width, seed)
    model.to(device).train()
    named_params = dict(model.named_parameters())
    optimizer = family.optimizer(model, lr) if family.optimizer else config.optimizer.build(groups, lr)
    peak_lrs = [g["lr"] for g in optimizer.param_groups]
    objective = family.loss or _cross_entropy
    data_gen = torch.Generator().manual_seed(seed + _DATA_SEED_OFFSET)

    result = RunResult(width=width, lr=float(lr), seed=seed, losses=[], diverged=False)
    for step in range(config.steps):
        x, y = (t.to(device, non_blocking=True) for t in family.task.batch(config.batch_size, data_gen))
        probe = config.probes_at(step)
        for group, peak in zip(optimizer.param_groups, peak_lrs):
            group["lr"] = peak * config.lr_factor(step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
            if probe:
                with probing(model) as recorder:
                    logits = model(x)
            else:
                logits = model(x)
            loss = objective(logits, y)
        ce = float(_cross_entropy(logits.detach(), y)) if family.loss else float(loss.detach())
        result.losses.append(ce)
        if not (math.isfinite(ce) and math.isfinite(float(loss.detach()))):
            result.diverged = True
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if probe:
            result.probe_step_list.append(step)
            _record_probes(result.probes, config.probe_kinds, recorder, logits, optimizer, named_params)
    return result


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
