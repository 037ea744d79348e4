"""What the library asks of its callers, checked before any training: a family that fits its task, a training
config, a device. Each failure is one line that names the argument or says what the task gives and what the model
returned, instead of an error from deep inside torch halfway through a sweep.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import torch

from .family import ModelFamily

if TYPE_CHECKING:
    from .tasks import Task

CONTRACT_BATCH = 4
"""Examples in the batch the contract's forward pass reads."""
_CONTRACT_SEED = 0

# Families that passed check_family, and the widths each was built at; weak, so a family dropped by its caller is not
# kept alive.
_FITTING: weakref.WeakSet[ModelFamily] = weakref.WeakSet()
_BUILT: weakref.WeakKeyDictionary[ModelFamily, set[int]] = weakref.WeakKeyDictionary()


class FamilyError(ValueError):
    """A family whose model does not fit its task; the one-line message says what the task gives and what the model returned."""


def first_line(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (just the type name when the message is empty)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def require_family(family: object, name: str = "family") -> ModelFamily:
    """``family`` if it is a ModelFamily, else a one-line TypeError that starts with ``name`` (the argument)."""
    if not isinstance(family, ModelFamily):
        raise TypeError(f"{name} must be a pytest_scaling.ModelFamily, got {type(family).__name__}")
    return family


def logits_of(output: Any) -> Any:
    """The logits in a model's output: the output itself, or its tensor ``.logits`` (as Hugging Face models return)."""
    if not isinstance(output, torch.Tensor) and isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    return output


def _shape(shape: torch.Size) -> str:
    return str(list(shape))


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _task_gives(task: Task, x: torch.Tensor) -> str:
    """What the task feeds the model and asks of it, e.g. ``float32 features [4, 32] and 10 classes``."""
    if task.input_kind == "tokens":
        return f"{_dtype(x.dtype)} tokens {_shape(x.shape)} (vocab {task.input_dim}) and next-token targets over {task.n_outputs} tokens"
    return f"{_dtype(x.dtype)} {task.input_kind} {_shape(x.shape)} and {task.n_outputs} classes"


def _misfit(output: Any, expected: tuple[int, ...], call: str) -> str | None:
    """What is wrong with the output of ``call`` (e.g. ``build(64)``), or None when it fits."""
    logits = logits_of(output)
    if not isinstance(logits, torch.Tensor):
        return f"{call}(x) returned {type(output).__name__}, not a tensor of logits (nor an object with a tensor .logits)"
    if tuple(logits.shape) != expected:
        return f"{call} returned logits of shape {_shape(logits.shape)} (expected {list(expected)})"
    if not logits.is_floating_point():
        return f"{call} returned {_dtype(logits.dtype)} logits (expected a floating dtype)"
    if not torch.isfinite(logits).all():
        kind = "NaN" if torch.isnan(logits).any() else "infinite"
        return f"{call} returned {kind} logits at initialisation (before any training step): check the init"
    return None


def check_family(family: ModelFamily) -> None:
    """Check once per family object that its model, built at the base width as training builds it, maps a task batch
    to finite float logits of the targets' shape plus ``task.n_outputs``; a ``FamilyError`` in one line if not.

    Deterministic, and leaves the global RNG as it was.
    """
    require_family(family)
    if family in _FITTING:
        return
    problem = misfit_at(family, family.base_width)
    if problem is not None:
        raise FamilyError(problem)
    _FITTING.add(family)


def misfit_at(family: ModelFamily, width: int) -> str | None:
    """Why ``family`` built at ``width`` as training builds it does not map a task batch to finite float logits of the
    targets' shape plus ``task.n_outputs``, in one line; None when it does (an error building it propagates).
    Deterministic; leaves the RNG as it was."""
    task, call = family.task, f"build({width})"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_CONTRACT_SEED)
        model, _ = family.instantiate(width, seed=_CONTRACT_SEED)
        x, y = task.batch(CONTRACT_BATCH, torch.Generator().manual_seed(_CONTRACT_SEED))
        prefix = f"family {family.name!r} does not fit task {task.name}: the task gives {_task_gives(task, x)}; "
        try:
            with torch.no_grad():
                output = model(x)
        except Exception as exc:  # noqa: BLE001 - any failure of the forward pass is the family's misfit
            return f"{prefix}{call}(x) raised {first_line(exc)}"
        problem = _misfit(output, (*y.shape, task.n_outputs), call)
    return None if problem is None else prefix + problem


def check_widths_build(family: ModelFamily, widths: tuple[int, ...]) -> None:
    """Build ``family`` at each of ``widths`` once (the base width's forward pass is ``check_family``'s), so that a width
    that breaks the model (a head count that does not divide it) is a one-line ``FamilyError`` before any training."""
    built = _BUILT.setdefault(family, set())
    for width in widths:
        if width in built:
            continue
        with torch.random.fork_rng(devices=[]):
            try:
                family.build(width)
            except Exception as exc:  # noqa: BLE001 - any failure to build is the width's problem
                raise FamilyError(f"family {family.name!r} cannot be built at width {width}: {first_line(exc)}") from None
        built.add(width)


def torch_device(device: object) -> torch.device:
    """``device`` as a ``torch.device`` that this machine has; one line naming the argument if not."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        resolved = torch.device(device)
        torch.empty(0, device=resolved)
    except Exception as exc:  # noqa: BLE001 - torch says "unknown type" and "not compiled with CUDA" in different types
        raise ValueError(f"device {str(device)!r} cannot be used: {first_line(exc)}") from None
    return resolved
