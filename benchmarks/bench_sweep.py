"""Stacked sweeps vs a plain per-run loop, side by side on the same sweep.

For each family and width it trains the width's K runs (LRs x seeds) three ways: one by one
(the baseline), all stacked, and as the engine's timed plan chooses ("auto", which includes
the planning probe in its time); on a GPU (and in the dry run) a fourth, all stacked with the step compiled
("compiled": ``torch.compile`` with CUDA graphs, its compilation included in its time). On CPU each way runs in a fresh process so its peak RSS is its
own; on CUDA they share one process and peak memory is the allocator's. Each way starts in a warmed
process (``_warm_up``): what torch imports on first use is a per-process cost, not a sweep's. Each way is timed
``--repeats`` times; a row gives runs/s (median), the speed-up over the loop as median [min-max] over the repeats'
ratios, peak memory, and the model FLOP/s achieved by the auto plan (6 x parameters x tokens per run-step) against
the card's dense bf16 peak where it is known (MFU). It exits non-zero when "auto" is slower than the loop at some
width beyond the timings' own spread: every repeat of "auto" slower than every repeat of the loop.

    python benchmarks/bench_sweep.py            # 2-core CPU sizes, 3 repeats
    python benchmarks/bench_sweep.py --gpu      # one CUDA device, widths 64-2048
    python benchmarks/bench_sweep.py --quick    # fewer steps
    python benchmarks/bench_sweep.py --dry-run  # one small width per family, a few steps, in one process: checks the script (exit 0)
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import resource
import statistics
import sys
import time

import torch
from tabulate import tabulate

from pytest_scaling import families, tasks
from pytest_scaling.stacking import train_width
from pytest_scaling.train import TrainConfig, train_group

#: Dense bf16 peak FLOP/s by a substring of the CUDA device name (vendor datasheets, SXM parts); MFU is left out for
#: a card not listed.
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}
#: On a GPU the loop is timed on its first runs only: its runs/s does not depend on how many runs follow.
GPU_LOOP_RUNS = 4


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


def _flops_per_run_step(family_name: str, width: int, config: TrainConfig) -> float:
    """Model FLOPs of one training step of one run: 6 x parameters x tokens (forward 2, backward 4 per token)."""
    family = _family(family_name)
    model, _ = family.instantiate(width, 0)
    tokens = config.batch_size * (family.task.seq_len or 1)
    return 6.0 * sum(p.numel() for p in model.parameters()) * tokens


def _peak(device_name: str) -> float | None:
    return next((peak for key, peak in BF16_PEAK.items() if key in device_name), None)


def _spread(ratios: list[float]) -> str:
    """A ratio's median with its range over the repeats: ``4.29x [4.10-4.40]``."""
    text = f"{statistics.median(ratios):.2f}x"
    return text if len(ratios) == 1 else f"{text} [{min(ratios):.2f}-{max(ratios):.2f}]"


