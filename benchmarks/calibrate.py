"""Threshold calibration: each reference-suite check on the clean built-in families, replicated over seeds.

A replicate is one run of a check with its own disjoint set of seeds, as many as the tier uses
(cpu: 2, so replicate r uses seeds 2r and 2r+1; checks that use fewer seeds take the first of
their set). It prints, per check, the recorded value of every replicate, their mean and spread,
the tier's threshold and the margin: the distance from the worst replicate to the threshold in
units of the replicates' standard deviation. Runs are cached (``--cache``), so a second call only
recomputes the statistics.

    python benchmarks/calibrate.py                       # cpu tier, 5 replicates
    python benchmarks/calibrate.py --replicates 5 --only power_law extrapolation
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tabulate import tabulate

from pytest_scaling import checks, families
from pytest_scaling.session import ScalingSession
from pytest_scaling.tiers import TIERS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scaling_tests"))
from test_depth import gpt_at_depth  # noqa: E402  (the suite's own depth family)
from test_gpt import stable_gpt, transfer_gpt  # noqa: E402  (the suite's own GPTs)


def _gpt():
    return stable_gpt()


def _mlp():
    return families.mlp(parametrization="mup")


#: name -> (call on a session, what the recorded value means); every value is ideally 0, larger is worse
CHECKS: dict[str, tuple[Callable[[ScalingSession], Any], str]] = {
    "coord_check[gpt]": (lambda s: checks.coord_check(s, _gpt()), "max growth slope"),
    "coord_check[mlp]": (lambda s: checks.coord_check(s, _mlp()), "max growth slope"),
    "lr_transfer[mlp]": (lambda s: checks.lr_transfer(s, _mlp()), "slope of log2 eta* (|.|)"),
    "lr_curve_transfer[gpt]": (lambda s: checks.lr_curve_transfer(s, transfer_gpt()), "|slope| of the curve's shift"),
    "wider_is_better[mlp]": (lambda s: checks.wider_is_better(s, _mlp()), "max relative loss rise"),
    "power_law[mlp]": (lambda s: checks.power_law(s, _mlp()), "1 − R² (log)"),
    "extrapolation[mlp]": (lambda s: checks.extrapolates(s, _mlp()), "max relative error"),
    "lr_sensitivity[gpt]": (lambda s: checks.lr_sensitivity(s, _gpt()), "max S over widths"),
    "depth[gpt]": (lambda s: checks.depth(s, gpt_at_depth), "max growth of S per doubling of depth"),
    "depth_coord_check[gpt]": (lambda s: checks.depth_coord_check(s, gpt_at_depth), "max |slope| on log depth"),
    "depth_lr_transfer[gpt]": (lambda s: checks.depth_lr_transfer(s, gpt_at_depth), "|slope| of the curve's shift"),
    "no_logit_divergence[gpt]": (lambda s: checks.no_logit_divergence(s, _gpt()), "max attention logit"),
    "no_logit_divergence[gpt] |log Z|": (lambda s: checks.no_logit_divergence(s, _gpt()), "max |mean log Z|"),
    "no_logit_divergence[gpt] log Z drift": (lambda s: checks.no_logit_divergence(s, _gpt()),
                                             "max |mean log Z| in the second half − at step 0"),
}

#: The series of the logit check each of its rows judges, and the cap that bounds it.
_LOGIT_SERIES = {"no_logit_divergence[gpt]": ("attention logit", "attention_logit_cap", "max_abs"),
                 "no_logit_divergence[gpt] |log Z|": ("|log Z|", "log_z_cap", "max_abs"),
                 "no_logit_divergence[gpt] log Z drift": ("|log Z|", "max_log_z_drift", "drift")}


def _value(name: str, record: dict[str, Any]) -> float:
    """The number a check is judged on, from its record (the logit check records one maximum per series)."""
    if name in _LOGIT_SERIES:
        series, _, field = _LOGIT_SERIES[name]
        return max(math.inf if v is None else v for k, v in record[field].items() if k.endswith(series))
    value = record["value"]
    return abs(value) if name.startswith(("lr_transfer", "lr_curve_transfer", "depth_lr_transfer")) else value


def _threshold(name: str, record: dict[str, Any]) -> float:
    return record["caps"][_LOGIT_SERIES[name][1]] if name in _LOGIT_SERIES else record["threshold"]


def calibrate(tier_name: str, replicates: int, cache: Path, only: list[str] | None) -> list[list[Any]]:
    """One table row per check: values of each replicate, mean, std, worst, threshold, margin."""
    tier = TIERS[tier_name]
    rows = []
    for name, (run, meaning) in CHECKS.items():
        if only and not any(name.startswith(prefix) for prefix in only):
            continue
        values, threshold, started = [], math.nan, time.perf_counter()
        for r in range(replicates):
            seeds = list(range(r * tier.seeds, (r + 1) * tier.seeds))
            session = ScalingSession(tier=tier, device=torch.device("cpu"), seeds=seeds, cache_dir=cache)
            try:
                run(session)
            except AssertionError:
                pass  # a failing replicate is data: its value is in the record
            record = session.records[-1]["values"]
            values.append(_value(name, record))
            threshold = _threshold(name, record)
            session.close()
        worst = max(values)
        spread = statistics.stdev(values) if len(values) > 1 else math.nan
        gap = threshold - worst
        rows.append([name, meaning, " ".join(f"{v:.4g}" for v in values), f"{statistics.mean(values):.4g}",
                     f"{spread:.2g}", f"{worst:.4g}", f"≤ {threshold:g}",
                     f"{gap / spread:.1f}σ" if spread > 0 else "-", f"{time.perf_counter() - started:.0f}"])
        print(tabulate([rows[-1]], tablefmt="plain"), file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", default="cpu", choices=[t for t, v in TIERS.items() if v.device_kind == "cpu"])
    parser.add_argument("--replicates", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path(".scaling/calibration"))
    parser.add_argument("--only", nargs="*", help="check name prefixes to run (default: all)")
    args = parser.parse_args()
    rows = calibrate(args.tier, args.replicates, args.cache, args.only)
    headers = ["check", "value", f"replicates ({args.tier} tier seeds each)", "mean", "std", "worst", "threshold",
               "margin (worst to threshold)", "s"]
    print(tabulate(rows, headers, tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
