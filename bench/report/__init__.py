"""Report rendering: tables and figures from a results directory, as Markdown and HTML.

``render_report("results/", "reports/")`` (or ``python -m bench.report``) reads the results
store and writes reports/README.md, reports/index.html, reports/summary.json and the figures
beside them (docs/design.md section 9); ``compare_results(A, B, out)`` (``--compare``) renders
the noise-aware comparison of two results directories.
"""


def render_report(*args, **kwargs):
    """bench.report.render.render_report (imported on first use)."""
    from bench.report.render import render_report as render

    return render(*args, **kwargs)


def compare_results(*args, **kwargs):
    """bench.report.compare.compare_results (imported on first use)."""
    from bench.report.compare import compare_results as compare

    return compare(*args, **kwargs)


__all__ = ["compare_results", "render_report"]
