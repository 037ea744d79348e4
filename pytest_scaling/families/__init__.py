"""Built-in model families: ``mlp(...)`` and ``gpt(...)``."""

from .gpt import gpt
from .mlp import mlp

__all__ = ["gpt", "mlp"]
