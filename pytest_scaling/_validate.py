"""Input checks shared by fit.py and metrics.py: each raises ValueError with a one-line reason."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

# Relative spread allowed between the log-steps of an LR grid: exact powers of two pass, and so do
# the common 1-3-10 grids (log2 steps 1.58 and 1.74, within 5% of their mean).
_LOG_STEP_RTOL = 0.1


def vector(name: str, values: ArrayLike, *, positive: bool = False, finite: bool = True,
           min_len: int = 1) -> np.ndarray:
    """A 1-D float array, optionally required finite and/or strictly positive, with at least min_len entries."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size < min_len:
        raise ValueError(f"{name} needs at least {min_len} values, got {arr.size}")
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if positive and not np.all(arr > 0):
        raise ValueError(f"{name} must be strictly positive, got min {np.nanmin(arr):.4g}")
    return arr


def increasing(name: str, values: ArrayLike, *, min_len: int = 2, positive: bool = True) -> np.ndarray:
    """Finite, strictly ascending (by default positive) values: widths, LRs, steps; catches unsorted and duplicate grids."""
    arr = vector(name, values, positive=positive, min_len=min_len)
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name} must be strictly increasing (sorted, no duplicates), got {arr.tolist()}")
    return arr


def lr_grid(lrs: ArrayLike) -> np.ndarray:
    """A log-spaced, strictly ascending LR grid of at least 3 values (the quadratic needs a 3-point bracket)."""
    arr = increasing("lrs", lrs, min_len=3)
    steps = np.diff(np.log2(arr))
    if np.max(np.abs(steps - steps.mean())) > _LOG_STEP_RTOL * steps.mean():
        raise ValueError(f"lrs must be log-spaced (equal steps in log2), got log2 steps {np.round(steps, 3).tolist()}")
    return arr


def same_length(**arrays: np.ndarray) -> int:
    """The common length of named 1-D arrays."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"mismatched lengths: {lengths}")
    return next(iter(lengths.values()))


def shaped(name: str, values: ArrayLike, shape: Sequence[int], *, finite: bool = True) -> np.ndarray:
    """A float array of exactly the given shape."""
    arr = np.asarray(values, dtype=float)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def enough_points(n_distinct: int, n_params: int, what: str) -> None:
    """A fit needs at least as many distinct points as parameters."""
    if n_distinct < n_params:
        raise ValueError(f"{what} has {n_params} parameters but only {n_distinct} distinct points")


def finite_scalar(name: str, value: float) -> float:
    """A finite float."""
    f = float(value)
    if not np.isfinite(f):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return f
