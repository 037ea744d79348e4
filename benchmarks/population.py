"""False alarms and catches over a generated population of μP GPTs (``examples/population.py``).

Draws ``--clean`` μP-correct families and ``--planted`` families with exactly one known mistake (hypothesis
strategies, reproducible from ``--seed``), at the base widths given, and runs suite properties on them through the
suite's own code path (``pytest_scaling.suite.run_property``, cpu tier by default):

- every clean family runs the cheap properties (``--cheap``); the first ``--expensive-subset`` clean families with
  qk-norm and a z-loss also run the expensive ones (``--expensive``);
- every planted family runs the properties the literature names for its mistake
  (``population.LITERATURE_PROPERTY``) and the coordinate check.

Prints per property: false alarms / clean families run (a clean family that fails), inconclusive ones, the worst
clean value against the threshold (its margin), and catches / planted families run whose mistake names it. One JSON
line per (family, property) goes to ``--out``; a rerun with the same ``--out`` skips what is there (``--shard i/n``
splits the work between processes writing their own files; ``--table`` prints the table from several files).

    python benchmarks/population.py --clean 30 --planted 30 --out pop.jsonl
    python benchmarks/population.py --clean 30 --planted 30 --out pop-0.jsonl --shard 0/2   # and 1/2 beside it
    python benchmarks/population.py --table pop-0.jsonl pop-1.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from examples import population  # noqa: E402
from pytest_scaling.properties import PROPERTIES  # noqa: E402
from pytest_scaling.session import ScalingSession  # noqa: E402
from pytest_scaling.suite import run_property  # noqa: E402
from pytest_scaling.tiers import TIERS  # noqa: E402

CHEAP = ("coord_check", "weight_decay", "adam_epsilon")
EXPENSIVE = ("no_logit_divergence", "lr_sensitivity", "lr_curve_transfer", "depth_coord_check")


def run_family(spec: population.Spec, props: list[str], tier: str, seeds: list[int], cache: Path | None):
    """The properties on one drawn family, in one session (the LR-range step is measured once; runs cached in
    ``cache`` if given): per property its outcome (pass, fail, inconclusive, n/a, error), record and seconds."""
    session = ScalingSession(tier=TIERS[tier], device=torch.device("cpu"), seeds=seeds, cache_dir=cache)
    family = population.family(spec)
    for prop in props:
        started = time.perf_counter()
        outcome, why = "pass", ""
        try:
            run_property(session, family, PROPERTIES[prop])
        except AssertionError as failure:
            outcome, why = "fail", str(failure).splitlines()[0]
        except pytest.skip.Exception as skipped:
            why = str(skipped.msg if hasattr(skipped, "msg") else skipped)
            outcome = "n/a" if why.startswith("not applicable") else "inconclusive"
        except pytest.fail.Exception as error:
            outcome, why = "error", str(error)[:300]
        record = next((r["values"] for r in reversed(session.records) if r["values"].get("property") == prop), {})
        keep = {k: record.get(k) for k in ("value", "threshold", "seed_values", "verdicts", "model", "log_z_pull",
                                           "layers", "sizes", "widths", "drift", "diverged")}
        yield {"spec": spec.__dict__, "id": population.spec_id(spec), "property": prop, "outcome": outcome,
               "why": why, "seconds": round(time.perf_counter() - started, 1), "seeds": seeds, **keep}
    session.close()


def plan(args: argparse.Namespace) -> list[tuple[str, population.Spec, list[str]]]:
    """(kind, spec, properties) for every family, in order."""
    widths = tuple(args.base_widths)
    clean = population.draw_population(args.clean, args.seed, population.clean_specs(widths)) if args.clean else []
    planted = population.draw_population(args.planted, args.seed, population.planted_specs(widths)) if args.planted else []
    # The expensive properties run on the first clean families with both of Wortsman et al.'s stabilisers (qk-norm and
    # a z-loss): without them the stability properties are expected to fail at high LR, which is what they assert.
    stabilised = [spec for spec in clean if spec.qk_norm and spec.z_loss > 0][:args.expensive_subset]
    clean_work = [("clean", spec, [*args.cheap, *(args.expensive if spec in stabilised else ())]) for spec in clean]
    planted_work = [("planted", spec, list(dict.fromkeys(("coord_check", *population.LITERATURE_PROPERTY[spec.mistake]))))
                    for spec in planted]
    # Alternated, so that a partial run has both kinds.
    return [item for pair in itertools.zip_longest(clean_work, planted_work) for item in pair if item is not None]


def table(lines: list[dict[str, Any]]) -> str:
    """Per property: false alarms, inconclusive and worst margin over the clean families; catches over the planted."""
    rows = []
    for prop in dict.fromkeys(line["property"] for line in lines):
        clean = [x for x in lines if x["property"] == prop and x["spec"]["mistake"] is None and x["outcome"] != "n/a"]
        named = [x for x in lines if x["property"] == prop and x["spec"]["mistake"] is not None
                 and prop in population.LITERATURE_PROPERTY[x["spec"]["mistake"]]]
        values = [x["value"] for x in clean if x.get("value") is not None]
        worst = max(values, default=None)
        threshold = next((x["threshold"] for x in clean if x.get("threshold") is not None), None)
        margin = "-" if worst is None or not threshold else f"{worst:.3g} of {threshold:g} ({1 - worst / threshold:+.0%})"
        caught = [x for x in named if x["outcome"] == "fail"]
        missed = sorted({f"{x['spec']['mistake']} {x['id']} ({x['outcome']})" for x in named if x["outcome"] != "fail"})
        rows.append([prop, f"{sum(x['outcome'] == 'fail' for x in clean)} / {len(clean)}",
                     sum(x["outcome"] == "inconclusive" for x in clean), margin,
                     f"{len(caught)} / {len(named)}" if named else "-", "; ".join(missed) or "-"])
    return tabulate(rows, ["property", "false alarms / clean", "inconclusive (clean)", "worst clean value",
                           "caught / planted (named)", "missed"], tablefmt="github", disable_numparse=True)


def mistake_table(lines: list[dict[str, Any]]) -> str:
    """Per planted mistake: families caught by one of the properties the literature names for it, of those run."""
    by_family: dict[str, list[dict[str, Any]]] = {}
    for x in lines:
        if x["spec"]["mistake"] is not None:
            by_family.setdefault(x["id"], []).append(x)
    rows: dict[str, list[int]] = {}
    for family_lines in by_family.values():
        mistake = family_lines[0]["spec"]["mistake"]
        named = [x for x in family_lines if x["property"] in population.LITERATURE_PROPERTY[mistake]]
        count = rows.setdefault(mistake, [0, 0])
        count[0] += any(x["outcome"] == "fail" for x in named)
        count[1] += 1
    total = [sum(c[0] for c in rows.values()), sum(c[1] for c in rows.values())]
    body = [[m, ", ".join(population.LITERATURE_PROPERTY[m]), f"{c[0]} / {c[1]}"] for m, c in sorted(rows.items())]
    return tabulate([*body, ["all", "", f"{total[0]} / {total[1]}"]], ["mistake", "named properties", "caught"],
                    tablefmt="github", disable_numparse=True)


def coord_table(lines: list[dict[str, Any]]) -> str:
    """The coordinate check's two verdicts: over the clean families, the worst value; per planted mistake, the value
    of each verdict (min-max), so the bounds' margins on both sides show."""
    coord = [x for x in lines if x["property"] == "coord_check" and x.get("verdicts")]
    groups: dict[str, list[dict[str, Any]]] = {}
    for x in coord:
        groups.setdefault(x["spec"]["mistake"] or "clean", []).append(x)
    rows = []
    for group, members in sorted(groups.items(), key=lambda item: item[0] != "clean"):
        cells = []
        for name in ("parametrization", "training dynamics"):
            values = [v["value"] for x in members for v in x["verdicts"] if v["name"] == name and v["value"] is not None]
            cells.append(f"{min(values):+.3f} .. {max(values):+.3f}" if values else "-")
        seeds = sorted({len(v["seed_values"]) for x in members for v in x["verdicts"]})
        outcomes = ", ".join(f"{k} {n}" for k, n in sorted(_count(x["outcome"] for x in members).items()))
        rows.append([group, len(members), *cells, "/".join(map(str, seeds)), outcomes])
    return tabulate(rows, ["families", "n", "parametrization (min .. max)", "training dynamics (min .. max)", "seeds",
                           "outcomes"], tablefmt="github", disable_numparse=True)


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", type=int, default=30)
    parser.add_argument("--planted", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="the population's draw")
    parser.add_argument("--base-widths", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--cheap", nargs="*", default=list(CHEAP))
    parser.add_argument("--expensive", nargs="*", default=list(EXPENSIVE))
    parser.add_argument("--expensive-subset", type=int, default=8)
    parser.add_argument("--tier", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default: the tier's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th piece of work from the i-th")
    parser.add_argument("--only", nargs="*", help="family ids to run")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cache", type=Path, help="run cache directory: a rerun after a change to a check trains nothing")
    parser.add_argument("--table", type=Path, nargs="*", help="print the table of these result files and exit")
    args = parser.parse_args()
    if args.table:
        lines = [json.loads(x) for path in args.table for x in path.read_text().splitlines() if x.strip()]
        print(table(lines), mistake_table(lines), coord_table(lines), sep="\n\n")
        return 0
    torch.set_num_threads(args.threads)
    seeds = args.seeds or list(range(TIERS[args.tier].seeds))
    index, count = (int(x) for x in args.shard.split("/"))
    done = set()
    if args.out and args.out.exists():
        done = {(x["id"], x["property"]) for x in map(json.loads, args.out.read_text().splitlines()) if x}
    lines = []
    for i, (kind, spec, props) in enumerate(plan(args)):
        todo = [prop for prop in props if (population.spec_id(spec), prop) not in done]
        if i % count != index or not todo or (args.only and population.spec_id(spec) not in args.only):
            continue
        for line in run_family(spec, todo, args.tier, seeds, args.cache):
            lines.append(line)
            print(f"{kind:8} {line['id']} {line['property']:20} {line['outcome']:12} {line.get('value')} "
                  f"{line['seconds']}s {population.describe(spec)} | {line['why'][:160]}", flush=True)
            if args.out:
                with args.out.open("a") as out:
                    out.write(json.dumps(line) + "\n")
    print(table(lines), mistake_table(lines), coord_table(lines), sep="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
