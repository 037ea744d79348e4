"""What the plugin can read off a family before it asks about a cause: each parameter role's LR at every width, as
the optimizer holds it, and param-group keys that look like LR factors but that nothing applies.

A failing property's hint reads these first and never asks about a cause it checked and found absent (a hidden LR
already η/m is not questioned). See docs/design.md, "Hints".
"""

from __future__ import annotations

import functools
import math
import re
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from .family import ModelFamily

#: Param-group keys torch's optimizers and the plugin's training read; any other numeric key whose name says LR is a
#: factor the user's own training loop may apply and ours does not (nanoGPT-mup's ``lr_scale``).
_KNOWN_KEYS = {"lr", "initial_lr", "lr_mult"}
_LR_LIKE = re.compile(r"(^|_)(lr|learning_rate)(_|$)|lr_(scale|mult|factor)", re.IGNORECASE)
#: How the LR of a role scales with width m: the exponent of m, named.
_RULES = {0.0: "η, width-independent", -1.0: "η/m"}


def _lrs_by_parameter(family: ModelFamily, width: int) -> tuple[dict[str, float], list[str]]:
    """Each parameter's LR at base LR 1 and ``width`` as the family's optimizer (or parametrization) holds it, and the
    group keys that look like unapplied LR factors (``key=value``)."""
    model, groups = family.instantiate(width, 0)
    if family.parametrization is None and family.optimizer is not None:
        groups = family.optimizer(model, 1.0).param_groups
    by_id = {id(p): group for group in groups for p in group["params"]}
    lrs = {name: float(by_id[id(p)].get("lr", 1.0)) * float(by_id[id(p)].get("lr_mult", 1.0))
           for name, p in model.named_parameters() if id(p) in by_id}
    suspicious = sorted({f"{key}={value:g}" for group in groups for key, value in group.items()
                         if key not in _KNOWN_KEYS and _LR_LIKE.search(key) and isinstance(value, (int, float))
                         and not isinstance(value, bool) and value != 1})
    return lrs, suspicious


def read_model(family: ModelFamily, widths: Sequence[int]) -> dict[str, Any]:
    """See ``_read_model``; read once per family object and width span (every sweep's recipe and its check ask)."""
    return _read_model(family, int(min(widths)), int(max(widths)))


@functools.lru_cache(maxsize=64)
def _read_model(family: ModelFamily, narrow: int, wide: int) -> dict[str, Any]:
    """Per role (input, hidden, output, vector): its LR at the ``narrow`` and ``wide`` widths relative to base LR 1,
    and the exponent of m it follows; plus the unapplied LR-like group keys. JSON-able (callers do not change it);
    empty where the family's optimizer cannot be built (the check's own error says why elsewhere)."""
    try:
        (lrs_narrow, keys), (lrs_wide, wide_keys) = _lrs_by_parameter(family, narrow), _lrs_by_parameter(family, wide)
        roles = family.roles.params
    except Exception:  # a model the plugin cannot read here fails, with its message, where it trains
        return {}
    by_role: dict[str, dict[str, Any]] = {}
    for name, info in roles.items():
        if name not in lrs_narrow or name not in lrs_wide or info.role == "fixed":
            continue
        exponent = (math.log(lrs_wide[name] / lrs_narrow[name]) / math.log(wide / narrow)
                    if lrs_narrow[name] > 0 and lrs_wide[name] > 0 else math.nan)
        by_role.setdefault(info.role, {"lr": {}, "exponent": []})
        by_role[info.role]["lr"].setdefault(str(narrow), []).append(lrs_narrow[name])
        by_role[info.role]["lr"].setdefault(str(wide), []).append(lrs_wide[name])
        by_role[info.role]["exponent"].append(exponent)
    summary = {role: {"lr": {w: sorted(set(v)) for w, v in data["lr"].items()},
                      "exponent": sorted({round(e, 2) for e in data["exponent"] if not math.isnan(e)})}
               for role, data in by_role.items()}
    return {"widths": [narrow, wide], "roles": summary, "unapplied_lr_keys": sorted({*keys, *wide_keys})}


