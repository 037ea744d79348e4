"""Training beside busy neighbours: torch's default thread count (one per core) against the plugin's thread plan.

A fixed run of the reference GPT (``--width``, ``--steps``, batch 32, one run) is timed in a fresh process with
torch's default threads and with ``threads.plan_threads()``, alone and beside 1 and 2 neighbours. Each neighbour is
another process training the same model with torch's default threads, as a second job on a shared CI runner would.
The table gives seconds per run (median of ``--repeats``) and the slowdown against the same run alone with default
threads, measured in the same invocation. It exits non-zero if the plan is slower than the default beside a
neighbour by more than the repeats' spread.

    python benchmarks/bench_threads.py             # width 128, 60 steps, 3 repeats
    python benchmarks/bench_threads.py --quick     # width 64, 20 steps, 1 repeat
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time

from tabulate import tabulate


def _train(width: int, steps: int, threads: int | None) -> None:
    import torch

    from pytest_scaling import families
    from pytest_scaling.train import TrainConfig, train_run

    if threads is not None:
        torch.set_num_threads(threads)
    family = families.reference_gpt()
    train_run(family, width, 1e-3, seed=0, config=TrainConfig(steps=steps, batch_size=32))


def _timed(width: int, steps: int, planned: bool, queue: mp.Queue) -> None:
    """Child: warm up, choose the threads (default or planned), time one run, put (seconds, threads)."""
    import torch

    from pytest_scaling.threads import plan_threads

    _train(width, 2, None)  # imports and first-call costs are per process, not per run
    threads = plan_threads().threads if planned else torch.get_num_threads()
    started = time.perf_counter()
    _train(width, steps, threads)
    queue.put((time.perf_counter() - started, threads))


def _neighbour(width: int, stop: mp.Event) -> None:
    """Another job: trains the same model with torch's default threads until told to stop."""
    while not stop.is_set():
        _train(width, 10, None)


def measure(width: int, steps: int, neighbours: int, planned: bool) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    others = [ctx.Process(target=_neighbour, args=(width, stop)) for _ in range(neighbours)]
    for process in others:
        process.start()
    if others:
        time.sleep(8.0)  # the neighbours past their imports and busy, as the plan would find them
    queue: mp.Queue = ctx.Queue()
    child = ctx.Process(target=_timed, args=(width, steps, planned, queue))
    child.start()
    seconds, threads = queue.get()
    child.join()
    stop.set()
    for process in others:
        process.join()
    return seconds, threads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="width 64, 20 steps, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.width, args.steps, args.repeats = 64, 20, 1
    times: dict[tuple[int, str], list[float]] = {}
    used: dict[tuple[int, str], list[int]] = {}
    for neighbours in (0, 1, 2):
        for way in ("default", "planned"):
            for _ in range(args.repeats):
                seconds, threads = measure(args.width, args.steps, neighbours, way == "planned")
                times.setdefault((neighbours, way), []).append(seconds)
                used.setdefault((neighbours, way), []).append(threads)
    alone = statistics.median(times[(0, "default")])
    rows = [[neighbours, way, ", ".join(map(str, sorted(set(used[(neighbours, way)])))),
             f"{statistics.median(t):.2f}", f"{min(t):.2f}-{max(t):.2f}", f"{statistics.median(t) / alone:.2f}x"]
            for (neighbours, way), t in times.items()]
    print(f"reference GPT, width {args.width}, {args.steps} steps, batch 32; {args.repeats} repeat(s)")
    print(tabulate(rows, headers=["neighbours", "threads", "torch threads", "s/run (median)", "range", "vs alone"],
                   tablefmt="github"))
    worse = [n for n in (1, 2) if min(times[(n, "planned")]) > max(times[(n, "default")])]
    if worse:
        print(f"the plan was slower than torch's default beside {worse} neighbour(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
