"""How many threads torch trains with: the cores this process may use and finds idle, not the machine's count.

torch starts one thread per core. Beside busy neighbours (another job on a shared CI runner, xdist workers) those
threads contend for the same cores and a step slows far more than a fair share would (benchmarks/bench_threads.py;
docs/design.md, "Threads"). The plan is made once, when the session's runner is created, and stated in the report.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

#: Environment variables with which a user has already chosen the thread count: the plan leaves it alone.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: How long the CPU's busy time is sampled for (/proc/stat) to count the cores other processes keep busy.
SAMPLE_SECONDS = 0.2


@dataclass(frozen=True)
class ThreadPlan:
    """The thread count chosen and why: ``cores`` this process may run on (affinity, cgroup quota), shared by
    ``workers`` xdist workers, of which ``busy`` were kept busy by other processes when the plan was made."""

    threads: int
    cores: int
    workers: int = 1
    busy: int = 0
    chosen_by: str = "plan"  # "plan", "--scaling-threads" or an environment variable's name

    def describe(self) -> str:
        """One line for the report's environment."""
        if self.chosen_by != "plan":
            return f"{self.threads} (set by {self.chosen_by})"
        shared = f", shared by {self.workers} workers" if self.workers > 1 else ""
        return f"{self.threads} ({self.cores} usable cores{shared}, {self.busy} busy with other processes)"


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 ``cpu.max``, v1 ``cfs_quota_us``), None without one."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may run on: its CPU affinity, capped by its cgroup's quota (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def _cpu_times(stat: Path) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat's first line."""
    fields = [int(value) for value in stat.read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(cores: int, seconds: float = SAMPLE_SECONDS, stat: Path = Path("/proc/stat")) -> int:
    """How many of ``cores`` other processes keep busy now: the machine's busy fraction over ``seconds`` (this
    process sleeps through it) times its core count, rounded; 0 where it cannot be read."""
    try:
        busy_before, total_before = _cpu_times(stat)
        time.sleep(seconds)
        busy_after, total_after = _cpu_times(stat)
    except (OSError, ValueError, IndexError):
        return 0
    total = total_after - total_before
    if total <= 0:
        return 0
    machine = os.cpu_count() or cores
    return min(cores, round(machine * (busy_after - busy_before) / total))


def plan_threads(requested: int | None = None) -> ThreadPlan:
    """The threads to train with: ``requested`` (``--scaling-threads``) if given; else what an environment variable
    already set; else the usable cores, divided among xdist workers, less those other processes keep busy (at
    least 1)."""
    cores = usable_cores()
    if requested is not None:
        return ThreadPlan(threads=requested, cores=cores, chosen_by="--scaling-threads")
    for variable in THREAD_VARIABLES:
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 0:
            return ThreadPlan(threads=int(value), cores=cores, chosen_by=variable)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    busy = busy_cores(cores)
    share = max(1, cores // workers)
    return ThreadPlan(threads=max(1, min(share, cores - busy)), cores=cores, workers=workers, busy=busy)
