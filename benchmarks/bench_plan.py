"""The plan against the run: each suite property's predicted seconds (``pytest_scaling.cost``) beside the seconds its
test took, uncached, on this machine.

    python benchmarks/bench_plan.py                                   # the reference GPT, cpu tier
    python benchmarks/bench_plan.py --family examples.zoo:clean       # any --scaling-family

It runs ``scaling_tests/test_suite.py::TestSuite`` under ``--scaling-no-cache`` (runs shared within the session, as
the plan assumes), reads the plan from the JSON report and each test's call time from a JUnit file, and prints one
row per property: predicted, measured and their ratio, the LR-range step counted with the first property that
places a grid. Run it on a quiet machine: the plan times steps at the start, the run pays for what comes after.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
#: The target of issue "within its budget": a property's predicted time within 25% of the measured.
TOLERANCE = 0.25


def run_suite(family: str | None, tier: str, out: Path) -> tuple[dict, dict[str, float]]:
    """The suite's JSON report and each test's call seconds, by property."""
    command = [sys.executable, "-m", "pytest", "scaling_tests/test_suite.py::TestSuite", "-q", "-p", "no:cacheprovider",
               "--scaling-no-cache", "--scaling-tier", tier, "--scaling-report", str(out / "r.json"),
               "--junitxml", str(out / "j.xml"), "-o", "junit_duration_report=call",
               *(["--scaling-family", family] if family else [])]
    subprocess.run(command, cwd=ROOT, check=False)
    report = json.loads((out / "r.json").read_text())
    seconds = {case.get("name").split("[")[0].removeprefix("test_"): float(case.get("time"))
               for case in ElementTree.parse(out / "j.xml").iter("testcase")}
    return report, seconds


def compare(plan: dict, measured: dict[str, float]) -> list[list[object]]:
    """Rows of property, predicted, measured, ratio; the LR-range step goes to the first property that trains."""
    rows, carried = [], 0.0
    for cost in plan["properties"]:
        if cost["name"] == "LR-range step":
            carried = cost["seconds"]
            continue
        if cost["runs"] == 0 or cost["name"] not in measured:
            continue
        predicted, carried = cost["seconds"] + carried, 0.0
        took = measured[cost["name"]]
        rows.append([cost["name"], cost["new_runs"], round(predicted, 1), round(took, 1),
                     round(predicted / took, 2) if took > 0 else None])
    total_predicted = sum(r[2] for r in rows)
    total_measured = sum(r[3] for r in rows)
    rows.append(["total", sum(r[1] for r in rows), round(total_predicted, 1), round(total_measured, 1),
                 round(total_predicted / total_measured, 2)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", help="MODULE:ATTR, as --scaling-family (default: the reference GPT)")
    parser.add_argument("--tier", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        report, measured = run_suite(args.family, args.tier, Path(directory))
    for plan in report["environment"]["plans"] or []:
        rows = compare(plan, measured)
        print(f"\n{plan['family']} ({plan['tier']} tier, threads {report['environment']['threads']}):")
        print(tabulate(rows, ["property", "new runs", "predicted s", "measured s", "predicted / measured"]))
        off = [row[0] for row in rows[:-1] if row[4] is not None and row[2] > 5 and abs(row[4] - 1) > TOLERANCE]
        print(f"within {TOLERANCE:.0%}: {'all properties over 5 s' if not off else 'not ' + ', '.join(off)}")


if __name__ == "__main__":
    main()
