"""Interventions: one known fix each, applied to any family without editing its code.

An intervention returns a new :class:`ModelFamily` whose ``build``, ``optimizer``, ``loss``, ``parametrization`` or
``at_depth`` wraps the user's: the readout zero-initialised or multiplied by 1/m, attention logits at 1/d or
qk-normalised, z-loss added, Adam's ε lowered, the hidden matrices' LR set to μP's η/m, weight decay made independent
of the per-layer LR, residual branches scaled by 1/√L. Wrappers are frozen dataclasses, so the new family's
fingerprint (its run-cache identity) is the user's plus the intervention's. ``unavailable(family)`` says in one line
why an intervention cannot apply to a family (nothing to change, or already so), before anything trains.
``INTERVENTIONS`` holds them by name; each property names the ones that can restore it (``Property.interventions``).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .attention_edit import AttentionEdit, attention_calls, edit_attention
from .families.gpt import CrossEntropyWithZLoss, z_loss_term
from .family import ModelFamily
from .parametrization import _InputScale, get_parametrization, with_depth_lr, with_zero_readout

#: The z-loss weight the intervention adds: PaLM's 1e-4 is meant for runs of 10⁵ steps; over the suite's few hundred
#: it barely moves log Z, so the intervention tests the fix at a weight that acts within the sweep.
Z_LOSS_WEIGHT = 1e-2
#: The factor the ε intervention multiplies Adam's ε by.
EPS_FACTOR = 1e-4


# --- wrappers the new family is made of (frozen dataclasses: fingerprinted by value) ---

@dataclass(frozen=True)
class EditedBuild:
    """``build(width)``, then ``edit(model, width)`` on the model it returns."""

    build: Callable[[int], nn.Module]
    edit: Callable[[nn.Module, int], None]

    def __call__(self, width: int) -> nn.Module:
        model = self.build(width)
        self.edit(model, width)
        return model


@dataclass(frozen=True)
class EditedOptimizer:
    """The family's own ``optimizer(model, lr)``, then ``edit(optimizer, model, lr)`` on the optimizer it returns."""

    optimizer: Callable[[nn.Module, float], torch.optim.Optimizer]
    edit: Callable[[torch.optim.Optimizer, nn.Module, float], None]

    def __call__(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        optimizer = self.optimizer(model, lr)
        self.edit(optimizer, model, lr)
        return optimizer


@dataclass(frozen=True)
class WithZLoss:
    """The family's own objective plus ``weight`` · mean(log Z²)."""

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    weight: float

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, targets) + self.weight * z_loss_term(logits)


@dataclass(frozen=True)
class AtDepth:
    """``at_depth(n)`` of an intervened family: the user's family at depth n, with the intervention applied."""

    at_depth: Callable[[int], ModelFamily]
    intervention: "Intervention"
    base_depth: int | None = None

    def __call__(self, n_layers: int) -> ModelFamily:
        return self.intervention.apply(self.at_depth(n_layers), base_depth=self.base_depth)


# --- edits ---

@dataclass(frozen=True)
class ZeroParameters:
    names: tuple[str, ...]

    def __call__(self, model: nn.Module, width: int) -> None:
        with torch.no_grad():
            for name in self.names:
                model.get_parameter(name).zero_()


@dataclass(frozen=True)
class ScaleInputs:
    """Multiply the input of each named module by base_width / width (a Linear's weight times 1/m)."""

    modules: tuple[str, ...]
    base_width: int

    def __call__(self, model: nn.Module, width: int) -> None:
        for name in self.modules:
            model.get_submodule(name).register_forward_pre_hook(_InputScale(self.base_width / width))


@dataclass(frozen=True)
class EditAttention:
    edit: AttentionEdit

    def __call__(self, model: nn.Module, width: int) -> None:
        edit_attention(model, self.edit)


@dataclass(frozen=True)
class ScaleResidualUpdates:
    """Each block of ``blocks`` (a ModuleList) adds ``factor`` times its update to the residual stream: a block
    mapping x to x + f(x) maps it to x + factor·f(x)."""

    blocks: str
    factor: float

    def __call__(self, model: nn.Module, width: int) -> None:
        for block in model.get_submodule(self.blocks):
            block.register_forward_hook(_ResidualScale(self.factor))


