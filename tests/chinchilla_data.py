"""Loader for the Chinchilla data points (Besiroglu et al. 2024's extraction of Hoffmann et al.'s Figure 4)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

CSV = Path(__file__).parent / "data" / "chinchilla_svg_extracted_data.csv"


def load_chinchilla(drop_highest_loss: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, L) with D = FLOP / (6N), without the `drop_highest_loss` highest-loss rows (as the refit does)."""
    with CSV.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    N = np.array([float(r["Model Size"]) for r in rows])
    flop = np.array([float(r["Training FLOP"]) for r in rows])
    L = np.array([float(r["loss"]) for r in rows])
    keep = np.argsort(L, kind="stable")[: len(L) - drop_highest_loss]
    return N[keep], flop[keep] / (6 * N[keep]), L[keep]
