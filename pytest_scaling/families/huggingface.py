"""Hugging Face causal language models as a family: ``huggingface(config, ...)`` builds
``AutoModelForCausalLM.from_config`` at each width, from the config with its width fields scaled.

Nothing is downloaded: models are built from a config alone, with random weights (the ``[hf]`` extra installs
``transformers``). GPT-2's ``Conv1D`` layers store (in, out) and are registered as such for the width roles; HF
models return an output object whose ``logits`` the engine reads; their attention runs through
``F.scaled_dot_product_attention``, which the attention probe reads without touching the model.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

from torch import nn

from ..family import ModelFamily
from ..tasks import MarkovLanguage, Task
from ._common import parametrization_label

#: Config fields (their canonical names, which every config maps to its own: GPT-2's ``n_embd`` is ``hidden_size``).
HIDDEN, HEADS, KV_HEADS, LAYERS = "hidden_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers"


def _transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise ImportError("families.huggingface needs transformers: pip install 'pytest-scaling[hf]'") from None


@dataclasses.dataclass(frozen=True)
class ConfigAtWidth:
    """``build(width)`` of a Hugging Face config: the causal LM with each of ``width_fields`` set to its base value ×
    width / base width, the head count scaled too when ``heads == "head_size"`` (head size fixed), then
    ``per_width(config, width)`` (e.g. μP multipliers a config carries). Held as values (the config as JSON), so that
    the run cache identifies a family by them and the builder pickles to other processes."""

    config_class: str
    config_json: str
    base_width: int
    width_fields: tuple[str, ...]
    heads: Literal["head_size", "fixed"]
    per_width: Callable[[Any, int], None] | None = None

    def config_at(self, width: int, n_layers: int | None = None) -> Any:
        """The config of the model at ``width`` (and ``n_layers`` layers, if given)."""
        module, _, name = self.config_class.rpartition(".")
        config = getattr(importlib.import_module(module), name).from_dict(json.loads(self.config_json))
        head_fields = (HEADS, KV_HEADS) if self.heads == "head_size" else ()
        for field in dict.fromkeys((*self.width_fields, *head_fields)):
            value = getattr(config, field, None)
            if value is None:
                continue
            scaled = value * width / self.base_width
            if scaled != int(scaled):
                hint = ("with a fixed head size the width must be a multiple of it" if field in head_fields
                        else "widths must keep it an integer")
                raise ValueError(f"config field {field}={value} at base width {self.base_width} gives {scaled:g} at "
                                 f"width {width}: {hint}")
            setattr(config, field, int(scaled))
        if n_layers is not None:
            setattr(config, LAYERS, n_layers)
        if self.per_width is not None:
            self.per_width(config, width)
        return config

    def __call__(self, width: int, n_layers: int | None = None) -> nn.Module:
        transformers = _transformers()
        return transformers.AutoModelForCausalLM.from_config(self.config_at(width, n_layers), attn_implementation="sdpa")


def huggingface(
    config: Any,
    *,
    width_fields: Sequence[str] = (HIDDEN,),
    heads: Literal["head_size", "fixed"] = "head_size",
    per_width: Callable[[Any, int], None] | None = None,
    task: Task | None = None,
    widths: Sequence[int] = (),
    parametrization: Any = None,
    name: str | None = None,
    **family_options: Any,
) -> ModelFamily:
    """A family of ``AutoModelForCausalLM.from_config`` models, one per width, from a ``transformers`` config.

    The config's own width (its first ``width_fields`` entry: ``hidden_size`` by default) is the base width. Each field
    in ``width_fields`` scales in proportion to width (add ``intermediate_size`` where the config names it; GPT-2's
    ``n_inner=None`` follows ``n_embd`` by itself). ``heads="head_size"`` keeps the head size and scales the head count;
    ``"fixed"`` keeps the head count. ``per_width(config, width)`` sets anything else per width, such as Granite's
    ``attention_multiplier``. Depth comes from ``num_hidden_layers`` (the family's ``at_depth``). The task defaults to a
    Markov language over the config's vocabulary. ``parametrization`` as in ``ModelFamily``: None trains the model as
    built (its own init and multipliers), ``"mup"`` re-initialises it and sets per-layer LRs (a config that ties the
    readout to the embedding needs ``"mup_table8"``). Other options go to ``ModelFamily``.
    """
    _transformers()
    if heads not in ("head_size", "fixed"):
        raise ValueError(f"heads must be 'head_size' or 'fixed', got {heads!r}")
    width_fields = tuple(width_fields)
    if not width_fields:
        raise ValueError("width_fields must name at least one config field (e.g. 'hidden_size')")
    missing = [field for field in width_fields if not hasattr(config, field)]
    if missing:
        raise ValueError(f"{type(config).__name__} has no field {missing[0]!r} to scale with width")
    base_width = int(getattr(config, width_fields[0]))
    build = ConfigAtWidth(f"{type(config).__module__}.{type(config).__qualname__}", config.to_json_string(),
                          base_width, width_fields, heads, per_width)
    if task is None:
        positions = getattr(config, "max_position_embeddings", None) or 32
        task = MarkovLanguage(vocab=config.vocab_size, seq_len=min(32, positions))
    label = name or f"hf-{config.model_type}-{parametrization_label(parametrization)}"
    return _family(build, getattr(config, LAYERS, None), label, task, tuple(widths), parametrization, family_options)


def _family(build: ConfigAtWidth, n_layers: int | None, name: str, task: Task, widths: tuple[int, ...],
            parametrization: Any, options: dict[str, Any]) -> ModelFamily:
    """The family at ``n_layers`` layers, whose ``at_depth`` rebuilds it at another depth."""
    at_depth = None if n_layers is None else functools.partial(_at_depth, build, name, task, widths, parametrization,
                                                               options)
    return ModelFamily(name=name, build=functools.partial(build, n_layers=n_layers), task=task,
                       base_width=build.base_width, widths=widths, parametrization=parametrization, at_depth=at_depth,
                       **options)


def _at_depth(build: ConfigAtWidth, name: str, task: Task, widths: tuple[int, ...], parametrization: Any,
              options: dict[str, Any], n_layers: int) -> ModelFamily:
    return _family(build, n_layers, f"{name}-L{n_layers}", task, widths, parametrization, options)
