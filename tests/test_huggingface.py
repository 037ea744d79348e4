"""families.huggingface: a transformers config becomes a width family (skipped where transformers is not installed)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers", reason="families.huggingface needs the [hf] extra")

from pytest_scaling import checks, families  # noqa: E402
from pytest_scaling.family import ModelFamily  # noqa: E402
from pytest_scaling.session import ScalingSession  # noqa: E402
from pytest_scaling.tiers import RelativeLRs, RelativeWidths, TransferGrid  # noqa: E402

from conftest import training_session  # noqa: E402


def tiny_gpt2_config() -> object:
    return transformers.GPT2Config(n_embd=32, n_head=4, n_layer=2, vocab_size=96, n_positions=32, bos_token_id=0,
                                   eos_token_id=0)


def test_gpt2_conv1d_roles_tied_readout_and_width_config() -> None:
    family = families.huggingface(tiny_gpt2_config(), parametrization="mup_table8")
    roles = family.roles.params
    assert roles["transformer.h.0.mlp.c_fc.weight"].role == "hidden"
    assert roles["transformer.h.0.mlp.c_fc.weight"].multiplier_at((128, 512)) == 4.0  # Conv1D: fan-in is dim 0
    assert roles["transformer.wte.weight"].role == "input"
    assert roles["transformer.wte.weight"].tied_uses == (("lm_head.weight", "output"),)
    config = family.build.func.config_at(128)
    assert (config.n_embd, config.n_head, config.n_layer) == (128, 16, 2)
    deep = family.at_depth(4).build
    assert deep.func.config_at(64, **deep.keywords).n_layer == 4 and deep(32).config.n_layer == 4


def test_a_width_that_breaks_the_head_size_is_named() -> None:
    family = families.huggingface(tiny_gpt2_config())
    with pytest.raises(ValueError, match="multiple of it"):
        family.build.func.config_at(36)


# Trained verdicts, 1 thread, seed 0 (shifted by the margin study's offset); the coordinate check over seeds 0-2: on
# this GPT-2 one seed's value spreads over 0.03-0.18 (bound 0.15), three seeds' over 0.01-0.08. Measured margins:
# benchmarks/RESULTS.md, "Hugging Face families".
GPT2_TRANSFER = TransferGrid(widths=RelativeWidths((1, 2, 4)), lrs=RelativeLRs(-5, 2), steps=100, batch_size=32,
                             max_abs_slope=0.25, seeds=1)


def test_gpt2_as_built_fails_lr_transfer_and_under_mup_passes_the_coordinate_check(tmp_path: Path) -> None:
    scaling = training_session(cache_dir=tmp_path, tier="cpu")
    standard = families.huggingface(tiny_gpt2_config())
    with pytest.raises(AssertionError, match="LR transfer"):
        checks.lr_curve_transfer(scaling, standard, GPT2_TRANSFER)
    three_seeds = training_session(seeds=(0, 1, 2), cache_dir=tmp_path, tier="cpu")
    checks.coord_check(three_seeds, families.huggingface(tiny_gpt2_config(), parametrization="mup_table8"))
    values = {r["values"]["property"]: r["values"]["value"] for r in scaling.records}
    assert values["lr_curve_transfer"] < -GPT2_TRANSFER.max_abs_slope


def granite_config() -> object:
    return transformers.GraniteConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=4, vocab_size=96, max_position_embeddings=32, bos_token_id=0,
                                      eos_token_id=0, pad_token_id=0)


def attention_over_d(config: object, width: int) -> None:
    config.attention_multiplier = 1.0 / (width // config.num_attention_heads)


def attention_over_sqrt_d(config: object, width: int) -> None:
    config.attention_multiplier = 1.0 / math.sqrt(width // config.num_attention_heads)


def granite(per_width: Callable[[object, int], None]) -> ModelFamily:
    return families.huggingface(granite_config(), width_fields=("hidden_size", "intermediate_size"), heads="fixed",
                                per_width=per_width, parametrization="mup", name=f"granite-{per_width.__name__}")


def attention_logit_rows(scaling: ScalingSession) -> np.ndarray:
    """The last coordinate check's attention-logit rows (slope per doubling of width, per layer and step)."""
    record = scaling.records[-1]["values"]
    rows = [i for i, layer in enumerate(record["layers"]) if layer.endswith("(attention logits)")]
    return np.array(record["slopes"], dtype=float)[rows]


# Granite sets its attention scale with attention_multiplier. Measured (seeds 0-2, one thread; widths 64-512, heads
# fixed, the plugin's μP, steps 1-3): the attention-logit rows read -0.47..-0.59 per doubling with 1/d (the random-init
# q·k shrinks as 1/√d) and -0.06..+0.08 with 1/√d. Neither grows, so neither fails on them; the whole check read 0.019,
# 0.092 and 0.329 with 1/d (the last: o_proj at step 3) and 0.557, 0.071 with 1/√d (o_proj again). With random (not
# zero) query weights, 1/√d's logits grow only once q and k align: at steps 8-10 its rows read +0.18..+0.32 and 1/d's
# -0.23..-0.44, but by then o_proj and down_proj rows pass 0.15 under either. Read by growth alone, the check's rows
# saw the multiplier and its verdict separated neither (benchmarks/RESULTS.md, "Hugging Face families").
# Since the parametrization verdict reads the attention logits at init against μP's prediction (−½ per doubling of
# the head size for independent q and k), 1/√d fails it there, at step 0, whatever the later steps do.
def test_granite_attention_multiplier_shows_in_the_coordinate_checks_attention_rows() -> None:
    scaling = training_session(tier="cpu")
    rows, parametrization = {}, {}
    for per_width in (attention_over_d, attention_over_sqrt_d):
        # The whole verdict is not asserted: its later steps are noise at this scale (above).
        with contextlib.suppress(AssertionError, pytest.skip.Exception):
            checks.coord_check(scaling, granite(per_width))
        rows[per_width] = attention_logit_rows(scaling)
        parametrization[per_width] = scaling.records[-1]["values"]["verdicts"][0]
    over_d, over_sqrt_d = rows[attention_over_d], rows[attention_over_sqrt_d]
    assert over_d.shape == over_sqrt_d.shape == (2, 4)  # two layers, steps 0-3
    assert over_d.max() < -0.35 and over_sqrt_d.min() > -0.2
    np.testing.assert_allclose(over_sqrt_d - over_d, 0.5, atol=0.15)
    wrong = parametrization[attention_over_sqrt_d]
    assert wrong["status"] == "fail" and wrong["worst"][0].endswith("(attention logits)") and wrong["worst"][1] == 0
