"""``python -m bench.report --results results/ --out reports/``: render the report."""

import argparse
import sys

from bench.report.render import render_report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Render reports/README.md and reports/index.html (with PNG figures) from a "
        "results directory (measurements.jsonl, ablation.jsonl, runs/*/log.jsonl).",
    )
    parser.add_argument("--results", default="results", help="results directory (default results/)")
    parser.add_argument("--out", default="reports", help="output directory (default reports/)")
    parser.add_argument("--note", default=None, help="a sentence shown at the top of the report")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        written = render_report(args.results, args.out, note=args.note)
    except FileNotFoundError as error:
        print(f"python -m bench.report: {error}", file=sys.stderr)
        return 2
    for path in written.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
