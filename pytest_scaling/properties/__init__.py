"""The property registry: the scaling properties the suite asserts, one module each (docs/design.md, "The property
model").

A property's module declares its :class:`~pytest_scaling.property.Property` as ``PROPERTY``: its name (the record
name's prefix, the marker's ``property=``, the packaged suite's test ``test_<name>``), what it asserts, which way a
change of its value is worse, its check, its grid in each tier, its figure and its interventions. The registry is the
list of those modules, in the order the suite runs them; :func:`register` adds one from outside the package (a team's
own property, from its conftest.py), which then runs in the suite, the reports, the baseline comparison and the
diagnosis like the built-in ones.
"""

from __future__ import annotations

from ..property import NOISE_SIGMAS, WORSE, Property, Worse, seed_noise, worse_of
from . import (
    adam_epsilon,
    coord_check,
    depth_coord_check,
    depth_lr_transfer,
    depth_sensitivity,
    extrapolation,
    lr_curve_transfer,
    lr_sensitivity,
    lr_transfer,
    no_logit_divergence,
    power_law,
    qk_layernorm_lowers_sensitivity,
    weight_decay,
    wider_is_better,
)

#: Every property by name, in the order the suite runs them.
PROPERTIES: dict[str, Property] = {}


def register(prop: Property) -> Property:
    """Add ``prop`` to the registry and return it. Its module imported again (a second pytest run in one process)
    replaces it; another property of the same name is a one-line error."""
    if not isinstance(prop, Property):
        raise TypeError(f"register() takes a pytest_scaling.property.Property, got {type(prop).__name__}")
    known = PROPERTIES.get(prop.name)
    if known is not None and _origin(known) != _origin(prop):
        raise ValueError(f"a scaling property named {prop.name!r} is already registered (its check: "
                         f"{'.'.join(_origin(known))})")
    PROPERTIES[prop.name] = prop
    return prop


def _origin(prop: Property) -> tuple[str, str]:
    """Where a property's check is defined: the same in every import of its module."""
    return getattr(prop.check, "__module__", "?"), getattr(prop.check, "__qualname__", repr(prop.check))


for _module in (coord_check, lr_curve_transfer, lr_transfer, wider_is_better, power_law, extrapolation, lr_sensitivity,
                qk_layernorm_lowers_sensitivity, no_logit_divergence, adam_epsilon, weight_decay, depth_coord_check,
                depth_lr_transfer, depth_sensitivity):
    register(_module.PROPERTY)


def suite_properties() -> tuple[Property, ...]:
    """The properties the packaged suite asserts on every family, in the order it runs them (registered ones last)."""
    return tuple(prop for prop in PROPERTIES.values() if prop.in_suite)


def get(name: str) -> Property:
    """The registry entry of a property, by name; a one-line error naming the known ones otherwise."""
    try:
        return PROPERTIES[name]
    except KeyError:
        raise ValueError(f"unknown scaling property {name!r}; known: {', '.join(PROPERTIES)}") from None


__all__ = ["NOISE_SIGMAS", "PROPERTIES", "WORSE", "Property", "Worse", "get", "register", "seed_noise",
           "suite_properties", "worse_of"]