class _ResidualScale:
    """Forward hook: the block's output x + f(x) becomes x + factor·f(x) (a tuple output's first element)."""

    def __init__(self, factor: float):
        self.factor = factor

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> Any:
        x, out = args[0], output[0] if isinstance(output, tuple) else output
        if not isinstance(x, torch.Tensor) or not isinstance(out, torch.Tensor) or x.shape != out.shape:
            raise ValueError(f"{type(module).__name__} does not map the residual stream to its own shape: cannot scale "
                             "its update")
        scaled = x + self.factor * (out - x)
        return (scaled, *output[1:]) if isinstance(output, tuple) else scaled


@dataclass(frozen=True)
class ScaleEps:
    factor: float

    def __call__(self, optimizer: torch.optim.Optimizer, model: nn.Module, lr: float) -> None:
        for group in optimizer.param_groups:
            if "eps" in group:
                group["eps"] = group["eps"] * self.factor


def decay_follows_lr(group: dict[str, Any]) -> bool:
    """Whether a param group's weight decay removes lr·λ a step (torch AdamW, or this package's AdamW with
    ``independent_wd=False``), so that it follows the group's LR."""
    return bool(group.get("decoupled_weight_decay")) or group.get("independent_wd") is False


def _decay_per_step(group: dict[str, Any]) -> float | None:
    """The fraction of a parameter a group's coupled decay removes a step (lr·λ); None for a decay that does not
    follow the LR (or none)."""
    return float(group["lr"]) * group["weight_decay"] if decay_follows_lr(group) and group.get("weight_decay") else None


def groups_by_parameter(family: ModelFamily, width: int, lr: float) -> dict[str, dict[str, Any]]:
    """Each parameter's param group (its options) in the family's own optimizer at ``width`` and LR ``lr``."""
    assert family.optimizer is not None
    model, _ = family.instantiate(width, 0)
    by_id = {id(p): group for group in family.optimizer(model, lr).param_groups for p in group["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters() if id(p) in by_id}


def _regroup(optimizer: torch.optim.Optimizer, model: nn.Module,
             overrides: Callable[[str, dict[str, Any]], dict[str, Any]]) -> None:
    """Rebuild the optimizer's groups so that each parameter gets its group's options updated by ``overrides(name,
    group)``; parameters whose options end up equal stay together. Called before any step (no state to move)."""
    name_of = {id(p): name for name, p in model.named_parameters()}
    groups: list[dict[str, Any]] = []
    for group in optimizer.param_groups:
        options = {k: v for k, v in group.items() if k not in ("params", "initial_lr")}
        split: dict[tuple, dict[str, Any]] = {}
        for p in group["params"]:
            changed = {**options, **overrides(name_of[id(p)], group)}
            key = tuple(sorted((k, repr(v)) for k, v in changed.items()))
            split.setdefault(key, {**changed, "params": []})["params"].append(p)
        groups += split.values()
    optimizer.param_groups.clear()
    for group in groups:
        optimizer.add_param_group(group)


@dataclass(frozen=True)
class DecayAsAtBaseWidth:
    """Each coupled decay (lr·λ a step) set to remove, a step, what the parameter's decay removes at the base width:
    λ' = (lr·λ at the base width) / the group's LR here."""

    family: ModelFamily

    def __call__(self, optimizer: torch.optim.Optimizer, model: nn.Module, lr: float) -> None:
        base = groups_by_parameter(self.family, self.family.base_width, lr)

        def decay(name: str, group: dict[str, Any]) -> dict[str, Any]:
            target = _decay_per_step(base[name]) if name in base else None
            if _decay_per_step(group) is None or target is None or not group["lr"] > 0:
                return {}
            return {"weight_decay": target / float(group["lr"])}

        _regroup(optimizer, model, decay)


@dataclass(frozen=True)
class SetParameterLRs:
    """Each parameter ``factors(model)`` names trains at its LR times its factor, every other option kept (a coupled
    decay keeps removing what it removed a step). With ``family`` given, the factor multiplies the parameter's LR in
    the family's optimizer at the base width (the user's per-layer constants, without their width scaling); otherwise
    its LR in this optimizer."""

    factors: Callable[[nn.Module], dict[str, float]]
    family: ModelFamily | None = None

    def __call__(self, optimizer: torch.optim.Optimizer, model: nn.Module, lr: float) -> None:
        base = groups_by_parameter(self.family, self.family.base_width, lr) if self.family is not None else {}
        factors = self.factors(model)

        def set_lr(name: str, group: dict[str, Any]) -> dict[str, Any]:
            if name not in factors:
                return {}
            target = float(base[name]["lr"] if name in base else group["lr"]) * factors[name]
            shrink = _decay_per_step(group)
            return {"lr": target, **({"weight_decay": shrink / target} if shrink is not None and target > 0 else {})}

        _regroup(optimizer, model, set_lr)


@dataclass(frozen=True)
class HiddenOverM:
    """Factors 1/m for the family's hidden matrices (μP's Adam LR for them), m each one's own fan-in ratio."""

    family: ModelFamily

    def __call__(self, model: nn.Module) -> dict[str, float]:
        roles = self.family.roles.params
        return {name: 1.0 / roles[name].multiplier_at(p.shape) for name, p in model.named_parameters()
                if roles[name].role == "hidden"}


@dataclass(frozen=True)
class InBlocks:
    """Factor ``factor`` for every parameter under the module ``blocks``."""

    blocks: str
    factor: float

    def __call__(self, model: nn.Module) -> dict[str, float]:
        return {name: self.factor for name, _ in model.named_parameters() if name.startswith(self.blocks + ".")}


# --- the interventions ---

class Intervention(abc.ABC):
    """A known fix, applicable to a family as a wrapper. ``name`` is its key, ``summary`` what it does in a few
    words (the diagnosis's wording)."""

    name: str = ""
    summary: str = ""

    @abc.abstractmethod
    def unavailable(self, family: ModelFamily) -> str | None:
        """Why it cannot apply to ``family``, in one line; None when it can."""

    @abc.abstractmethod
    def changes(self, family: ModelFamily, base_depth: int | None) -> dict[str, Any]:
        """The ModelFamily fields it replaces."""

    def apply(self, family: ModelFamily, base_depth: int | None = None) -> ModelFamily:
        """``family`` with the intervention, named ``family+name``; ``at_depth`` gives the intervened family at
        each depth."""
        reason = self.unavailable(family)
        if reason is not None:
            raise ValueError(f"intervention {self.name!r} does not apply to family {family.name!r}: {reason}")
        fields = self.changes(family, base_depth)
        if family.at_depth is not None and "at_depth" not in fields:
            fields["at_depth"] = AtDepth(family.at_depth, self, base_depth)
        if family.cache_key is not None:
            fields["cache_key"] = f"{family.cache_key}+{self.name}"
        return dataclasses.replace(family, name=f"{family.name}+{self.name}", **fields)

    def __repr__(self) -> str:
        return f"<intervention {self.name}>"


def _readout_names(family: ModelFamily) -> tuple[list[str], list[str]]:
    """(output-role parameters, other parameters tied to an output use) of the family."""
    params = family.roles.params
    own = [name for name, info in params.items() if info.role == "output"]
    tied = [name for name, info in params.items() if info.role != "output" and any(r == "output" for _, r in info.tied_uses)]
    return own, tied


class ZeroReadout(Intervention):
    name, summary = "zero_readout", "zero readout init"

    def unavailable(self, family: ModelFamily) -> str | None:
        own, tied = _readout_names(family)
        if tied and not own:
            return "the readout is tied to the embedding: zeroing it would zero the input"
        if not own:
            return "no output-role (readout) parameter found"
        if all(family.roles.params[name].base_std == 0 for name in own):
            return "the readout is already initialised at zero"
        return None

    def changes(self, family: ModelFamily, base_depth: int | None) -> dict[str, Any]:
        if family.parametrization is not None:  # the plugin re-initialises after build
            return {"parametrization": with_zero_readout(family.parametrization)}
        return {"build": EditedBuild(family.build, ZeroParameters(tuple(_readout_names(family)[0])))}


class ReadoutMultiplier(Intervention):
    name, summary = "readout_multiplier", "readout × 1/m"

    def unavailable(self, family: ModelFamily) -> str | None:
        return None if self._modules(family) else "no readout layer (output-role nn.Linear or Conv1D) found"

    @staticmethod
    def _modules(family: ModelFamily) -> tuple[str, ...]:
        model, _ = family.instantiate(family.base_width, 0)
        uses = [use for name, info in family.roles.params.items()
                for use, role in ((name, info.role), *info.tied_uses) if role == "output"]
        owners = [use.rpartition(".")[0] for use in uses]
        return tuple(owner for owner in dict.fromkeys(owners)
                     if isinstance(model.get_submodule(owner), nn.Linear) or type(model.get_submodule(owner)).__name__ == "Conv1D")

    def changes(self, family: ModelFamily, base_depth: int | None) -> dict[str, Any]:
        return {"build": EditedBuild(family.build, ScaleInputs(self._modules(family), family.base_width))}


def _calls(family: ModelFamily, width: int) -> list:
    model, _ = family.instantiate(width, 0)
    x, _ = family.task.batch(2, torch.Generator().manual_seed(0))
    return attention_calls(model, x)


class AttentionOverD(Intervention):
    name, summary = "attention_1_over_d", "attention 1/d"

    def unavailable(self, family: ModelFamily) -> str | None:
        base, wide = _calls(family, family.base_width), _calls(family, 2 * family.base_width)
        if not base:
            return "no attention call (scaled_dot_product_attention or nn.MultiheadAttention) in the forward pass"
        if base[0].head_dim == wide[0].head_dim:
            return "the head size does not grow with width: 1/d and 1/√d differ by a constant there"
        if math.isclose(base[0].scale * base[0].head_dim, wide[0].scale * wide[0].head_dim, rel_tol=1e-3):
            return "the attention scale already falls as 1/d"
        return None

    def changes(self, family: ModelFamily, base_depth: int | None) -> dict[str, Any]:
        edit = AttentionEdit(base_head_dim=_calls(family, family.base_width)[0].head_dim)
        return {"build": EditedBuild(family.build, EditAttention(edit))}


class QKNorm(Intervention):
    name, summary = "qk_layernorm", "qk-layernorm"

    def unavailable(self, family: ModelFamily) -> str | None:
        calls = _calls(family, family.base_width)
        if not any(call.kind == "sdpa" for call in calls):
            return "no scaled_dot_product_attention call to normalise q and k in"
        return None

    def changes(self, family: ModelFamily, base_depth: int | None) -> dict[str, Any]:
        return {"build": EditedBuild(family.build, EditAttention(AttentionEdit(qk_norm=True)))}


class ZLoss(Intervention):
    name, summary = "z_loss", f"z-loss {Z_LOSS_WEIGHT:g}"

    def unavailable(self, family: ModelFamily) -> str | None:
        return None

    def changes(self, family: ModelFamily, base_depth: int | None) -> dict[str, Any]:
        if family.loss is None:
            return {"loss": CrossEntropyWithZLoss(Z_LOSS_WEIGHT)}
        return {"loss": WithZLoss(family.loss, Z_LOSS_WEIGHT)}


class LowerEps(Intervention):
    name, summary = "lower_eps", f"Adam ε × {EPS_FACTOR:g}"

    def unavailable(self, family: ModelFamily) -> str | None:
        if family.optimizer is None:
            return "the family trains with the check's optimizer, whose ε is the grid's (EpsilonGrid.eps)"
        if not any("eps" in group for group in groups_by_parameter(family, family.base_width, 1e-3).values()):
            return "the optimizer has no ε"
        return None

    def changes(self, family: ModelFamily, base_depth: int | None) -> dict[str, Any]:
        return {"optimizer": EditedOptimizer(family.optimizer, ScaleEps(EPS_FACTOR))}


class DecoupledDecay(Intervention):
    name, summary = "decay_at_base_lr", "decay independent of layer LR"

    def unavailable(self, family: ModelFamily) -> str | None:
        if family.optimizer is None:
            return "the check's optimizer already decays independently of the LR"
        base = groups_by_parameter(family, family.base_width, 1e-3)
        if not any(_decay_per_step(group) for group in base.values()):
            return "no parameter group decays coupled to its LR"
        wide = groups_by_parameter(family, 2 * family.base_width, 1e-3)
        if all(math.isclose(_decay_per_step(base[name]) or 0.0, _decay_per_step(group) or 0.0, rel_tol=1e-6)
               for name, group in wide.items() if name in base):
            return "the decay already removes the same fraction a step at every width"
        return None

    def changes(self, family: ModelFamily, base_depth: int | None) -> dict[str, Any]:
        return {"optimizer": EditedOptimizer(family.optimizer, DecayAsAtBaseWidth(family))}


class MupHiddenLR(Intervention):
    name, summary = "mup_hidden_lr", "μP hidden LR η/m"

    def unavailable(self, family: ModelFamily) -> str | None:
        if not any(info.role == "hidden" for info in family.roles.params.values()):
            return "no hidden matrix (both dimensions growing with width)"
        if family.optimizer is None and family.parametrization is None:
            return "the family trains every parameter at one LR as written (give it an optimizer or a parametrization)"
        return None

    def changes(self, family: ModelFamily, base_depth: int | None) -> dict[str, Any]:
        if family.optimizer is None:
            p = get_parametrization(family.parametrization)
            return {"parametrization": dataclasses.replace(p, name=f"{p.name}+mup-hidden-lr", c=(p.c[0], 1.0, p.c[2]))}
        return {"optimizer": EditedOptimizer(family.optimizer, SetParameterLRs(HiddenOverM(family), family))}


def residual_blocks(model: nn.Module) -> tuple[str, int] | None:
    """The model's stack of residual blocks: the ModuleList or Sequential of same-class, parameterised modules holding
    the most parameters, as (its name, its length); None without one."""
    best: tuple[int, str, int] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)) or not len(module):
            continue
        children = list(module)
        if len({type(c) for c in children}) != 1 or not all(any(True for _ in c.parameters()) for c in children):
            continue
        size = sum(p.numel() for p in module.parameters())
        if best is None or size > best[0]:
            best = (size, name, len(children))
    return None if best is None else (best[1], best[2])


