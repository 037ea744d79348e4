#!/usr/bin/env bash
# docs/sample-report.{html,md}: the reports of the reference suite's cpu-tier run, written by the suite itself.
# Extra arguments go to pytest (e.g. --scaling-cache DIR to reuse a run cache).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest scaling_tests/ -q -p no:cacheprovider \
    --scaling-report docs/sample-report.html --scaling-report docs/sample-report.md "$@" || true
test -s docs/sample-report.md && test -s docs/sample-report.html
