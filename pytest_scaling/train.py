"""One training run with probes: the unit every sweep is made of.

A run is deterministic given (family, width, lr, seed, config) on one machine. The data stream
depends on the seed only, not the LR, so runs that differ in LR see the same batches (common
random numbers make the loss-vs-LR curve far less noisy). A run whose loss turns non-finite
stops and is recorded as diverged; it never raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.func import vmap

from .contract import check_family, torch_device
from .family import ModelFamily
from .members import SingleRun, StackedRuns, drop_compiled_forwards, own_stacked_form
from .model_facts import lr_by_role, read_model, unapplied_keys
from .optim import AdamAtan2, AdamW, NoStackedForm, describe
from .probes import ProbeRecorder

if TYPE_CHECKING:
    from .tasks import Task

# What a probe step can record: layer output sizes (coord check), the input size of each norm layer (in a
# pre-LN model the residual stream: depth check), attention logits, output log Z / max |logit|, and the
# Adam epsilon probe (RMS of sqrt(v_hat), sqrt(v_hat) < eps), read from the optimizer's state.
PROBE_KINDS: tuple[str, ...] = ("activation", "norm_input", "attention", "output", "adam_state")

# Offsets the data stream's seed from the init seed so the two never share a stream.
_DATA_SEED_OFFSET = 0x5CA1E
# Offsets the seed of the global stream that the model's own randomness (dropout) draws from during training.
_NOISE_SEED_OFFSET = 0xD50


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimizer and its hyperparameters; ``independent_wd`` decouples decay from the LR."""

    name: Literal["adamw", "adam_atan2"] = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    independent_wd: bool = True

    def describe(self) -> str:
        """The optimizer and its hyperparameters in a few words, e.g. ``AdamW, betas (0.9, 0.95), eps 1e-08, ...``."""
        parts = ["AdamW", f"betas {self.betas}", f"eps {self.eps:g}"] if self.name == "adamw" else ["AdamAtan2", f"betas {self.betas}"]
        if self.weight_decay:
            parts.append(f"{'independent' if self.independent_wd else 'coupled'} weight decay {self.weight_decay:g}")
        else:
            parts.append("no weight decay")
        return ", ".join(parts)

    def build(self, groups: list[dict], lr: float | torch.Tensor) -> torch.optim.Optimizer:
        """The optimizer over param groups carrying ``lr_mult``; ``lr`` may be a per-run vector."""
        groups = [{**g, "lr": lr * g.get("lr_mult", 1.0), "initial_lr": lr * g.get("lr_mult", 1.0)} for g in groups]
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

    def describe_schedule(self) -> list[str]:
        """The LR schedule and gradient clipping in short lines."""
        warmup = f"linear warmup over {self.warmup} steps, then " if self.warmup else ""
        shape = "constant" if self.schedule == "constant" else f"cosine decay to {self.min_lr_frac:g}x the peak by step {self.steps}"
        clip = f"gradients clipped to global norm {self.grad_clip:g} per run" if self.grad_clip is not None else "no gradient clipping"
        return [f"LR schedule: {warmup}{shape}", clip] + (["bf16 autocast"] if self.bf16 else [])

    def probes_at(self, step: int) -> bool:
        return step in self.probe_steps or (self.probe_every > 0 and (step % self.probe_every == 0 or step == self.steps - 1))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def train_config(config: TrainConfig | None, overrides: Mapping[str, Any]) -> TrainConfig:
    """``config`` (default ``TrainConfig()``) with ``overrides`` replacing its fields; one line for a non-config or an
    unknown field."""
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig or None, got {type(config).__name__}")
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise TypeError(f"unknown TrainConfig field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(fields)}")
    return dataclasses.replace(config or TrainConfig(), **overrides)


@dataclass
class RunResult:
    """A run's loss curve (cross-entropy before each update) and its probes.

    ``probes`` maps a probe name to ``{series key: [values at probe_step_list]}``:
    ``activation`` (mean |output| per module), ``norm_input`` (mean |input| per norm layer),
    ``attention_logit_max`` and ``attention_logit_size`` (max and mean |logit|, per attention module),
    ``attention_heads`` (its head count, where its logits show it),
    ``output`` (``log_z_mean``, ``log_z_max``, ``logit_abs_max``), ``sqrt_v_rms`` and
    ``frac_below_eps`` (per parameter).
    """

    width: int
    lr: float
    seed: int
    losses: list[float]
    diverged: bool
    probe_step_list: list[int] = field(default_factory=list)
    probes: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    heldout_loss: float | None = None

    @property
    def initial_loss(self) -> float:
        return self.losses[0]

    def final_loss(self, window: float = 0.1) -> float:
        """The loss on the task's held-out evaluation set where it has one (the same windows in every run), else the
        mean training loss over the last ``window`` fraction of steps; +inf for a diverged run."""
        if self.diverged:
            return math.inf
        if self.heldout_loss is not None:
            return self.heldout_loss
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