#: Growth of the residual stream's size at initialisation per doubling of depth (log2 ratio) above which its branches
#: are taken to be unscaled: unscaled branches add up towards √L (0.5 a doubling; the zoo's, with its embedding still a
#: large part of the stream at 2-8 layers, +0.30), 1/√L ones keep it flat (the zoo's clean model: −0.01).
UNSCALED_STREAM_GROWTH = 0.15


def stream_growth(family: ModelFamily) -> float | None:
    """How the size (mean |x|) of the block stack's output at initialisation grows per doubling of depth, between the
    family's own depth and four times it (log2 of the ratio, halved); None without a block stack."""
    sizes = []
    x, _ = family.task.batch(4, torch.Generator().manual_seed(0))
    found = residual_blocks(family.instantiate(family.base_width, 0)[0])
    if found is None or family.at_depth is None:
        return None
    for depth in (found[1], 4 * found[1]):
        model, _ = family.at_depth(depth).instantiate(family.base_width, 0)
        blocks = residual_blocks(model)
        if blocks is None:
            return None
        seen: list[torch.Tensor] = []
        last = model.get_submodule(blocks[0])[-1]
        handle = last.register_forward_hook(lambda module, args, out: seen.append(out[0] if isinstance(out, tuple) else out))
        with torch.no_grad():
            model(x)
        handle.remove()
        sizes.append(float(seen[-1].abs().mean()))
    return math.log2(sizes[1] / sizes[0]) / 2 if sizes[0] > 0 else None


