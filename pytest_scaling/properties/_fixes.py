"""What a failure of each kind of property is diagnosed with (``pytest_scaling.interventions``), most likely cause first."""

MUP_FIXES = ("zero_readout", "readout_multiplier", "mup_hidden_lr", "attention_1_over_d")
LAW_FIXES = ("zero_readout", "readout_multiplier", "mup_hidden_lr")
STABILITY_FIXES = ("qk_layernorm", "z_loss", "attention_1_over_d", "readout_multiplier")
DEPTH_FIXES = ("residual_1_over_sqrt_depth",)