def _time_ways(job: tuple, ways: tuple[str, ...], members: list, loop_members: list, in_process: bool,
               repeats: int) -> dict[str, list]:
    """Per way (a ``stacking`` value), ``repeats`` measurements (seconds, peak MiB, chunks) of training ``members`` (the
    loop, "none": ``loop_members``)."""
    family_name, width, config, device = job
    ctx = mp.get_context("spawn")
    measured: dict[str, list] = {way: [] for way in ways}
    for _ in range(repeats):
        for stacking in ways:
            if stacking not in measured:
                continue
            args = (family_name, width, loop_members if stacking == "none" else members, config, device, stacking)
            try:
                if in_process:
                    measured[stacking].append(_measure(args))
                else:
                    with ctx.Pool(1) as pool:
                        measured[stacking].append(pool.apply(_measure, (args,)))
            except Exception as exc:  # noqa: BLE001 - the compiled way is new on most cards: its failure is a finding
                if stacking != "compiled":
                    raise
                print(f"bench_sweep: {family_name} width {width}: the compiled way failed ({type(exc).__name__}: "
                      f"{(str(exc).splitlines() or [''])[0]})", file=sys.stderr, flush=True)
                del measured[stacking]
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="width 32 per family, 10 steps, 4 runs, in one process; timings not judged")
    parser.add_argument("--repeats", type=int, default=None, help="timings per way (default: 3 on CPU, 1 otherwise)")
    args = parser.parse_args()
    device = "cuda" if args.gpu else "cpu"
    if args.gpu and not torch.cuda.is_available():
        print("bench_sweep: --gpu given but no CUDA device is available", file=sys.stderr)
        return 2
    repeats = args.repeats or (1 if args.gpu or args.dry_run else 3)
    if repeats < 1:
        print(f"bench_sweep: --repeats must be at least 1, got {repeats}", file=sys.stderr)
        return 2
    lrs = [2.0**e for e in (range(-12, -4, 4) if args.dry_run else range(-14, -3))]
    seeds = (0, 1)
    plans = {
        "mlp": ((64, 128, 256, 512, 1024, 2048) if args.gpu else (64, 128, 256, 512), TrainConfig(steps=200, batch_size=128)),
        "gpt": ((64, 128, 256, 512) if args.gpu else (64, 128), TrainConfig(steps=100, batch_size=32)),
    }
    if args.dry_run:
        plans = {name: ((32,), TrainConfig(steps=10, batch_size=config.batch_size)) for name, (_, config) in plans.items()}
    name = torch.cuda.get_device_name() if args.gpu else f"CPU ({torch.get_num_threads()} threads)"
    peak = _peak(name) if args.gpu else None
    print(f"device: {name}; torch {torch.__version__}; {repeats} timing(s) per way"
          + (f"; the loop timed on its first {GPU_LOOP_RUNS} runs" if args.gpu else ""), flush=True)
    rows, slower = [], []
    ways = ("none", "all", "compiled", "auto") if args.gpu or args.dry_run else ("none", "all", "auto")
    for family_name, (widths, config) in plans.items():
        if args.quick:
            config = TrainConfig(steps=max(20, config.steps // 10), batch_size=config.batch_size)
        for width in widths:
            members = [(lr, s) for s in seeds for lr in lrs]
            loop_members = members[:GPU_LOOP_RUNS] if args.gpu else members
            measured = _time_ways((family_name, width, config, device), ways, members, loop_members,
                                  in_process=args.gpu or args.dry_run, repeats=repeats)
            runs_per_s = {way: [len(loop_members if way == "none" else members) / m[0] for m in ms]
                          for way, ms in measured.items()}
            row = [family_name, width, len(members), config.steps]
            for way in ("none", "all", "compiled", "auto"):
                if way not in measured:
                    row += ["failed" if way in ways else "-", "-", "-"]
                    continue
                ratios = [r / base for r, base in zip(runs_per_s[way], runs_per_s["none"])]
                row += [f"{statistics.median(runs_per_s[way]):.2f}", _spread(ratios),
                        f"{max(m[1] for m in measured[way]):.0f}"]
            achieved = statistics.median(runs_per_s["auto"]) * config.steps * _flops_per_run_step(family_name, width, config)
            row += [measured["auto"][0][2].get(width, "-"), f"{achieved / 1e12:.3g}",
                    f"{achieved / peak:.2%}" if peak else "-"]
            rows.append(row)
            print(" | ".join(map(str, row)), flush=True)
            if min(runs_per_s["none"]) > max(runs_per_s["auto"]):
                slower.append(f"{family_name} width {width}")
    headers = ["family", "width", "K", "steps", "loop runs/s", "loop", "loop MiB", "stacked runs/s", "stacked vs loop",
               "stacked MiB", "compiled runs/s", "compiled vs loop", "compiled MiB", "auto runs/s", "auto vs loop", "auto MiB", "auto chunk", "auto TFLOP/s", "MFU (bf16 peak)"]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    if args.dry_run:
        print("dry run: the script ran every way; runs this short are not timed for a verdict")
        return 0
    if slower:
        print(f"FAIL: the auto plan was slower than the per-run loop in every timing at: {', '.join(slower)}")
        return 1
    print("OK: at no width was the auto plan slower than the per-run loop in every timing"
          + (" (one timing per way: no spread measured)" if repeats == 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
