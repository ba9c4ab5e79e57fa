"""Command line: `python -m bench.evaluation --gt FILE --results FILE [--json OUT]`.

Prints the twelve summary lines in COCO's layout; --json also writes them as a JSON object.
"""

import argparse
import json
import sys

from bench.evaluation.ytvis_eval import evaluate, summary_lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.evaluation",
        description="YouTube-VIS video AP / AR of a results file against a ground-truth file.",
    )
    parser.add_argument("--gt", required=True, help="YouTube-VIS annotation file")
    parser.add_argument("--results", required=True, help="YouTube-VIS results file (JSON list)")
    parser.add_argument("--json", help="also write the metrics to this JSON file")
    args = parser.parse_args(argv)
    try:
        stats = evaluate(args.gt, args.results)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(stats)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(stats, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
