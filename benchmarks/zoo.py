"""The zoo as negative controls, run the way a user runs the suite: does each planted mistake get caught?

The clean zoo model runs the reference suite through ``--scaling-family examples.zoo:clean`` and saves a baseline;
each variant (``examples.zoo.VARIANTS``) then runs it against that baseline, as a pull request changing the user's
model would. A variant is caught when a property fails its threshold or regresses beyond the seed noise of the
clean baseline (the run exits 1). The benign edits (``examples.zoo.BENIGN``: a renamed layer, reordered parameters)
run the same way and must flag nothing. Prints a markdown table: variant x property, value and status.

    python benchmarks/zoo.py                      # cpu tier, the session's default seeds
    python benchmarks/zoo.py --seeds 2 --only no_qk_layernorm no_z_loss
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from examples.zoo import BENIGN, VARIANTS  # noqa: E402
from pytest_scaling.properties import SUITE  # noqa: E402


def run_suite(spec: str, out: Path, extra: list[str]) -> tuple[int, float, dict]:
    """The reference suite on one zoo family; its exit code, wall seconds and JSON report."""
    report = out / f"{spec.split(':')[1]}.json"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "scaling_tests/test_suite.py", "-k", "TestSuite", "-q",
                           "-p", "no:cacheprovider", "--scaling-family", spec, "--scaling-report", str(report), *extra],
                          cwd=REPO, capture_output=True, text=True)
    (out / f"{spec.split(':')[1]}.log").write_text(done.stdout + done.stderr)
    return done.returncode, time.perf_counter() - started, json.loads(report.read_text())


def _cell(record: dict | None) -> str:
    if record is None:
        return "-"
    value = "-" if record["value"] is None else f"{record['value']:.3g}"
    z = (record.get("baseline") or {}).get("z")
    return f"{value} {record['status']}" + (f" (z {z:+.1f})" if z is not None and abs(z) >= 1 else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / ".scaling" / "zoo")
    parser.add_argument("--seeds", type=int, default=None, help="--scaling-seeds (default: the tier's)")
    parser.add_argument("--tier", default="cpu")
    parser.add_argument("--only", nargs="*", help="variants and benign edits to run (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    extra = ["--scaling-tier", args.tier, "--scaling-cache", str(args.out / "cache")]
    extra += ["--scaling-seeds", str(args.seeds)] if args.seeds else []
    baseline = args.out / "clean-baseline.json"
    code, seconds, clean = run_suite("examples.zoo:clean", args.out, [*extra, "--scaling-save-baseline", str(baseline)])
    rows = [["clean", f"{seconds:.0f}", "exit 0" if code == 0 else f"exit {code}",
             *(_cell(next((r for r in clean["records"] if r["property"] == p.name), None)) for p in SUITE)]]
    print(f"clean: exit {code}, {seconds:.0f} s", file=sys.stderr, flush=True)
    for variant in args.only or [*VARIANTS, *BENIGN]:
        code, seconds, report = run_suite(f"examples.zoo:{variant}", args.out, [*extra, "--scaling-baseline", str(baseline)])
        records = {r["property"]: r for r in report["records"]}
        caught = [p.name for p in SUITE if records.get(p.name, {}).get("status") in ("fail", "regressed")]
        missed = "flagged nothing" if variant in BENIGN else "NOT CAUGHT"
        rows.append([variant, f"{seconds:.0f}", f"exit {code}: " + (", ".join(caught) or missed),
                     *(_cell(records.get(p.name)) for p in SUITE)])
        print(f"{variant}: exit {code}, caught by {caught or 'nothing'}, {seconds:.0f} s", file=sys.stderr, flush=True)
    headers = ["variant", "s", "verdict", *(p.name for p in SUITE)]
    print("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
    print("\n".join("| " + " | ".join(row) + " |" for row in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
