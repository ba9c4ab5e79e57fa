"""Render the report of a results folder, or compare two.

    python -m bench.report --results results/ --out reports/
    python -m bench.report --compare results-a/ results-b/ --out comparison/

A report folder records the results it was rendered from (summary.json); rendering other results
into it is refused unless --force, so a committed report is never overwritten by accident. A
user's mistake (a missing folder, a refused overwrite) is one line on stderr and exit status 2.
"""

import sys

from bench import cli

PROG = "python -m bench.report"


def build_parser():
    parser = cli.parser(PROG, __doc__)
    parser.add_argument("--results", default="results", help="results folder to render")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                        help="compare two results folders (B against A) instead")  # fmt: skip
    parser.add_argument("--out", default=None,
                        help="output folder (default: reports/, or comparison/ with --compare)")  # fmt: skip
    parser.add_argument("--note", default=None, help="a sentence shown at the top of the report")
    parser.add_argument("--force", action="store_true",
                        help="overwrite a report in --out rendered from other results")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> dict:
    from bench.report.compare import compare_results
    from bench.report.render import render_report

    args = build_parser().parse_args(argv)
    if args.compare:
        out = cli.writable_dir(args.out or "comparison")
        written = compare_results(*args.compare, out, note=args.note, force=args.force)
    else:
        out = cli.writable_dir(args.out or "reports")
        written = render_report(args.results, out, note=args.note, force=args.force)
    for path in written.values():
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    cli.run(PROG, main)
    sys.exit(0)
