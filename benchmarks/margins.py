"""Margins of the project's training-dependent verdicts across seeds and torch thread counts.

Runs the test modules whose verdicts depend on training (the negative controls' clean and broken sides) once per
(seed offset, thread count) through the knobs of tests/conftest.py, gathers every record they made, and prints per
record: its value in each run, the threshold, and the margin (the distance from the threshold of the run closest
to it, as a fraction of the threshold; negative: that run is on the wrong side). A record whose test expects it to
fail is a broken side: its margin is how far it stays above the threshold.

    python benchmarks/margins.py                                  # seeds 0-2 (offsets 0, 1, 2) x threads 1, 2
    python benchmarks/margins.py --modules tests/test_negative_controls.py --offsets 0 1 --threads 1
    python benchmarks/margins.py --out runs/ --resume                # a stopped study: reruns only what has no records
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
MODULES = ("tests/test_negative_controls.py", "tests/test_checks.py", "tests/test_checks_gpt.py",
           "tests/test_checks_depth.py", "tests/test_checks_adam.py", "tests/test_probes.py")


def run(modules: list[str], offset: int, threads: int, directory: Path) -> tuple[int, float]:
    """One pytest run of ``modules`` with the seed offset and thread count; its exit code and seconds."""
    env = {**os.environ, "SCALING_TEST_SEED_OFFSET": str(offset), "SCALING_TEST_THREADS": str(threads),
           "SCALING_TEST_RECORDS": str(directory), "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", *modules, "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    (directory / "pytest.log").write_text(done.stdout + done.stderr)
    return done.returncode, time.perf_counter() - started


def _key(record: dict) -> tuple[str, str]:
    test = (record.get("test") or "").split("::")[-1]
    return test, record["name"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="*", default=list(MODULES))
    parser.add_argument("--offsets", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--out", type=Path, default=None, help="keep the runs' records here (default: a temp dir)")
    parser.add_argument("--resume", action="store_true", help="read, not rerun, a run whose directory under --out "
                        "already holds records")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="margins-"))
    values: dict[tuple[str, str], dict[str, float | None]] = defaultdict(dict)
    thresholds: dict[tuple[str, str], float | None] = {}
    worse: dict[tuple[str, str], str | None] = {}
    runs = []
    for threads in args.threads:
        for offset in args.offsets:
            directory = root / f"seed+{offset}-threads{threads}"
            directory.mkdir(parents=True, exist_ok=True)
            runs.append(f"seed+{offset}/t{threads}")
            if args.resume and any(directory.glob("records-*.json")):
                print(f"seed offset {offset}, {threads} threads: read from {directory}", file=sys.stderr, flush=True)
            else:
                code, seconds = run(args.modules, offset, threads, directory)
                print(f"seed offset {offset}, {threads} threads: exit {code}, {seconds:.0f} s", file=sys.stderr, flush=True)
            for path in directory.glob("records-*.json"):
                for record in json.loads(path.read_text())["records"]:
                    key = _key(record)
                    values[key][runs[-1]] = record["values"].get("value")
                    thresholds[key] = record["values"].get("threshold")
                    worse[key] = record["values"].get("worse")
    rows = []
    for key in sorted(values):
        threshold = thresholds[key]
        judged = [abs(v) if worse.get(key) == "higher_abs" else v for v in values[key].values()
                  if isinstance(v, (int, float))]
        side = margin = "-"
        if judged and isinstance(threshold, (int, float)) and threshold:
            clean = sum(v <= threshold for v in judged) * 2 >= len(judged)
            side = "clean" if clean else "broken"
            closest = max(judged) if clean else min(judged)
            margin = f"{(threshold - closest if clean else closest - threshold) / abs(threshold):+.0%}"
        rows.append([*key, *(f"{values[key][r]:.4g}" if isinstance(values[key].get(r), (int, float)) else "-" for r in runs),
                     "-" if threshold is None else f"{threshold:g}", side, margin])
    print(tabulate(rows, ["test", "record", *runs, "threshold", "side", "margin"], tablefmt="github", disable_numparse=True))
    print(f"records kept in {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
