"""The zoo as negative controls, run the way a user runs the suite: does each planted mistake get caught?

The clean zoo model runs the reference suite through ``--scaling-family examples.zoo:clean`` and saves a baseline;
each variant (``examples.zoo.VARIANTS``) then runs it against that baseline, as a pull request changing the user's
model would. A variant is caught when a property fails its threshold or regresses beyond the seed noise of the
clean baseline (the run exits 1). The benign edits (``examples.zoo.BENIGN``: a renamed layer, reordered parameters)
run the same way and must flag nothing. Prints a markdown table: variant x property, value and status.

``--diagnose`` runs the variants with ``--scaling-diagnose`` instead (no clean baseline) and prints, per failing
property, its diagnosis: the value as written, each intervention's value and verdict, and the conclusion.

    python benchmarks/zoo.py                      # cpu tier, the session's default seeds
    python benchmarks/zoo.py --seeds 2 --only no_qk_layernorm no_z_loss
    python benchmarks/zoo.py --diagnose --only no_z_loss --properties no_logit_divergence depth_sensitivity
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
from pytest_scaling.properties import suite_properties  # noqa: E402


def run_suite(spec: str, out: Path, extra: list[str], properties: list[str] | None = None) -> tuple[int, float, dict]:
    """The reference suite (or its ``properties``) on one zoo family; its exit code, wall seconds and JSON report."""
    report = out / f"{spec.split(':')[1]}.json"
    started = time.perf_counter()
    selection = "TestSuite" + (" and (" + " or ".join(f"test_{p}" for p in properties) + ")" if properties else "")
    done = subprocess.run([sys.executable, "-m", "pytest", "scaling_tests/test_suite.py", "-k", selection, "-q",
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


def diagnose(variants: list[str], out: Path, extra: list[str], properties: list[str] | None) -> int:
    """Each variant's failing properties diagnosed (``--scaling-diagnose``), as a markdown table."""
    rows = []
    for variant in variants:
        code, seconds, report = run_suite(f"examples.zoo:{variant}", out, [*extra, "--scaling-diagnose"], properties)
        for record in report["records"]:
            found = record["data"].get("diagnosis")
            if found is None:
                continue
            tried = "; ".join(f"{t['summary']} {_number(t['value'])} {_verdict(t)}" for t in found["trials"]) or "-"
            rows.append([variant, record["property"], f"{_number(found['as_written']['value'])} (threshold "
                         f"{_number(found['threshold'])})", tried, found["conclusion"]])
        print(f"{variant}: exit {code}, {seconds:.0f} s", file=sys.stderr, flush=True)
    print("| variant | property | as written | with each intervention | conclusion |\n|---|---|---|---|---|")
    print("\n".join("| " + " | ".join(row) + " |" for row in rows))
    return 0


def _verdict(trial: dict) -> str:
    return {True: "pass", False: "fail"}.get(trial["passed"], trial["note"])


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / ".scaling" / "zoo")
    parser.add_argument("--seeds", type=int, default=None, help="--scaling-seeds (default: the tier's)")
    parser.add_argument("--tier", default="cpu")
    parser.add_argument("--only", nargs="*", help="variants and benign edits to run (default: all)")
    parser.add_argument("--diagnose", action="store_true", help="diagnose each variant's failing properties")
    parser.add_argument("--properties", nargs="*", help="with --diagnose: run only these suite properties")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    extra = ["--scaling-tier", args.tier, "--scaling-cache", str(args.out / "cache")]
    extra += ["--scaling-seeds", str(args.seeds)] if args.seeds else []
    if args.diagnose:
        out = args.out / "diagnosis"
        out.mkdir(exist_ok=True)
        return diagnose(args.only or list(VARIANTS), out, extra, args.properties)
    baseline = args.out / "clean-baseline.json"
    code, seconds, clean = run_suite("examples.zoo:clean", args.out, [*extra, "--scaling-save-baseline", str(baseline)])
    rows = [["clean", f"{seconds:.0f}", "exit 0" if code == 0 else f"exit {code}",
             *(_cell(next((r for r in clean["records"] if r["property"] == p.name), None)) for p in suite_properties())]]
    print(f"clean: exit {code}, {seconds:.0f} s", file=sys.stderr, flush=True)
    for variant in args.only or [*VARIANTS, *BENIGN]:
        code, seconds, report = run_suite(f"examples.zoo:{variant}", args.out, [*extra, "--scaling-baseline", str(baseline)])
        records = {r["property"]: r for r in report["records"]}
        caught = [p.name for p in suite_properties() if records.get(p.name, {}).get("status") in ("fail", "regressed")]
        missed = "flagged nothing" if variant in BENIGN else "NOT CAUGHT"
        rows.append([variant, f"{seconds:.0f}", f"exit {code}: " + (", ".join(caught) or missed),
                     *(_cell(records.get(p.name)) for p in suite_properties())])
        print(f"{variant}: exit {code}, caught by {caught or 'nothing'}, {seconds:.0f} s", file=sys.stderr, flush=True)
    headers = ["variant", "s", "verdict", *(p.name for p in suite_properties())]
    print("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
    print("\n".join("| " + " | ".join(row) + " |" for row in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
