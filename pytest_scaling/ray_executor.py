"""The Ray executor: each width's runs are one Ray task (one GPU each under CUDA).

It joins the cluster named by ``RAY_ADDRESS`` when set, else starts a local Ray instance.
Results come back per width and are cached by the caller as they arrive.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from .family import ModelFamily
from .stacking import ChunkCallback, train_width
from .train import RunResult, TrainConfig


def _train_width_task(
    family: ModelFamily, width: int, members: Sequence[tuple[float, int]], config: TrainConfig, device_kind: str, stacking: str
) -> list[tuple[list[RunResult], int]]:
    chunks: list[tuple[list[RunResult], int]] = []
    train_width(family, width, members, config, device=torch.device(device_kind), stacking=stacking, on_chunk=lambda _w, r, c: chunks.append((r, c)))
    return chunks


def _ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError("the ray executor needs Ray: pip install 'pytest-scaling[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False, log_to_driver=False)
    return ray


def run_on_ray(
    family: ModelFamily,
    todo: dict[int, list[tuple[float, int]]],
    config: TrainConfig,
    *,
    device: torch.device,
    stacking: str,
    on_chunk: ChunkCallback,
) -> None:
    """Train ``todo`` (width -> runs) as one Ray task per width; report chunks as tasks finish."""
    if not todo:
        return
    ray = _ray()
    task = ray.remote(num_cpus=1, num_gpus=1 if device.type == "cuda" else 0)(_train_width_task)
    pending = {task.remote(family, w, members, config, device.type, stacking): w for w, members in todo.items()}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            width = pending.pop(ref)
            for results, chunk_size in ray.get(ref):
                on_chunk(width, results, chunk_size)
