"""The ``pytest-scaling`` command, for work outside a test run: render a saved JSON report, or compare two runs.

Exit codes: 0 done, 1 regressions found (compare), 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from pytest_scaling.baseline import compare, make_baseline
from pytest_scaling.report.files import write_report
from pytest_scaling.report.model import ReportError, load
from pytest_scaling.report.table import grouped

EXIT_REGRESSED = 1
EXIT_BAD_INPUT = 2


def _load_baseline(path: str) -> dict[str, Any]:
    """A baseline file, or a report file turned into one (its passing records' values and bands)."""
    try:
        return load(path, "baseline")
    except ReportError as baseline_error:
        try:
            return make_baseline(load(path, "report"))
        except ReportError:
            raise baseline_error from None


def _report(args: argparse.Namespace) -> int:
    """Render RESULTS.json into each -o path, in the format its extension names."""
    report = load(args.results, "report")
    for path in args.output:
        write_report(report, path)
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Compare NEW.json with BASE.json, print the table, and exit 1 if any record regressed."""
    baseline, report = _load_baseline(args.base), load(args.new, "report")
    comparison = compare(report, baseline)
    print("\n".join([grouped(report, "simple"), *comparison.notes()]))
    return EXIT_REGRESSED if comparison.regressed else 0


def parser() -> argparse.ArgumentParser:
    """The command's argument parser: the report and compare subcommands."""
    main_parser = argparse.ArgumentParser(prog="pytest-scaling", description=__doc__.splitlines()[0])
    commands = main_parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="render a JSON report (from --scaling-report) as .md, .html or .json")
    report.add_argument("results", metavar="RESULTS.json")
    report.add_argument("-o", "--output", action="append", required=True, metavar="PATH",
                        help="where to write it, format by extension; repeatable")
    report.set_defaults(run=_report)
    compare_parser = commands.add_parser("compare", help="compare a JSON report with a baseline (or an older report)")
    compare_parser.add_argument("base", metavar="BASE.json")
    compare_parser.add_argument("new", metavar="NEW.json")
    compare_parser.set_defaults(run=_compare)
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; bad input is one line on stderr and exit code 2."""
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except ReportError as err:
        print(f"pytest-scaling: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
