"""The reference scaling suite: every property of the registry, through the same packaged suite a user subclasses.

``TestSuite`` runs on the session's family: the reference GPT by default, or each family given with
``--scaling-family`` (then the built-in demonstrations below and in test_builtin.py do not run).
"""

from __future__ import annotations

from pytest_scaling import ScalingSuite, families


class TestSuite(ScalingSuite):
    """The standard suite on the reference GPT, or on each --scaling-family."""


class TestReferenceMLP(ScalingSuite):
    """The standard suite on the reference MLP (no attention, no depth factory: those parts say they do not apply)."""

    family = staticmethod(families.reference_mlp)
    builtin = True
