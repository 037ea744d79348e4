"""benchmarks/device_check.sh refuses bad arguments in one line before anything runs, and without a GPU says so
instead of benchmarking the CPU (its --dry-run, the whole script on the CPU, runs in .ci/run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.sh"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable})


@pytest.mark.parametrize(("args", "message"), [
    (("--seeds", "two"), "--seeds takes a positive integer, got two"),
    (("--seeds", "0"), "--seeds takes a positive integer, got 0"),
    (("--frobnicate",), "unknown option --frobnicate"),
    (("a", "b"), "one OUT_DIR only, got a and b"),
])
def test_bad_arguments_are_one_line_errors(args: tuple[str, ...], message: str) -> None:
    done = run_script(*args)
    assert done.returncode == 2 and done.stderr.strip() == f"device_check: {message}" + (
        " (--dry-run, --cache FILE, --seeds N, OUT_DIR)" if "unknown" in message else "")


def test_a_missing_cache_file_is_named(tmp_path: Path) -> None:
    done = run_script("--cache", str(tmp_path / "nope.sqlite"), str(tmp_path / "out"))
    assert done.returncode == 2 and "nope.sqlite: no such file" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the real check")
def test_without_a_gpu_it_stops_after_recording_the_environment(tmp_path: Path) -> None:
    done = run_script(str(tmp_path))
    assert done.returncode == 3 and "no CUDA device" in done.stderr and "--dry-run" in done.stderr
    assert "available False" in (tmp_path / "env.txt").read_text()
    assert not (tmp_path / "bench.md").exists()
