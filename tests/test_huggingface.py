"""families.huggingface: a transformers config becomes a width family (skipped where transformers is not installed)."""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers", reason="families.huggingface needs the [hf] extra")

from pytest_scaling import families  # noqa: E402


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
