"""The reference families: the built-in models the reference suite (scaling_tests/) runs every property on, and on
which the tiers' thresholds are calibrated (benchmarks/calibrate.py, benchmarks/RESULTS.md).

They are ordinary families of the same machinery a user's family goes through: each is a ``families.gpt`` or
``families.mlp`` with the choices that make every property hold at small scale.
"""

from __future__ import annotations

import dataclasses

from ..family import ModelFamily
from .gpt import gpt
from .mlp import mlp

#: z-loss strong enough for the suite's few hundred steps. Its pull on log Z acts over the run: Wortsman et al.'s 1e-4
#: is for tens of thousands of steps; over the cpu tier's 250 it changed nothing (|log Z| drifted to 8.6-9.8, as with
#: no z-loss at all), 1e-3 pulled it only half-way back, 1e-2 held it under 0.8 from step 75 at a cost of +0.001-0.002
#: nats of loss (benchmarks/RESULTS.md, "z-loss and the log Z drift").
Z_LOSS = 1e-2
#: The depth the reference GPT is defined at; ``at_depth`` builds it at others.
BASE_DEPTH = 2


def reference_gpt(n_layers: int = BASE_DEPTH, *, qk_layernorm: bool = True) -> ModelFamily:
    """The reference GPT: μP (Tensor Programs V Table 3, readout initialised at zero), qk-layernorm, z-loss, Depth-μP
    residual branches (1/√L, the blocks' LR × (L / 2)^-1/2), base width 32; ``at_depth`` gives it at other depths.

    ``qk_layernorm=False`` is the variant the qk-layernorm demonstration compares it with."""
    name = "reference-gpt" + ("" if qk_layernorm else "-no-qkln") + ("" if n_layers == BASE_DEPTH else f"-L{n_layers}")
    family = gpt(parametrization="mup", qk_layernorm=qk_layernorm, z_loss=Z_LOSS, zero_readout=True,
                 residual_scale="depth-mup", n_layers=n_layers, base_depth=BASE_DEPTH, base_width=32, widths=(),
                 name=name)
    return dataclasses.replace(family, at_depth=lambda depth: reference_gpt(depth, qk_layernorm=qk_layernorm))


def reference_mlp() -> ModelFamily:
    """The reference MLP: μP (Table 3), 3 hidden layers, base width 64, on the teacher-student task."""
    return mlp(parametrization="mup", widths=(), name="reference-mlp")
