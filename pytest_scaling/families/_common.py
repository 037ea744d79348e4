"""What the built-in families share: checking the task's input kind and naming the parametrization."""

from __future__ import annotations

from ..parametrization import Parametrization
from ..tasks import Task


def require_input_kind(task: Task, kind: str, family: str) -> None:
    if task.input_kind != kind:
        raise ValueError(f"the {family} family needs a {kind} task, got {task.name!r} with {task.input_kind} inputs")


def parametrization_label(parametrization: str | Parametrization | None) -> str:
    """A parametrization's name for family names; ``asis`` for a model trained as written."""
    return getattr(parametrization, "name", parametrization) or "asis"
