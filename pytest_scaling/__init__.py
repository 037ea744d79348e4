"""pytest-scaling: scaling-property tests (muP transfer, coordinate checks, power laws, logit stability) as a pytest plugin."""

__version__ = "0.1.0"
