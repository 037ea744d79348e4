"""Helpers that turn sweep results into JSON-able report records."""

from __future__ import annotations

import numpy as np


def json_losses(table: np.ndarray) -> list:
    """A loss table as JSON-able lists, non-finite (diverged) entries as None."""
    return np.where(np.isfinite(table), table, None).tolist()
