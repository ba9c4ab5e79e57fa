"""Render a results directory into README.md, index.html, summary.json and PNG figures.

The page (bench.report.page) reads in the order of docs/design.md section 9: the answer (the
headline table and its sentences), cost per preset, accuracy per data set, the poster's figures,
the ablations (options, paired differences, hybrids, learning rates), the convergence study,
scaling fits, the crossover, FLOPs, deviations from VisTR, failures and environments. Nothing in
it depends on where the results folder lies (it is named by the digest of its files), so the
same results render the same Markdown from anywhere.
"""

from pathlib import Path

from bench.report import paper
from bench.report.ablation import option_tables
from bench.report.accuracy import accuracy_tables
from bench.report.answer import headline_table, summary_rows
from bench.report.cost import cost_tables
from bench.report.counters import counters_table
from bench.report.crossover import crossover_table
from bench.report.deviations import deviation_sections
from bench.report.differences import differences_table
from bench.report.environments import describe, environments_table
from bench.report.failures import failures_table
from bench.report.figures import draw_figures
from bench.report.flops import flops_table, split_table
from bench.report.headline import COLUMNS, build_headline
from bench.report.hybrids import MISSING as NO_HYBRIDS
from bench.report.hybrids import hybrids_table
from bench.report.load import load_results
from bench.report.lr_sweep import MISSING as NO_LR_SWEEP
from bench.report.lr_sweep import lr_table
from bench.report.page import Page, Section, write_page
from bench.report.provenance import preset_key
from bench.report.scaling_memory import memory_table
from bench.report.scaling_points import points_table
from bench.report.scaling_time import exponents_table
from bench.report.sentences import sentences
from bench.report.study import MISSING as NO_STUDY
from bench.report.study import study_sentence, study_tables
from bench.report.summary import check_overwrite, write_summary
from bench.report.uncounted import fold_table, list_table

TITLE = "visbench report: what attention costs and what it buys"


def provenance(results) -> list[str]:
    """Which presets and data sets the report's parts come from, one line each."""
    lines = []
    cost = results.measurements[results.measurements["kind"].isin(["flops", "inference", "step"])]
    if not cost.empty:
        presets = ", ".join(sorted(set(cost["preset"].astype(str)), key=preset_key))
        lines.append(f"Cost (FLOPs, FPS, peak memory, step times): {presets} preset")
    for kind, frame in results.training.groupby("kind", sort=True):
        presets = ", ".join(sorted(set(frame["preset"].astype(str)), key=preset_key))
        data = ", ".join(sorted(set(frame["data"].astype(str))))
        lines.append(f"Training ({kind}): {presets} preset, data set: {data}")
    if (results.measurements["kind"] == "scaling").any():
        lines.append("Scaling: one encoder layer on feature maps of swept T and H×W (no preset)")
    return lines or ["No results found."]


def sections(results, headline, figures) -> list[Section]:
    ablations = [*option_tables(results), differences_table(results)]
    hybrids = hybrids_table(results)
    if hybrids is not None:
        ablations.append(hybrids)
    lr = lr_table(results)
    ablations.append(lr)
    absent = [] if hybrids is not None else [NO_HYBRIDS]
    absent += [] if lr.rows else [NO_LR_SWEEP]
    study = study_tables(results)
    return [
        Section(
            "answer", "The answer", [headline_table(headline)],
            [s for s in [*sentences(headline), study_sentence(results)] if s],
        ),
        Section("cost", "Cost per preset", cost_tables(results)),
        Section(
            "accuracy", "Accuracy per data set", accuracy_tables(results),
            figures=figures["accuracy"],
        ),
        Section("reported", "Reported in the poster", [paper.reported_table()]),
        Section(
            "ablations", "Ablations", ablations, figures=figures["ablation"], missing=absent,
        ),
        Section(
            "study", "Convergence study", study, figures=figures["study"] if study else [],
            missing=[] if study else [NO_STUDY],
        ),
        Section(
            "scaling", "Scaling fits",
            [exponents_table(results), memory_table(results), points_table(results)],
            figures=figures["scaling"],
        ),
        Section("crossover", "Crossover", [crossover_table(results)]),
        Section(
            "flops", "FLOPs",
            [split_table(results), flops_table(results), counters_table(), fold_table(results),
             list_table(results)],
        ),
        Section("deviations", "Deviations from VisTR / Deformable VisTR",
                lists=deviation_sections(results)),
        Section("failures", "Failures", [failures_table(results)]),
    ]  # fmt: skip


def used_by(all_sections: list[Section]) -> dict[str, list[str]]:
    """Environment id -> the names of the tables whose records come from it."""
    usage: dict[str, list[str]] = {}
    for section in all_sections:
        for table in section.tables:
            for env_id in table.env_ids:
                usage.setdefault(env_id, []).append(table.name)
    return usage


def render_report(results_dir, out_dir, note: str | None = None, force: bool = False):
    """Render results_dir into out_dir; returns {name: path} of everything written.

    Refuses (ValueError) when out_dir holds a report rendered from another results folder,
    unless ``force``; FileNotFoundError when results_dir does not exist."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results directory {results_dir} does not exist")
    check_overwrite([results_dir], out_dir, force)
    results = load_results(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    headline = build_headline(results)
    figures = draw_figures(results, out_dir)
    body = sections(results, headline, figures)
    body.append(
        Section("environment", "Environment",
                [environments_table(results.environments, used_by(body))])
    )  # fmt: skip
    page = Page(
        TITLE,
        [
            f"Rendered by python -m bench.report from a results folder whose files hash to "
            f"{results.digest} (summary.json records the folder).",
            "A dash gives the reason a value is missing (not run, OOM, timeout, error, not "
            "reached). The poster's figures are only in “Reported in the poster”.",
        ],
        [
            ("Measured on", [describe(e) for _, e in results.environments.iterrows()]
             or ["no records, so no environment"]),
            ("Presets and data", provenance(results)),
        ],
        body,
        note,
    )  # fmt: skip
    written = write_page(page, out_dir)
    table = {
        "reference": headline.reference,
        "columns": [
            {"key": c.key, "title": c.title, "unit": c.unit, "source": headline.legend[c.key]}
            for c in COLUMNS
        ],
        "rows": summary_rows(headline),
    }
    written["summary.json"] = write_summary(out_dir, results_dir, results.digest, table)
    for group in figures.values():
        written.update({f.filename: f.path for f in group if f.path})
    return written
