#!/usr/bin/env bash
# The GPU check in one command: environment, the sweep benchmark and the gpu-tier suite, everything under one folder.
#
#   benchmarks/device_check.sh [--dry-run] [--cache FILE] [--seeds N] [OUT_DIR]   (OUT_DIR default: ./device-results)
#
# On a CUDA machine it runs within 8 minutes of wall time and writes at most 11 files to OUT_DIR:
#   env.txt       nvidia-smi, python, torch and CUDA versions, the device
#   bench.md      benchmarks/bench_sweep.py --gpu: loop vs stacked vs compiled vs auto, MLP and GPT, runs/s, memory, MFU
#   suite.log     pytest scaling_tests/ --gpu --durations=0 (stopped cleanly by SIGINT at its time cap)
#   report.json, report.md, report.html   the suite's report: every property that finished, calibration included
#   bf16.log, report-bf16.json   the reference MLP's suite again under --scaling-bf16 (its own cap)
#   bf16-compare.txt   pytest-scaling compare report.json report-bf16.json: bf16's verdicts and its changes beyond
#                 the seed noise of the fp32 run (exit 1 there is a finding, not a failed step)
#   cache.sqlite  the run cache; pass it back with --cache so a later run retrains nothing it holds, and raise
#                 --seeds (default: the tier's, 3 on the gpu tier) so that it adds seeds to the calibration instead
#   steps.tsv     per step: its exit status, seconds and time cap
# --dry-run does the same on the CPU with the smoke tier and a short benchmark, within 2 minutes: it proves the
# script runs end to end before a GPU is spent on it. The exit status is the first failed step's (0: all passed;
# a step stopped at its cap counts as passed when it wrote its output: 124 is reported in steps.tsv).
set -uo pipefail

dry_run=0
cache=""
seeds=""
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --cache) cache="${2:?--cache needs a file}"; shift ;;
        --seeds) seeds="${2:?--seeds needs a number}"; shift
                 case "$seeds" in ''|*[!0-9]*|0) echo "device_check: --seeds takes a positive integer, got $seeds" >&2; exit 2 ;; esac ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) echo "device_check: unknown option $1 (--dry-run, --cache FILE, --seeds N, OUT_DIR)" >&2; exit 2 ;;
        *) [ -z "$out" ] || { echo "device_check: one OUT_DIR only, got $out and $1" >&2; exit 2; }; out="$1" ;;
    esac
    shift
done
out="${out:-./device-results}"
cd "$(dirname "$0")/.."
mkdir -p "$out" || { echo "device_check: cannot create $out" >&2; exit 2; }
out="$(cd "$out" && pwd)"
python="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1

# On a GPU a failed property (pytest's exit 1) is a finding of an uncalibrated tier, not a broken script; in a dry run
# the smoke tier on the reference families must pass.
if [ "$dry_run" = 1 ]; then
    bench_args=(--dry-run); suite_args=(--scaling-tier smoke); bench_cap=90; suite_cap=45; bf16_cap=30; suite_ok="0"
else
    bench_args=(--gpu); suite_args=(--gpu); bench_cap=120; suite_cap=240; bf16_cap=90; suite_ok="0 1"
fi

[ -z "$seeds" ] || suite_args+=(--scaling-seeds "$seeds")
if [ -n "$cache" ]; then
    [ -f "$cache" ] || { echo "device_check: --cache $cache: no such file" >&2; exit 2; }
    cp "$cache" "$out/cache.sqlite" || exit 2
fi

status=0
printf 'step\texit\tseconds\tcap\n' > "$out/steps.tsv"
# step NAME CAP LOG OK COMMAND...: run COMMAND with its output in LOG, interrupted (SIGINT, then killed 30 s later) at
# CAP seconds; record its exit status. A status outside OK (space-separated; 124, stopped at its cap, always counts as
# done) becomes the script's, the first one only.
step() {
    local name="$1" cap="$2" log="$3" ok="$4"; shift 4
    local started=$SECONDS
    echo "device_check: $name (cap ${cap}s)"
    timeout --signal=INT --kill-after=30 "$cap" "$@" > "$log" 2>&1
    local rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - started))" "$cap" >> "$out/steps.tsv"
    echo "device_check: $name exit $rc after $((SECONDS - started))s"
    case " $ok 124 " in *" $rc "*) ;; *) [ "$status" != 0 ] || status=$rc ;; esac
}

if ! "$python" -c 'import pytest_scaling' 2>/dev/null; then
    # The image has torch and the test tools; the plugin itself installs from this checkout, without fetching anything.
    "$python" -m pip install -q --no-deps --no-build-isolation -e . || { echo "device_check: cannot install the plugin" >&2; exit 2; }
fi

environment() {
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
    "$python" -c 'import platform, torch; cuda = torch.cuda.is_available()
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, available {cuda}")
print("device:", torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads")'
}

export -f environment; export python
step env 20 "$out/env.txt" 0 bash -c environment
if [ "$dry_run" = 0 ] && ! "$python" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "device_check: no CUDA device (see $out/env.txt); use --dry-run on a machine without one" >&2
    exit 3
fi
step bench "$bench_cap" "$out/bench.md" 0 "$python" benchmarks/bench_sweep.py "${bench_args[@]}"
step suite "$suite_cap" "$out/suite.log" "$suite_ok" "$python" -m pytest scaling_tests/ -q -p no:cacheprovider --durations=0 \
    "${suite_args[@]}" --scaling-cache "$out" --scaling-report "$out/report.json" \
    --scaling-report "$out/report.md" --scaling-report "$out/report.html"
# bf16 autocast is used only where it leaves the verdicts as they are: the reference MLP's properties once more under
# it, then compared with the fp32 run's (a bf16 value outside the fp32 seed noise is listed; its status is its own).
step bf16 "$bf16_cap" "$out/bf16.log" "$suite_ok" "$python" -m pytest scaling_tests/ -q -p no:cacheprovider \
    -k TestReferenceMLP "${suite_args[@]}" --scaling-bf16 --scaling-cache "$out" --scaling-report "$out/report-bf16.json"
step bf16-compare 20 "$out/bf16-compare.txt" "0 1" "$python" -m pytest_scaling.cli compare "$out/report.json" \
    "$out/report-bf16.json"
for file in report.json report.md report.html report-bf16.json bf16-compare.txt cache.sqlite; do
    [ -s "$out/$file" ] || { echo "device_check: $file was not written" >&2; [ "$status" != 0 ] || status=4; }
done
echo "device_check: done, exit $status; results in $out"
exit "$status"