def _record_probes(
    result: RunResult,
    step: int,
    kinds: tuple[str, ...],
    recorder: ProbeRecorder | None,
    output: dict[str, float],
    adam: dict[str, tuple[float, float]] | None,
) -> None:
    result.probe_step_list.append(step)
    if recorder is not None:
        if "activation" in kinds:
            _add(result.probes, "activation", recorder.activation_size)
        if "norm_input" in kinds:
            _add(result.probes, "norm_input", recorder.norm_input_size)
        if "attention" in kinds:
            _add(result.probes, "attention_logit_max", recorder.attention_logit_max)
            _add(result.probes, "attention_logit_size", recorder.attention_logit_size)
            _add(result.probes, "attention_heads", recorder.attention_heads)
    if "output" in kinds:
        _add(result.probes, "output", output)
    if adam is not None:
        _add(result.probes, "sqrt_v_rms", {n: g for n, (g, _) in adam.items()})
        _add(result.probes, "frac_below_eps", {n: f for n, (_, f) in adam.items()})


def _output_stats(logits: torch.Tensor) -> list[dict[str, float]]:
    """Per run (leading dim): mean and max |log Z| over predictions, and max |logit|."""
    flat = logits.detach().float().reshape(logits.shape[0], -1, logits.shape[-1])
    log_z = torch.logsumexp(flat, dim=-1)
    rows = torch.stack([log_z.mean(1), log_z.abs().amax(1), flat.abs().amax((1, 2))], dim=1).tolist()
    return [{"log_z_mean": a, "log_z_max": b, "logit_abs_max": c} for a, b, c in rows]


def _check_run_args(width: int, runs: Sequence[tuple[float, int]]) -> None:
    if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
        raise ValueError(f"width must be a positive int, got {width!r}")
    for lr, seed in runs:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")


@contextlib.contextmanager
def _flushing_denormals() -> Iterator[None]:
    """Flush denormal floats to zero meanwhile: late in training at low LRs, Adam's moments and tiny
    updates go denormal and made CPU steps ~15x slower (measured: 2.9 s vs 0.2 s per step, GPT width 64, LR 1e-3)."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


#: Steps between two reads of the losses from an accelerator (each read waits for it): the host queues work ahead in
#: between. Divergence is still found at its step; probe steps read first, so a diverged run is never probed.
LOSS_READ_EVERY = 32


def _read_interval(device: torch.device, timed: bool) -> int:
    """Steps between loss reads: every step on the CPU (a read costs nothing there, and a run that diverged stops at
    once) and for timed steps (each must end in finished work), else ``LOSS_READ_EVERY``."""
    return 1 if timed or device.type == "cpu" else LOSS_READ_EVERY


@contextlib.contextmanager
def _seeded_noise(seeds: Sequence[int], device: torch.device) -> Iterator[None]:
    """Meanwhile, the global random stream (what dropout and other stochastic layers draw from) starts from the runs'
    seeds, and the caller's stream is restored after: a run's dropout masks are the same whatever ran before it."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(_NOISE_SEED_OFFSET + sum(s * 1_000_003 ** i for i, s in enumerate(seeds)) % 2**62)
        yield


@_flushing_denormals()
def train_group(
    family: ModelFamily,
    width: int,
    runs: Sequence[tuple[float, int]],
    config: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    stacked: bool = True,
    compiled: bool = False,
    step_clock: list[float] | None = None,
) -> list[RunResult]:
    """Train the runs ``(lr, seed)`` of one width, as one stacked computation or (``stacked=False``,
    one run only) as the plain model. Stacked runs match runs trained alone to float tolerance (for a model without
    dropout: stacked runs draw their masks together). ``compiled``: the stacked forward and backward run through
    ``torch.compile`` (CUDA graphs on CUDA); the held-out evaluation stays eager. ``step_clock``, if given, receives
    ``time.perf_counter()`` at the start of each step and at the end (each step ends in a device sync, so the stamps
    are wall times of finished work)."""
    _check_run_args(width, runs)
    if compiled and not stacked:
        raise ValueError("compiled training is for stacked runs")
    device = torch.device(device)
    with _seeded_noise([int(s) for _, s in runs], device):
        try:
            return _train_group(family, width, runs, config, device, stacked, compiled, step_clock)
        finally:
            if compiled:
                drop_compiled_forwards()  # also when training stopped on an error


