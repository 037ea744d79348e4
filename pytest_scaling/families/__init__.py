"""Built-in model families: ``mlp(...)`` and ``gpt(...)``, the reference families the reference suite runs on, and
``huggingface(config)`` for a ``transformers`` causal LM (the ``[hf]`` extra)."""

from .gpt import gpt
from .huggingface import huggingface
from .mlp import mlp
from .reference import reference_gpt, reference_mlp

__all__ = ["gpt", "huggingface", "mlp", "reference_gpt", "reference_mlp"]
