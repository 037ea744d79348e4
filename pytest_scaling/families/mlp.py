"""The built-in MLP family: input -> depth x hidden(width) -> classes, ReLU."""

from __future__ import annotations

import functools

from torch import nn

from ..family import ModelFamily
from ..parametrization import Parametrization
from ._common import parametrization_label, require_input_kind
from ..tasks import Task, teacher_student


class MLP(nn.Sequential):
    """``depth`` hidden layers of size ``width``: one input matrix, depth-1 hidden, one readout."""

    def __init__(self, width: int, input_dim: int, n_outputs: int, depth: int = 3, bias: bool = True):
        if depth < 1:
            raise ValueError(f"MLP depth must be >= 1, got {depth}")
        layers: list[nn.Module] = [nn.Linear(input_dim, width, bias=bias), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width, bias=bias), nn.ReLU()]
        layers.append(nn.Linear(width, n_outputs, bias=bias))
        super().__init__(*layers)


def mlp(
    *,
    depth: int = 3,
    parametrization: "str | Parametrization | None" = "mup",
    task: Task | None = None,
    base_width: int = 64,
    widths: tuple[int, ...] = (64, 128, 256, 512),
    bias: bool = True,
    name: str | None = None,
) -> ModelFamily:
    """An MLP family on ``task`` (default: a teacher-student classification task)."""
    task = task if task is not None else teacher_student()
    require_input_kind(task, "features", "MLP")
    build = functools.partial(MLP, input_dim=task.input_dim, n_outputs=task.n_outputs, depth=depth, bias=bias)
    return ModelFamily(
        name=name or f"mlp-d{depth}-{parametrization_label(parametrization)}",
        build=build,
        task=task,
        base_width=base_width,
        widths=widths,
        parametrization=parametrization,
    )
