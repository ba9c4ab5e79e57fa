"""Report rendering: tables and figures from a results directory, as Markdown and HTML.

``render_report("results/", "reports/")`` (or ``python -m bench.report``) reads the results
store (measurements.jsonl, ablation.jsonl, runs/*/log.jsonl) and writes reports/README.md,
reports/index.html and the figures beside them (DESIGN.md section 9).
"""

from bench.report.render import render_report

__all__ = ["render_report"]
