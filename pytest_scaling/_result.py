"""Base for analysis results: frozen dataclasses that serialise to JSON-able dicts for the report layer."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


class Result:
    """Mixin for the frozen result dataclasses of fit.py and metrics.py."""

    def to_dict(self) -> dict[str, Any]:
        """Fields as plain floats/ints/bools/strings/lists/dicts; non-finite floats become None."""
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def jsonable(value: Any) -> Any:
    """Convert numpy values, arrays, tuples and nested results to JSON-able Python objects."""
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


def frozen(values: Any, dtype: type = float) -> np.ndarray:
    """A read-only copy, so arrays held by frozen results cannot be mutated behind their back."""
    arr = np.array(values, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr
