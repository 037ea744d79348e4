"""Stacked sweeps vs a plain per-run loop, side by side on the same sweep.

For each family and width it trains the width's K runs (LRs x seeds) three ways: one by one
(the baseline), all stacked, and as the engine's timed plan chooses ("auto", which includes
the planning probe in its time). On CPU each way runs in a fresh process so its peak RSS is its
own; on CUDA they share one process and peak memory is the allocator's. Each way starts in a warmed
process (``_warm_up``): what torch imports on first use is a per-process cost, not a sweep's. It
prints a row per width as it goes (runs/s, speed-up over the loop, peak memory) and exits non-zero when "auto"
is slower than the loop at any width (beyond 10% timing noise): the plan must never lose to it.

    python benchmarks/bench_sweep.py            # 2-core CPU sizes
    python benchmarks/bench_sweep.py --gpu      # one CUDA device, wider models
    python benchmarks/bench_sweep.py --quick    # fewer steps, for a smoke check
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import resource
import sys
import time

import torch
from tabulate import tabulate

from pytest_scaling import families, tasks
from pytest_scaling.stacking import train_width
from pytest_scaling.train import TrainConfig, train_group

NOISE = 0.9  # "auto" may measure up to 10% under the loop before it counts as slower


def _family(name: str):
    if name == "mlp":
        return families.mlp()
    return families.gpt(task=tasks.markov_language(vocab=64, seq_len=32), qk_layernorm=True)


def _warm_up(family, width: int, members: list, device: torch.device) -> None:
    """Pay the process's one-time costs before the clock starts, alike for every way: the first optimizer makes
    torch import its compiler stack (~1.5 s on 2 cores) and the first vmap its own (~0.5 s), once per process
    (a pytest session pays them once, not per sweep). One step of one run and of a two-run stack does it."""
    warm = TrainConfig(steps=1, batch_size=2)
    train_group(family, width, members[:1], warm, device=device, stacked=False)
    train_group(family, width, members[:2], warm, device=device, stacked=True)


def _measure(args: tuple) -> tuple[float, float, dict]:
    """Wall seconds, peak memory (MiB: CUDA allocator on GPU, else process RSS) and chunk sizes."""
    family_name, width, members, config, device, stacking = args
    family = _family(family_name)
    family.roles  # shape inference is per family, not per width: keep it out of the timing
    device = torch.device(device)
    _warm_up(family, width, members, device)
    chunks: dict[int, int] = {}
    if device.type == "cuda":
        gc.collect()  # free the previous measurement's tensors before the peak is reset
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    train_width(family, width, members, config, device=device, stacking=stacking, on_chunk=lambda w, r, c: chunks.update({w: c}))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return seconds, peak, chunks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    device = "cuda" if args.gpu else "cpu"
    if args.gpu and not torch.cuda.is_available():
        print("bench_sweep: --gpu given but no CUDA device is available", file=sys.stderr)
        return 2
    lrs = [2.0**e for e in range(-14, -3)]
    seeds = (0, 1)
    plans = {
        "mlp": ((64, 128, 256, 512, 1024, 2048) if args.gpu else (64, 128, 256, 512), TrainConfig(steps=200, batch_size=128)),
        "gpt": ((64, 128, 256, 512) if args.gpu else (64, 128), TrainConfig(steps=100, batch_size=32)),
    }
    rows, slower = [], []
    ctx = mp.get_context("spawn")
    name = torch.cuda.get_device_name() if args.gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}", flush=True)
    for family_name, (widths, config) in plans.items():
        if args.quick:
            config = TrainConfig(steps=max(20, config.steps // 10), batch_size=config.batch_size)
        for width in widths:
            members = [(lr, s) for s in seeds for lr in lrs]
            result = {}
            for stacking in ("none", "all", "auto"):
                job = (family_name, width, members, config, device, stacking)
                if args.gpu:
                    result[stacking] = _measure(job)
                else:
                    with ctx.Pool(1) as pool:
                        result[stacking] = pool.apply(_measure, (job,))
            loop_s = result["none"][0]
            k = len(members)
            row = [family_name, width, k, config.steps]
            for stacking in ("none", "all", "auto"):
                s, peak, _ = result[stacking]
                row += [f"{k / s:.2f}", f"{loop_s / s:.2f}x", f"{peak:.0f}"]
            row.append(result["auto"][2].get(width, "-"))
            rows.append(row)
            print(" | ".join(map(str, row)), flush=True)
            if result["auto"][0] * NOISE > loop_s:
                slower.append(f"{family_name} width {width}")
    headers = ["family", "width", "K", "steps", "loop runs/s", "loop", "loop MiB", "stacked runs/s", "stacked vs loop",
               "stacked MiB", "auto runs/s", "auto vs loop", "auto MiB", "auto chunk"]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    if slower:
        print(f"FAIL: the auto plan was slower than the per-run loop at: {', '.join(slower)}")
        return 1
    print("OK: the auto plan was never slower than the per-run loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
