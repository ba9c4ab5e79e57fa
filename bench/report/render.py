"""Render a results directory into README.md and index.html with jinja2 templates and PNG figures.

The templates live in bench/report/templates. The Markdown and the HTML show the same content in
the same order: a header saying where the results come from and where they were measured, the
tables, the figures, then the environment table.
"""

from pathlib import Path

import jinja2

from bench.report.ablation import k_ablation_table
from bench.report.cost import COST_KINDS, cost_accuracy_table
from bench.report.environments import describe, environments_table
from bench.report.failures import failures_table
from bench.report.figures import draw_figures
from bench.report.flops import flops_table, split_table, unsupported_table
from bench.report.load import load_results
from bench.report.methods import complexity_source
from bench.report.scaling import exponents_table, points_table
from bench.report.table import Table

TEMPLATES = Path(__file__).resolve().parent / "templates"
TITLE = "visbench report: what attention costs and what it buys"


def template_environment() -> jinja2.Environment:
    """Templates from the package folder; HTML autoescaped, Markdown not."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def build_tables(results) -> list[Table]:
    """The report's tables in reading order; the scaling points are shown collapsed."""
    complexity, complexity_from = complexity_source()
    return [
        cost_accuracy_table(results, complexity, complexity_from),
        k_ablation_table(results),
        exponents_table(results, complexity),
        points_table(results),
        split_table(results),
        flops_table(results),
        unsupported_table(results),
        failures_table(results),
    ]


def used_by(tables: list[Table]) -> dict[str, list[str]]:
    """Environment id -> the titles of the tables whose records come from it."""
    usage: dict[str, list[str]] = {}
    for table in tables:
        for env_id in table.env_ids:
            usage.setdefault(env_id, []).append(table.name)
    return usage


def provenance(results) -> list[str]:
    """Which presets and data sets the report's parts come from, one line each."""
    lines = []
    cost = results.measurements
    cost = cost[cost["kind"].isin(COST_KINDS)]
    if not cost.empty:
        presets = ", ".join(sorted(set(cost["preset"].dropna().astype(str))))
        lines.append(f"Cost (FLOPs, FPS, peak memory): {presets} preset")
    if not results.ablation.empty:
        ablation = results.ablation
        presets = ", ".join(sorted(set(ablation["preset"].dropna().astype(str))))
        data = ", ".join(sorted(set(ablation["data"].dropna().astype(str))))
        lines.append(f"Training ablation and convergence: {presets} preset, data set: {data}")
    if (results.measurements["kind"] == "scaling").any():
        lines.append("Scaling: one encoder layer on feature maps of swept T and H×W (no preset)")
    return lines or ["No results found."]


def render_report(results_dir, out_dir, note: str | None = None) -> dict[str, Path]:
    """Render results_dir into out_dir; returns {"README.md": path, "index.html": path, figures}."""
    if not Path(results_dir).is_dir():
        raise FileNotFoundError(f"results directory {results_dir} does not exist")
    results = load_results(results_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = build_tables(results)
    figures = draw_figures(results, out_dir)
    context = {
        "title": TITLE,
        "results_dir": str(results_dir),
        "note": note,
        "provenance": provenance(results),
        "environments": [describe(env) for _, env in results.environments.iterrows()],
        "tables": tables,
        "figures": figures,
        "environment_table": environments_table(results.environments, used_by(tables)),
    }
    templates = template_environment()
    written = {}
    for template, name in (("README.md.j2", "README.md"), ("index.html.j2", "index.html")):
        path = out_dir / name
        path.write_text(templates.get_template(template).render(context), encoding="utf-8")
        written[name] = path
    written.update({figure.filename: figure.path for figure in figures if figure.path})
    return written
