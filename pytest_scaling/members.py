"""How the K runs of one training group hold parameters, run forward and take steps.

``SingleRun`` is one model as written (K = 1; any optimizer, the user's own included).
``StackedRuns`` holds K runs of one width as parameters with a leading run dimension and
runs them as one computation (``torch.func.vmap`` over ``functional_call``), with one
optimizer whose LR is a per-run vector. A family's own optimizer stacks when its runs' optimizers
have an exact batched form (``optim.stacked_form``); ``unstackable_reason`` says when they have not.
The training loop in ``train.py`` is the same for both.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .contract import logits_of
from .family import ModelFamily
from .optim import NoStackedForm, StackedForm, epsilon_probe, stacked_form
from .probes import ProbeRecorder, probing

OptimizerFactory = Callable[[list[dict], "float | torch.Tensor"], torch.optim.Optimizer]


def own_stacked_form(family: ModelFamily, models: Sequence[nn.Module], lrs: Sequence[float]) -> StackedForm:
    """The batched form of the family's own optimizer, built once per run (``models[i]`` at ``lrs[i]``)."""
    optimizers = [family.optimizer(model, lr) for model, lr in zip(models, lrs)]
    return stacked_form(optimizers, [dict(model.named_parameters()) for model in models])


def draws_random_numbers(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether the model's training-mode forward draws random numbers (dropout, say): two forwards of one batch under
    two seeds differ. The caller's random stream is left as it was."""
    model.train()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        outputs = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            outputs.append(logits_of(model(x)))
    return not torch.equal(*outputs)


def unstackable_reason(family: ModelFamily, width: int, lrs: Sequence[float], seeds: Sequence[int]) -> str | None:
    """Why the runs ``(lrs[i], seeds[i])`` cannot train stacked, in one line; None when they can.

    A model whose forward draws random numbers trains alone: stacked runs would draw their masks together, so a run's
    draws (and its verdicts) would depend on which runs the planner's timings put beside it. A family's own optimizer
    stacks only where it has an exact batched form."""
    x, _ = family.task.batch(2, torch.Generator().manual_seed(0))
    if draws_random_numbers(family.instantiate(width, seeds[0])[0], x):
        return "its forward draws random numbers (dropout), which stacked runs would draw together"
    if family.optimizer is None:
        return None
    models = {s: family.instantiate(width, s)[0] for s in dict.fromkeys(seeds)}
    try:
        own_stacked_form(family, [models[s] for s in seeds], lrs)
    except NoStackedForm as exc:
        return str(exc)
    return None


class SingleRun:
    """One run: the model itself, stepped by a float-LR optimizer."""

    k = 1

    def __init__(self, family: ModelFamily, width: int, lr: float, seed: int, make_optimizer: OptimizerFactory, device: torch.device):
        model, groups = family.instantiate(width, seed)
        self.model = model.to(device).train()
        self.named = dict(self.model.named_parameters())
        self.optimizer = family.optimizer(self.model, lr) if family.optimizer else make_optimizer(groups, lr)
        self.peak_lrs = [g["lr"] for g in self.optimizer.param_groups]

    @property
    def module(self) -> nn.Module:
        """The module whose train/eval mode the runs' forward follows."""
        return self.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits with a leading run dimension of 1 (x has one too)."""
        return logits_of(self.model(x[0])).unsqueeze(0)

    def clip_(self, max_norm: float) -> None:
        nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)

    def release(self) -> None:
        """Nothing to release: a single run is never compiled."""

    def probe(self, index: int, x: torch.Tensor) -> ProbeRecorder:
        with torch.no_grad(), probing(self.model) as recorder:
            self.model(x)
        return recorder

    def adam_stats(self) -> list[dict[str, tuple[float, float]]]:
        """Per run: {parameter: (RMS of sqrt(v_hat), fraction of coordinates with sqrt(v_hat) < eps)}."""
        return [{n: (e.sqrt_v_rms, e.frac_below_eps) for n, e in epsilon_probe(self.optimizer, self.named).items()}]


#: ``torch.compile`` mode per device type for the compiled stacked forward: on CUDA, CUDA graphs replay the step's
#: kernels without per-kernel host work; elsewhere inductor's fused kernels.
COMPILE_MODES = {"cuda": "reduce-overhead"}


class StackedRuns:
    """K runs of one width as one vmapped computation; run i trains with ``lrs[i]`` from ``seeds[i]``.

    A family's own optimizer is built once per run and translated into one batched optimizer;
    ``optim.NoStackedForm`` (raised before any training) says why when that is not exact. ``compiled``: the vmapped
    forward (and so its backward) runs through ``torch.compile`` until ``release()``."""

    def __init__(
        self,
        family: ModelFamily,
        width: int,
        lrs: Sequence[float],
        seeds: Sequence[int],
        make_optimizer: OptimizerFactory,
        device: torch.device,
        compiled: bool = False,
    ):
        built = {s: family.instantiate(width, s) for s in dict.fromkeys(seeds)}
        self.template, groups = built[seeds[0]]
        self.k = len(lrs)
        params, self.buffers = stack_module_state([built[s][0] for s in seeds])
        self.template.to(device).train()
        self.params = {n: p.detach().to(device).requires_grad_(True) for n, p in params.items()}
        self.buffers = {n: b.to(device) for n, b in self.buffers.items()}
        self.named = self.params
        if family.optimizer is not None:
            self.optimizer = own_stacked_form(family, [built[s][0] for s in seeds], lrs).build(self.params)
        else:
            lr = torch.tensor(lrs, dtype=torch.float32, device=device)
            name_of = {id(p): n for n, p in self.template.named_parameters()}
            stacked_groups = [{**g, "params": [self.params[name_of[id(p)]] for p in g["params"]]} for g in groups]
            self.optimizer = make_optimizer(stacked_groups, lr)
        self.peak_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.compiled = compiled
        self._forward = self._stacked_forward
        if compiled:
            self._forward = torch.compile(self._stacked_forward, mode=COMPILE_MODES.get(device.type), dynamic=False)

    @property
    def module(self) -> nn.Module:
        """The module whose train/eval mode the runs' forward follows."""
        return self.template

    def _member_forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return logits_of(functional_call(self.template, (params, buffers), (x,)))

    def _stacked_forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return vmap(self._member_forward, in_dims=(0, 0, 0), randomness="different")(params, buffers, x)

    def release(self) -> None:
        """Back to the eager forward, and the compiled one's cache entries dropped: each group compiles its own
        model, and kept entries would pile up on one function until the compiler's recompile limit silently sent
        later groups back to eager."""
        if self.compiled:
            drop_compiled_forwards()
            self._forward, self.compiled = self._stacked_forward, False


    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # vmap runs ops without a batching rule (CPU flash attention behind F.scaled_dot_product_attention) member by
        # member and warns about it; the stacking planner has already timed that cost against training one by one.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented "
                                    "the batching rule")
            return self._forward(self.params, self.buffers, x)

    def clip_(self, max_norm: float) -> None:
        """Per-run global-norm clipping, as ``clip_grad_norm_`` does for one run."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.pow(2).reshape(self.k, -1).sum(1) for g in grads]).sum(0).sqrt()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))

    def probe(self, index: int, x: torch.Tensor) -> ProbeRecorder:
        member = {n: p[index].detach() for n, p in self.params.items()}
        buffers = {n: b[index] for n, b in self.buffers.items()}
        with torch.no_grad(), probing(self.template) as recorder:
            functional_call(self.template, (member, buffers), (x,))
        return recorder

    def adam_stats(self) -> list[dict[str, tuple[float, float]]]:
        stats = epsilon_probe(self.optimizer, self.named, per_run=True)
        return [{n: (e.sqrt_v_rms[i], e.frac_below_eps[i]) for n, e in stats.items()} for i in range(self.k)]


def drop_compiled_forwards() -> None:
    """Drop every compiled stacked forward's cache entries (see ``StackedRuns.release``)."""
    torch._dynamo.eval_frame.remove_from_cache(StackedRuns._stacked_forward)
