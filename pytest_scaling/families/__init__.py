"""Built-in model families: ``mlp(...)`` and ``gpt(...)``, and the reference families the reference suite runs on."""

from .gpt import gpt
from .mlp import mlp
from .reference import reference_gpt, reference_mlp

__all__ = ["gpt", "mlp", "reference_gpt", "reference_mlp"]
