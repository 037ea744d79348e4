"""The packaged scaling suite: every property of the registry as a test method, run on one family.

A user's repository gets the whole suite by subclassing it in a test module::

    from pytest_scaling import ScalingSuite

    class TestMyGPT(ScalingSuite):
        family = my_family          # a ModelFamily, or a no-argument function returning one

pytest collects the subclass like any test class; each property is a test ``test_<property>`` marked
``@pytest.mark.scaling(property=...)``. A property that does not apply to the family (no ``at_depth`` for the
depth properties), that the tier does not assert, or that the class leaves out (``skip``) skips with its reason
in one line. ``grids`` replaces the tier's grid of a property for this family (a budget of its own) in the tiers
that assert the property.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import pytest

from .assertions import HINT_PREFIX
from .diagnosis import diagnose_failure
from .family import ModelFamily
from .properties import Property, suite_properties


class ScalingSuite:
    """Every suite property as a test on ``family``; subclass it as ``Test...`` and set ``family``.

    ``family`` is a :class:`ModelFamily`, a no-argument function returning one, or None: then the suite runs on each
    family given with ``--scaling-family`` (or on the ``model_family`` fixture's). ``builtin = True`` marks a class
    whose family is one of the plugin's reference families: it does not run when ``--scaling-family`` is given.
    ``skip`` maps a property's name to the reason the class does not assert it (recorded and shown as the skip);
    ``grids`` maps a property's name to the grid it runs instead of the tier's (e.g. more steps for a noisy task), in
    every tier that asserts the property (the smoke tier still leaves out what it cannot resolve).
    """

    family: ClassVar[Any] = None
    builtin: ClassVar[bool] = False
    skip: ClassVar[dict[str, str]] = {}
    grids: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give the class a test for every suite property (those registered after this module loaded too), and name
        an unknown property in ``skip`` or ``grids`` at import, not as a silently ignored key."""
        super().__init_subclass__(**kwargs)
        for prop in suite_properties():
            if not hasattr(cls, f"test_{prop.name}"):
                setattr(cls, f"test_{prop.name}", _suite_test(prop))
        known = {prop.name for prop in suite_properties()}
        for attribute in ("skip", "grids"):
            unknown = sorted(set(getattr(cls, attribute)) - known)
            if unknown:
                raise TypeError(f"{cls.__name__}.{attribute} names no suite property: {', '.join(unknown)} "
                                f"(the suite's: {', '.join(sorted(known))})")

    @classmethod
    def own_family(cls) -> ModelFamily | None:
        """The class's own family (calling a factory), or None when it takes the session's."""
        family = cls.family
        if family is None:
            return None
        if not isinstance(family, ModelFamily) and callable(family):
            family = family()
        if not isinstance(family, ModelFamily):
            raise TypeError(f"{cls.__name__}.family must be a ModelFamily or a no-argument function returning one, "
                            f"got {type(family).__name__}")
        return family


def not_applicable(prop: Property, family: ModelFamily) -> str | None:
    """Why ``prop`` cannot run on ``family`` at all (one line), or None when it can."""
    if prop.needs_depth and family.at_depth is None:
        return (f"not applicable: family {family.name!r} gives no at_depth, so the depth properties cannot build it at "
                "other depths (ModelFamily(at_depth=...))")
    return None


def run_property(scaling: Any, family: ModelFamily, prop: Property, suite: type[ScalingSuite] = ScalingSuite) -> Any:
    """Run one suite property on ``family`` (with ``suite``'s grid for it, if it gives one); if it does not apply, the
    suite leaves it out, or the tier does not assert it, record why and skip."""
    reason = not_applicable(prop, family)
    if reason is not None:
        prop.record(scaling, family.name, value=None, threshold=None, applicable=False, reason=reason)
        pytest.skip(reason)
    if prop.name in suite.skip:
        reason = f"not asserted on {family.name}: {suite.skip[prop.name]}"
        prop.record(scaling, family.name, value=None, threshold=None, left_out=True, reason=reason)
        pytest.skip(reason)
    reason = prop.not_asserted(scaling.tier)  # a family's own grid does not make a too-small tier resolve it
    reason = reason or scaling.over_budget.get((family.name, prop.name))  # held to --scaling-budget
    grid = suite.grids.get(prop.name)
    if reason is not None:
        prop.record(scaling, family.name, value=None, threshold=None, reason=reason)
        pytest.skip(reason)
    try:
        return _run_judged(scaling, family, prop, grid)
    except AssertionError:
        confirming = _with_a_second_seed(scaling, prop, grid)
        if confirming is None:
            raise
    _drop_last_record(scaling, prop.record_name(family.name))  # superseded by the two-seed verdict
    return _run_judged(scaling, family, prop, confirming)


def _run_judged(scaling: Any, family: ModelFamily, prop: Property, grid: Any) -> Any:
    """``prop.run`` on ``grid``; a verdict, pass or fail, within its seeds' noise is skipped as inconclusive."""
    try:
        result = prop.run(scaling, family, grid)
    except AssertionError:
        _skip_within_noise(scaling, family, prop)
        raise
    _skip_within_noise(scaling, family, prop)
    return result


def _drop_last_record(scaling: Any, name: str) -> None:
    """Remove the latest record named ``name``."""
    index = next(i for i in range(len(scaling.records) - 1, -1, -1) if scaling.records[i]["name"] == name)
    del scaling.records[index]


def _with_a_second_seed(scaling: Any, prop: Property, grid: Any) -> Any | None:
    """The grid again on two seeds, where it failed on one and the session has more: one seed measures no noise, and
    a single run at the top of an LR range can diverge on one seed and train on the next (docs/design.md,
    "Calibration"). None where the grid was not capped at one seed."""
    grid = grid if grid is not None else prop.grid_in(scaling.tier)
    if getattr(grid, "seeds", None) != 1 or len(scaling.seeds) < 2:
        return None
    return dataclasses.replace(grid, seeds=2)


def _skip_within_noise(scaling: Any, family: ModelFamily, prop: Property) -> None:
    """Skip as inconclusive, with the numbers in the record and the reason, when the property's value sits within
    its seeds' noise of its threshold: passing or failing there would be a coin flip (``Property.within_noise``)."""
    name = prop.record_name(family.name)
    record = next((r["values"] for r in reversed(scaling.records) if r["name"] == name), None)
    reason = None if record is None else prop.within_noise(record)
    if reason is not None:
        record["reason"] = reason
        pytest.skip(reason)


def _with_diagnosis(evidence: str, scaling: Any, family: ModelFamily, prop: Property, suite: type[ScalingSuite]) -> str:
    """The failure's evidence with its untested hint replaced by what a diagnosis measured."""
    diagnosis = diagnose_failure(scaling, family, prop, suite.grids.get(prop.name))
    return f"{evidence.split(HINT_PREFIX, 1)[0].rstrip()}\n\n{diagnosis.render()}"


def _suite_test(prop: Property) -> Callable[..., Any]:
    """The test method of one property: run it on the class's (or the session's) family."""

    @pytest.mark.scaling(property=prop.name)
    def test(self: ScalingSuite, scaling: Any, scaling_family: ModelFamily) -> None:
        try:
            run_property(scaling, scaling_family, prop, type(self))
            return
        except AssertionError as failure:
            evidence = str(failure)
        if scaling.diagnose:
            evidence = _with_diagnosis(evidence, scaling, scaling_family, prop, type(self))
        # The evidence table is the whole story: no traceback through the library, nor the exception it came from.
        pytest.fail(evidence, pytrace=False)

    test.__name__ = f"test_{prop.name}"
    test.__qualname__ = f"ScalingSuite.test_{prop.name}"
    test.__doc__ = prop.summary
    return test


for _prop in suite_properties():
    setattr(ScalingSuite, f"test_{_prop.name}", _suite_test(_prop))