def _train_group(family: ModelFamily, width: int, runs: Sequence[tuple[float, int]], config: TrainConfig,
                 device: torch.device, stacked: bool, compiled: bool, step_clock: list[float] | None) -> list[RunResult]:
    """``train_group``'s training, with its arguments checked."""
    lrs, seeds = [float(lr) for lr, _ in runs], [int(s) for _, s in runs]
    if stacked:
        members = StackedRuns(family, width, lrs, seeds, config.optimizer.build, device, compiled=compiled)
    elif len(runs) == 1:
        members = SingleRun(family, width, lrs[0], seeds[0], config.optimizer.build, device)
    else:
        raise ValueError("unstacked training takes one run at a time")
    streams = [torch.Generator().manual_seed(s + _DATA_SEED_OFFSET) for s in dict.fromkeys(seeds)]
    slot = {s: i for i, s in enumerate(dict.fromkeys(seeds))}
    member_slot = torch.tensor([slot[s] for s in seeds], device=device)
    objective = family.loss or _cross_entropy
    results = [RunResult(width=width, lr=lr, seed=s, losses=[], diverged=False) for lr, s in zip(lrs, seeds)]
    active = list(range(len(runs)))
    pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # per step since the last read-back: (CE, objective finite)
    read_every = _read_interval(device, timed=step_clock is not None)
    batches = _device_batches(family.task, streams, config, device, chunk=read_every)

    for step in range(config.steps):
        if step_clock is not None:
            step_clock.append(time.perf_counter())
        x, y = (part[member_slot] for part in next(batches))
        factor = config.lr_factor(step)
        for group, peak in zip(members.optimizer.param_groups, members.peak_lrs):
            group["lr"] = peak * factor
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
            logits = members.forward(x)
            per_run = vmap(objective)(logits, y)
        ce = per_run.detach() if family.loss is None else vmap(_cross_entropy)(logits.detach(), y)
        pending.append((ce, torch.isfinite(per_run.detach())))
        probe = config.probes_at(step)
        if probe or (step + 1) % read_every == 0:
            _read_back(pending, results, active)
            if not active:
                break
        if probe:
            outputs = _output_stats(logits)
            recorders = {i: members.probe(i, x[i]) if {"activation", "norm_input", "attention"} & set(config.probe_kinds) else None for i in active}
        members.optimizer.zero_grad(set_to_none=True)
        per_run.sum().backward()
        if config.grad_clip is not None:
            members.clip_(config.grad_clip)
        members.optimizer.step()
        if probe:
            adam = members.adam_stats() if "adam_state" in config.probe_kinds else None
            for i in active:
                _record_probes(results[i], step, config.probe_kinds, recorders[i], outputs[i], adam[i] if adam else None)
    _read_back(pending, results, active)
    members.release()
    _evaluate_heldout(family.task, members, results, active, config, device)
    if step_clock is not None:
        step_clock.append(time.perf_counter())
    return results


@torch.no_grad()
def _evaluate_heldout(task: Task, members: Any, results: list[RunResult], active: list[int], config: TrainConfig,
                      device: torch.device) -> None:
    """Set each finished run's ``heldout_loss``: mean cross-entropy over the task's fixed evaluation windows, for
    tasks that hold some out (``evaluation_batches``); the same windows in the same order for every run."""
    evaluation = getattr(task, "evaluation_batches", None)
    if evaluation is None or not active:
        return
    total = torch.zeros(len(results), device=device)
    count = 0
    members.module.eval()  # no dropout in the held-out loss
    for x, y in evaluation():
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
            logits = members.forward(x.expand(len(results), *x.shape))
        total += vmap(_cross_entropy)(logits.float(), y.expand(len(results), *y.shape)) * len(x)
        count += len(x)
    for i, loss in enumerate((total / count).tolist()):
        if i in active:
            results[i].heldout_loss = loss