def lr_rule(reading: dict[str, Any], role: str) -> str | None:
    """How ``role``'s LR scales with width, in words ("η/m", "η (not scaled...)", "m^-0.5"), or None if unread; "mixed"
    when its parameters differ."""
    exponents = reading.get("roles", {}).get(role, {}).get("exponent", [])
    if len(exponents) != 1:
        return None if not exponents else "mixed: " + ", ".join(f"m^{e:g}" for e in exponents)
    exponent = float(np.round(exponents[0], 2))
    return _RULES.get(exponent, f"m^{exponent:g}")


def lr_by_role(reading: dict[str, Any]) -> str | None:
    """One line: each role's LR (× η) at the narrowest and widest width, and the rule it follows; None if unread."""
    if not reading or not reading.get("roles"):
        return None
    narrow, wide = reading["widths"]
    parts = []
    for role in ("input", "hidden", "output", "vector"):
        data = reading["roles"].get(role)
        if data:
            lrs = " → ".join(", ".join(f"{v:.3g}" for v in data["lr"][str(w)]) for w in (narrow, wide))
            parts.append(f"{role} {lrs} ({lr_rule(reading, role)})")
    return f"LR by role (× η) at widths {narrow} → {wide}, as the optimizer holds it: " + "; ".join(parts)


def unapplied_keys(reading: dict[str, Any]) -> list[str]:
    """A warning line per param-group key that looks like an LR factor and that nothing applies."""
    return [f"param group key {key} looks like an LR factor: torch's optimizers ignore it and so does this plugin's "
            "training; fold it into the group's lr, or the LR it stands for is not the one trained"
            for key in (reading or {}).get("unapplied_lr_keys", [])]


def model_facts(reading: dict[str, Any]) -> list[str]:
    """The reading as fact lines for a failure's message."""
    line = lr_by_role(reading)
    return ([f"read from the model: {line}"] if line else []) + unapplied_keys(reading)


#: A parameter whose float64 gradient RMS is below this fraction of the model's largest is one the loss does not
#: depend on: float64 round-off sits near 1e-16 of the gradients it cancels, a real gradient far above 1e-10.
_NO_GRADIENT_FRACTION = 1e-10


@functools.lru_cache(maxsize=64)
def loss_independent_parameters(family: ModelFamily, batch_size: int = 8) -> tuple[str, ...]:
    """Parameters the loss does not depend on at any point: a key's bias under softmax, which ignores a shift shared
    by every key, or a parameter no forward pass uses. Read in float64 at a random point near the base width's init
    (a zero-initialised query is given random entries, so a gradient that is zero only at init is not taken for one
    that is zero everywhere). Empty where the model cannot run in float64 here."""
    import torch

    generator = torch.Generator().manual_seed(0)
    try:
        model, _ = family.instantiate(family.base_width, 0)
        model = model.double()
        with torch.no_grad():
            for p in model.parameters():
                size = float(p.pow(2).mean().sqrt()) if p.numel() else 0.0
                scale = 0.1 * size if size > 0 else p.shape[-1] ** -0.5
                p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)
        x, y = family.task.batch(batch_size, generator)
        logits = model(x)
        loss = family.loss(logits.double(), y) if family.loss is not None else torch.nn.functional.cross_entropy(
            logits.double().reshape(-1, logits.shape[-1]), y.reshape(-1))
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    except Exception:  # a model this reading cannot run keeps every parameter asserted
        return ()
    rms = {name: 0.0 if g is None else float(g.pow(2).mean().sqrt()) for (name, _), g in zip(named, grads)}
    largest = max(rms.values(), default=0.0)
    return tuple(name for name, value in rms.items() if largest > 0 and value <= _NO_GRADIENT_FRACTION * largest)
