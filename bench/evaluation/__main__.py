r"""Command line: video AP / AR of a YouTube-VIS results file against a ground-truth file.

Prints the twelve summary lines in COCO's layout; --json also writes them as a JSON object.
Every option is checked before the evaluation starts (files exist, the --json folder can be
written); any error is one line on stderr and a non-zero exit.

    python -m bench.evaluation --gt data/ytvis/annotations/instances_val.json \
        --results results.json
    python -m bench.evaluation --gt instances_val.json --results results.json --json metrics.json
"""

import json
import sys

from bench import cli
from bench.evaluation.ytvis_eval import evaluate, summary_lines


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m bench.evaluation",
        description="Video AP / AR of a YouTube-VIS results file against a ground-truth file, with\n"
        "the official YouTube-VIS semantics (bench.evaluation.ytvis_eval).",
        epilog="examples:\n" + __doc__.rsplit("\n\n", 1)[1].rstrip(),
    )
    parser.add_argument(
        "--gt", required=True, type=cli.existing_file, help="YouTube-VIS annotation file"
    )
    parser.add_argument(
        "--results", required=True, type=cli.existing_file,
        help="YouTube-VIS results file (a JSON list, see bench.data.results)",
    )  # fmt: skip
    parser.add_argument(
        "--json", type=cli.output_file,
        help="also write the metrics to this JSON file (default: none)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; 0 on success, 1 when a file does not fit its format or cannot be
    written (argparse's own errors exit with 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        stats = evaluate(args.gt, args.results)
    except (ValueError, OSError) as error:
        cli.report(parser, error)
        return 1
    print("\n".join(summary_lines(stats)))
    if args.json:
        try:
            with open(args.json, "w") as f:
                json.dump(stats, f, indent=1)
        except OSError as error:
            cli.report(parser, f"argument --json: {error}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