class ResidualScaling(Intervention):
    name, summary = "residual_1_over_sqrt_depth", "Depth-μP 1/√L residuals"

    def unavailable(self, family: ModelFamily) -> str | None:
        if family.at_depth is None:
            return "the family gives no at_depth"
        if residual_blocks(family.instantiate(family.base_width, 0)[0]) is None:
            return "no stack of repeated blocks (a ModuleList or Sequential of one block class) found"
        if family.optimizer is None and family.parametrization is None:
            return "the family trains every parameter at one LR as written (give it an optimizer or a parametrization)"
        growth = stream_growth(family)
        if growth is not None and growth <= UNSCALED_STREAM_GROWTH:
            return (f"the residual stream's size at initialisation grows {growth:+.2f} per doubling of depth: its "
                    "branches are already scaled")
        return None

    def changes(self, family: ModelFamily, base_depth: int | None) -> dict[str, Any]:
        blocks, depth = residual_blocks(family.instantiate(family.base_width, 0)[0]) or ("", 0)
        base_depth = base_depth or depth
        factor = (depth / base_depth) ** -0.5
        fields: dict[str, Any] = {"build": EditedBuild(family.build, ScaleResidualUpdates(blocks, factor)),
                                  "at_depth": AtDepth(family.at_depth, self, base_depth)}
        if family.optimizer is None:
            fields["parametrization"] = with_depth_lr(family.parametrization, depth / base_depth)
        else:
            fields["optimizer"] = EditedOptimizer(family.optimizer, SetParameterLRs(InBlocks(blocks, factor)))
        return fields


INTERVENTIONS: dict[str, Intervention] = {i.name: i for i in (
    ZeroReadout(), ReadoutMultiplier(), AttentionOverD(), MupHiddenLR(), QKNorm(), ZLoss(), LowerEps(),
    DecoupledDecay(), ResidualScaling())}


def get(name: str) -> Intervention:
    """An intervention by name; a one-line error naming the known ones otherwise."""
    try:
        return INTERVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown intervention {name!r}; known: {', '.join(INTERVENTIONS)}") from None
