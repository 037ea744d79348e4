"""Threshold calibration: the standard suite on a family, replicated over disjoint seed sets, with margins.

A replicate is one run of every suite property (``pytest_scaling.suite.run_property``, the code path of the suite
itself) with its own seeds, as many as the tier's most seeded grid uses (cpu: 3, the power law's, so replicate r uses
seeds 3r..3r+2; properties that use fewer take the first of their set). It prints, per property, the recorded value of each replicate, their mean
and spread, the threshold, the margin (worst replicate to threshold in units of the replicates' standard deviation)
and the seconds it took. Runs are cached (``--cache``), so a second call only recomputes the statistics.

    python benchmarks/calibrate.py                                   # reference GPT, cpu tier, 5 replicates
    python benchmarks/calibrate.py --family reference-mlp --replicates 3
    python benchmarks/calibrate.py --family zoo --only lr_sensitivity no_logit_divergence --threads 1
    python benchmarks/calibrate.py --family zoo:no_qk_layernorm --replicates 1
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from examples import zoo  # noqa: E402  (the user-style zoo)
from pytest_scaling import families  # noqa: E402
from pytest_scaling.family import ModelFamily  # noqa: E402
from pytest_scaling.properties import PROPERTIES, Property, suite_properties  # noqa: E402
from pytest_scaling.session import ScalingSession  # noqa: E402
from pytest_scaling.suite import run_property  # noqa: E402
from pytest_scaling.tiers import TIERS  # noqa: E402


def family_named(name: str) -> ModelFamily:
    """``reference-gpt``, ``reference-mlp``, ``zoo`` (the clean zoo model) or ``zoo:<variant>``."""
    if name == "reference-gpt":
        return families.reference_gpt()
    if name == "reference-mlp":
        return families.reference_mlp()
    if name == "zoo":
        return zoo.make()
    if name.startswith("zoo:"):
        return zoo.make(name.split(":", 1)[1])
    raise SystemExit(f"unknown family {name!r}: reference-gpt, reference-mlp, zoo or zoo:<variant>")


def run_replicate(family: ModelFamily, prop: Property, tier: str, seeds: list[int], cache: Path) -> tuple[dict, str, float]:
    """One property on one seed set: its record, its outcome (pass, fail, skip) and the seconds it took."""
    session = ScalingSession(tier=TIERS[tier], device=torch.device("cpu"), seeds=seeds, cache_dir=cache)
    started = time.perf_counter()
    outcome = "pass"
    try:
        run_property(session, family, prop)
    except AssertionError:
        outcome = "fail"
    except pytest.skip.Exception:
        outcome = "skip"
    finally:
        session.close()
    record = next((r["values"] for r in reversed(session.records) if r["values"].get("property") == prop.name), {})
    return record, outcome, time.perf_counter() - started


def seeds_per_replicate(tier: Any) -> int:
    """The most seeds any of the tier's grids uses (a grid's own ``seeds`` may exceed the tier's), so replicates
    never share a seed."""
    grids = [prop.grid_in(tier) for prop in PROPERTIES.values()]
    return max([tier.seeds, *(getattr(g, "seeds", None) or 0 for g in grids)])


def calibrate(family: ModelFamily, tier: str, replicates: int, cache: Path, only: list[str] | None) -> list[dict[str, Any]]:
    """Per property: its replicates' values and outcomes, with their statistics."""
    rows = []
    n_seeds = seeds_per_replicate(TIERS[tier])
    for prop in suite_properties():
        if only and prop.name not in only:
            continue
        values, outcomes, seconds, threshold = [], [], 0.0, None
        for r in range(replicates):
            record, outcome, took = run_replicate(family, prop, tier, list(range(r * n_seeds, (r + 1) * n_seeds)), cache)
            values.append(record.get("value"))
            outcomes.append(outcome)
            seconds += took
            threshold = record.get("threshold", threshold)
        rows.append({"property": prop.name, "values": values, "outcomes": outcomes, "threshold": threshold,
                     "seconds": seconds, "worse": prop.worse})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _cells(row: dict[str, Any]) -> list[str]:
    judged = [abs(v) if row["worse"] == "higher_abs" else v for v in row["values"] if v is not None]
    mean = statistics.mean(judged) if judged else math.nan
    spread = statistics.stdev(judged) if len(judged) > 1 else math.nan
    worst = max(judged) if judged else math.nan
    threshold = row["threshold"]
    margin = (threshold - worst) / spread if threshold is not None and spread > 0 else math.nan
    values = " ".join("-" if v is None else f"{v:.4g}" for v in row["values"])
    return [row["property"], values, " ".join(row["outcomes"]), f"{mean:.4g}", f"{spread:.2g}", f"{worst:.4g}",
            "-" if threshold is None else f"{threshold:g}", f"{margin:.1f}σ" if math.isfinite(margin) else "-",
            f"{row['seconds']:.0f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="reference-gpt")
    parser.add_argument("--tier", default="cpu", choices=[t for t, v in TIERS.items() if v.device_kind == "cpu"])
    parser.add_argument("--replicates", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--cache", type=Path, default=REPO / ".scaling" / "calibration")
    parser.add_argument("--only", nargs="*", help="property names to run (default: the whole suite)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = calibrate(family_named(args.family), args.tier, args.replicates, args.cache, args.only)
    headers = ["property", f"value per replicate ({args.tier} tier seeds each)", "outcomes", "mean", "std", "worst",
               "threshold", "margin (worst)", "s"]
    print(f"{args.family}, {args.tier} tier, {torch.get_num_threads()} torch threads")
    print(tabulate([_cells(row) for row in rows], headers, tablefmt="github", disable_numparse=True))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