def _device_batches(task: Task, streams: list[torch.Generator], config: TrainConfig, device: torch.device,
                    chunk: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Each step's batch ``(x, y)`` for every data stream (a seed's), stacked on a leading stream dimension, on ``device``.

    Batches come from the task on the host, one step after another from each stream, so a run sees the same numbers on
    any device and however they are chunked; ``chunk`` steps travel in one transfer (pinned and asynchronous on CUDA,
    so that the host does not wait for the device's queue at every step)."""
    for start in range(0, config.steps, chunk):
        steps = [[task.batch(config.batch_size, stream) for stream in streams]
                 for _ in range(min(chunk, config.steps - start))]
        x = torch.stack([torch.stack([x for x, _ in step]) for step in steps])
        y = torch.stack([torch.stack([y for _, y in step]) for step in steps])
        if device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        yield from zip(x, y)


def _read_back(pending: list[tuple[torch.Tensor, torch.Tensor]], results: list[RunResult], active: list[int]) -> None:
    """Append the pending steps' losses to each active run, in one device read; a run whose loss (or objective) is not
    finite at a step ends there, diverged (that loss is its last). Runs carried on meanwhile are not read: a diverged
    member of a stack trains on NaNs that touch no other member."""
    if not pending:
        return
    losses = torch.stack([ce for ce, _ in pending]).tolist()
    finite = torch.stack([ok for _, ok in pending]).tolist()
    pending.clear()
    for i in list(active):
        for step_losses, step_finite in zip(losses, finite):
            results[i].losses.append(step_losses[i])
            if not (math.isfinite(step_losses[i]) and step_finite[i]):
                results[i].diverged = True
                active.remove(i)
                break


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
    """Train ``family`` at ``width`` with peak LR ``lr`` from ``seed``; ``overrides`` replace config fields.

    Bad arguments, and a family that does not fit its task, fail first in one line."""
    config, device = train_config(config, overrides), torch_device(device)
    check_family(family)
    return train_group(family, width, [(lr, seed)], config, device=device, stacked=False)[0]


#: How a width's runs may train: "auto" (the timed plan: chunk size, and whether to compile the stacked step), "all"
#: (one stack), "compiled" (one stack, its step compiled with ``torch.compile``) or "none" (one by one).
STACKING: tuple[str, ...] = ("auto", "all", "compiled", "none")


def check_stacking(stacking: object) -> None:
    """A ``ValueError`` naming the choices unless ``stacking`` is one of ``STACKING``."""
    if stacking not in STACKING:
        raise ValueError(f"stacking must be one of {', '.join(map(repr, STACKING))}; got {stacking!r}")


def recipe_notes(
    family: ModelFamily,
    config: TrainConfig,
    lrs: Sequence[float] = (1e-3,),
    seeds: Sequence[int] = (0,),
    stacking: str = "auto",
    widths: Sequence[int] = (),
) -> list[str]:
    """What a run of ``family`` under ``config`` does, in short lines: its optimizer, what the recipe applies around
    it (and, around a family's own optimizer, what it leaves to that optimizer), and whether a width's runs
    (``lrs`` x ``seeds``) train stacked under ``stacking``, or why not.

    A family's own optimizer is built at the base width for each run; the first run's is described. With two or more
    ``widths``, each parameter role's LR at the narrowest and widest (``model_facts``), and any param-group key that
    looks like an LR factor nothing applies.
    """
    check_stacking(stacking)
    runs = [(float(lr), seed) for seed in seeds for lr in lrs]
    if family.optimizer is None:
        layers = f"per-layer init and LR multipliers of {family.parametrization.name}" if family.parametrization else "one LR for every parameter"
        notes = [f"the recipe's {config.optimizer.describe()}; {layers}"]
    else:
        models = {seed: family.instantiate(family.base_width, seed)[0] for _, seed in runs}
        (lr, seed), width = runs[0], family.base_width
        notes = [f"the family's own {describe(family.optimizer(models[seed], lr), lr)} (width {width}, LR {lr:g})",
                 f"not applied, the family's optimizer keeps its own: the recipe's {config.optimizer.describe()}",
                 "the recipe scales every param group's LR by its schedule"]
    if len(widths) > 1:  # at the base width a μP hidden LR and a forgotten one look the same: show the widest too
        reading = read_model(family, widths)
        notes += [line for line in (lr_by_role(reading),) if line] + unapplied_keys(reading)
    notes += config.describe_schedule()
    if stacking == "none" or len(runs) == 1:
        return notes + ["runs train one by one" + (" (stacking='none')" if stacking == "none" else ": one run per width")]
    how = {"auto": "chunk size timed per width", "all": "all runs of a width at once",
           "compiled": "all runs of a width at once, the step compiled"}[stacking]
    if family.optimizer is None:
        return notes + [f"runs stack ({how})"]
    try:
        form = own_stacked_form(family, [models[seed] for _, seed in runs], [lr for lr, _ in runs])
    except NoStackedForm as exc:
        return notes + [f"runs train one by one: {exc}"]
    per_run = f", per run: {', '.join(form.per_run())}" if form.per_run() else ""
    return notes + [f"runs stack ({how}): {form.source} as the batched {form.optimizer.__name__}{per_run}"]


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
