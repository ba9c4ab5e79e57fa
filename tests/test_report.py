"""The report renderer: tables hold the fixture's numbers, failures show as dashes with reasons,
reported rows are marked, the HTML is valid and self-contained, every figure is a real PNG.

The fixture (tests/fixtures/report) is a results directory in the store's schema; expected values
are read from its JSON lines here, independently of bench.report's own loading code.
"""

import json
import re
import subprocess
import sys
import warnings
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.report import render_report
from bench.report.__main__ import main
from bench.report.cells import missing, number, summary
from bench.report.load import load_results
from bench.report.methods import method_label
from bench.report.table import Column, Row, Table

FIXTURE = Path(__file__).parent / "fixtures" / "report"
ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ["convergence.png", "ap_vs_k.png", "time_vs_tokens.png", "memory_vs_tokens.png"]
TABLE_IDS = ["cost", "k-ablation", "scaling", "scaling-points", "flops-split", "flops-counters"]
TABLE_IDS += ["unsupported-ops", "failures", "environments"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
VOID |= {"track", "wbr"}


# ---- reading the fixture and the rendered Markdown, independently of bench.report ----


def fixture_records(name: str) -> list[dict]:
    """The fixture's well-formed lines (the last line of measurements.jsonl is half-written)."""
    records = []
    for line in (FIXTURE / name).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def latest(records: list[dict]) -> list[dict]:
    """The last record per (case, metric, component, counter): a rerun supersedes an error."""
    keyed = {}
    for r in records:
        keyed[(r["case_id"], r["metric"], r.get("component"), r.get("counter"))] = r
    return list(keyed.values())


def label(record: dict) -> str:
    options = record["case"]["options"]
    if record["case"]["backend"] == "full":
        return f"full ({options['impl']})"
    extra = "".join(f" {k}={v}" for k, v in options.items() if k not in ("mode", "K"))
    return f"stdeform {options['mode']} K={options['K']}{extra}"


def split_cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
    return [re.sub(r"\\(.)", r"\1", cell.strip()) for cell in cells]


def markdown_tables(text: str) -> dict[str, list[dict]]:
    """Every pipe table under its heading ("### title" or a <details> summary) as row dicts."""
    tables, heading, lines = {}, None, text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("<summary>"):
            heading = re.sub(r" \(\d+ rows\)</summary>$", "", line[len("<summary>") :])
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(split_cells(lines[i]))
                i += 1
            header, body = block[0], block[2:]
            tables[heading] = [dict(zip(header, row, strict=True)) for row in body]
            continue
        i += 1
    return tables


def row_of(rows: list[dict], first_cell: str) -> dict:
    matches = [row for row in rows if next(iter(row.values())) == first_cell]
    assert len(matches) == 1, f"{first_cell!r}: {len(matches)} rows"
    return matches[0]


def leading_number(cell: str) -> float:
    """The number a cell starts with ("34.3 ± 0.6 (n=2)" -> 34.3, "1.93 (1 OOM excluded)")."""
    match = re.match(r"-?\d+(\.\d+)?", cell)
    assert match, f"no number in cell {cell!r}"
    return float(match.group())


def close(cell: str, expected: float) -> bool:
    """Equal to three significant figures, the precision the report prints."""
    return leading_number(cell) == pytest.approx(expected, rel=5e-3, abs=5e-4)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fixture's half-written line
        written = render_report(FIXTURE, out)
    markdown = (out / "README.md").read_text(encoding="utf-8")
    html = (out / "index.html").read_text(encoding="utf-8")
    return {"out": out, "written": written, "md": markdown, "html": html}


@pytest.fixture(scope="module")
def tables(report):
    return markdown_tables(report["md"])


# ---- files, tables and figures ----


def test_writes_markdown_html_and_every_figure(report):
    out = report["out"]
    expected = {"README.md", "index.html", *(f"figures/{name}" for name in FIGURES)}
    assert set(report["written"]) == expected
    for name, path in report["written"].items():
        assert path == out / name and path.is_file() and path.stat().st_size > 0


def test_every_table_is_in_the_markdown(tables):
    titles = set(tables)
    for expected in (
        "(a) Cost and accuracy per attention backend",
        "(b) Ablation over K (sampling points per query)",
        "(c) Scaling: fitted exponents of time and memory against tokens",
        "Scaling: the measured points",
        "Where the compute goes: GMACs per model component",
        "FLOPs per component: fvcore, FlopCounterMode and analytic side by side",
        "Operators fvcore could not count",
        "Failed and missing measurements",
        "Environment",
    ):
        assert expected in titles


def test_cost_table_holds_the_fixtures_cost_numbers(tables):
    rows = tables["(a) Cost and accuracy per attention backend"]
    checked = 0
    for r in latest(fixture_records("measurements.jsonl")):
        case = r["case"]
        if case["kind"] not in ("flops", "inference") or r["status"] != "ok":
            continue
        if case["kind"] == "flops" and (
            r["counter"] != "fvcore" or r["component"] not in ("model", "encoder")
        ):
            continue
        name = {"fps": "FPS", "peak_memory": "peak memory (MiB)"}.get(r["metric"])
        name = name or f"GMACs {r['component']}"
        cell = row_of(rows, label(r))[f"{name} [{case['preset']} · {case['device']}]"]
        assert close(cell, r["value"]), (label(r), name, cell, r["value"])
        checked += 1
    assert checked == 6 * 2 + 5 + 5 + 6 + 4  # flops, fps cpu + cuda, memory cpu + cuda


def test_cost_table_holds_the_fixtures_training_numbers(tables):
    rows = tables["(a) Cost and accuracy per attention backend"]
    group = "training · quick · cpu · synthetic"
    by_method = defaultdict(list)
    for r in fixture_records("ablation.jsonl"):
        if r["metric"] == "AP" and r["status"] == "ok":
            by_method[label(r)].append(r["value"])
    assert close(
        row_of(rows, "full (sdpa)")[f"AP (%) [{group}]"], 100 * by_method["full (sdpa)"][0]
    )
    k32 = row_of(rows, "stdeform 3d K=32")[f"AP (%) [{group}]"]
    assert close(k32, 100 * np.mean(by_method["stdeform 3d K=32"]))
    assert k32.endswith("(n=2)")
    k16 = row_of(rows, "stdeform 3d K=16")
    hours = [
        r["value"]
        for r in fixture_records("ablation.jsonl")
        if r["case"]["run"] == "stdeform-3d-k16-s0" and r["metric"] == "device_hours_to_target"
    ]
    assert close(k16[f"device-h to target [{group}]"], hours[0])


def test_cost_notes_say_what_the_runs_started_from(report):
    note = next(
        line for line in report["md"].splitlines() if line.startswith("- Columns “training")
    )
    assert "shared backbone pretrained" in note
    assert "800 iterations, 0.07 device-h" in note and "not included" in note


def test_failed_and_missing_cases_show_a_dash_with_the_reason(tables):
    rows = tables["(a) Cost and accuracy per attention backend"]
    training = "training · quick · cpu · synthetic"
    assert row_of(rows, "full (math)")["FPS [paper · cpu]"] == "— (timeout)"
    assert row_of(rows, "full (math)")["peak memory (MiB) [paper · cuda]"] == "— (OOM)"
    error = row_of(rows, "stdeform frame K=32")["FPS [paper · cuda]"]
    assert error.startswith("— (error: RuntimeError: CUDA error")
    frames = row_of(rows, "stdeform frames K=4 window=3")
    assert frames["peak memory (MiB) [paper · cuda]"] == "— (not run)"
    assert frames[f"AP (%) [{training}]"] == "— (not run)"
    assert row_of(rows, "full (sdpa)")[f"device-h to target [{training}]"] == "— (not reached)"
    k64 = row_of(rows, "stdeform 3d K=64")
    assert k64[f"AP (%) [{training}]"].startswith("— (error: FloatingPointError: loss is NaN")
    assert k64["FPS [paper · cpu]"] == "— (not run)"


def test_a_rerun_supersedes_an_earlier_error(tables):
    rows = tables["(a) Cost and accuracy per attention backend"]
    assert row_of(rows, "stdeform frames K=4 window=3")["peak memory (MiB) [paper · cpu]"] == "3054"


def test_no_measured_cell_is_zero_blank_or_a_bare_dash(tables):
    for title, rows in tables.items():
        for row in rows:
            first = next(iter(row.values()))
            if first.startswith("*"):  # a reported row: the poster's figures
                continue
            for column, cell in row.items():
                if column == "seeds":  # seed 0 is a name, not a measurement
                    continue
                assert cell not in ("", "0", "0.0", "nan", "None"), (title, column, row)
                if cell.startswith("—"):
                    assert re.fullmatch(r"— \(.+\)", cell), (title, column, cell)


def test_reported_rows_are_marked_and_separate(report, tables):
    cost = tables["(a) Cost and accuracy per attention backend"]
    reported = [row for row in cost if "(reported)" in row["method"]]
    assert [row["method"].strip("*").split(" (")[0] for row in reported] == [
        "VisTR",
        "Deformable VisTR",
    ]
    assert all(
        cell.startswith("*") and cell.endswith("*") for row in reported for cell in row.values()
    )
    assert [row["AP (%) [training · quick · cpu · synthetic]"] for row in reported] == [
        "*35.6*",
        "*34.6*",
    ]
    assert reported == cost[-2:]  # after every measured row, not mixed in
    k_rows = tables["(b) Ablation over K (sampling points per query)"]
    k_reported = [row for row in k_rows if "(reported)" in row["backbone"]]
    assert [(row["K"], row["AP (%)"]) for row in k_reported] == [
        ("*16*", "*33.8*"),
        ("*32*", "*34.6*"),
    ]
    for line in report["md"].splitlines():
        if line.startswith("|") and ("*35.6*" in line or "*33.8*" in line):
            assert "(reported)" in line
    html_reported = re.findall(r'<tr class="reported">(.*?)</tr>', report["html"], re.S)
    assert len(html_reported) == 4
    assert all("reported in paper" in row for row in html_reported)
    assert "tr.reported td { font-style: italic;" in report["html"]


def test_reported_gpu_fps_never_sits_under_a_cpu_column(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    lines = (FIXTURE / "measurements.jsonl").read_text().splitlines()
    cpu = [line for line in lines if '"kind": "inference"' in line and '"device": "cpu"' in line]
    (results / "measurements.jsonl").write_text("".join(line + "\n" for line in cpu))
    render_report(results, tmp_path / "out")
    rows = markdown_tables((tmp_path / "out" / "README.md").read_text(encoding="utf-8"))
    rows = rows["(a) Cost and accuracy per attention backend"]
    reported = [row for row in rows if "(reported)" in row["method"]]
    assert reported and all(row["FPS [paper · cpu]"] == "*—*" for row in reported)


def test_k_ablation_table(tables):
    rows = tables["(b) Ablation over K (sampling points per query)"]
    measured = [row for row in rows if "(reported)" not in row["backbone"]]
    assert measured[0]["backbone"] == "resnet18 (baseline)"
    assert measured[0]["mode"] == "full attention (sdpa)"
    by_k = defaultdict(list)
    for r in fixture_records("ablation.jsonl"):
        if r["case"]["backend"] == "stdeform" and r["status"] == "ok":
            by_k[(r["case"]["options"]["K"], r["metric"])].append(r["value"])
    for row in measured[1:]:
        k = int(row["K"])
        for metric in ("AP", "AP50", "AP75"):
            if (k, metric) in by_k:
                assert close(row[f"{metric} (%)"], 100 * np.mean(by_k[(k, metric)])), (k, metric)
            else:
                assert row[f"{metric} (%)"].startswith("— (error: FloatingPointError")
    assert [row["K"] for row in measured[1:]] == ["16", "32", "64"]


def scaling_points(method: str, metric: str, sweep: str | None) -> tuple[np.ndarray, np.ndarray]:
    x, y = [], []
    for r in fixture_records("measurements.jsonl"):
        case = r["case"]
        if case["kind"] != "scaling" or label(r) != method or r["metric"] != metric:
            continue
        if r["status"] == "ok" and (sweep in (None, "upper half") or case["sweep"] == sweep):
            x.append(case["tokens"])
            y.append(r["value"])
    x, y = np.array(x, dtype=float), np.array(y, dtype=float)
    if sweep == "upper half":  # at or above the median of the sweep grid's distinct token counts
        grid = {
            r["case"]["tokens"]
            for r in fixture_records("measurements.jsonl")
            if r["case"]["kind"] == "scaling" and label(r) == method
        }
        keep = x >= np.median(sorted(grid))
        x, y = x[keep], y[keep]
    return x, y


def test_scaling_exponents_are_the_log_log_slopes_of_the_fixture(tables):
    rows = tables["(c) Scaling: fitted exponents of time and memory against tokens"]
    groups = {"time": "time ∝ tokens^b", "peak_memory": "peak memory ∝ tokens^b"}
    for method in (
        "full (sdpa)",
        "full (math)",
        "stdeform 3d K=32",
        "stdeform frames K=4 window=3",
    ):
        row = row_of(rows, method)
        for metric, group in groups.items():
            for sweep, column in (
                ("T", "T sweep"),
                ("HW", "H×W sweep"),
                (None, "both"),
                ("upper half", "upper half"),
            ):
                x, y = scaling_points(method, metric, sweep)
                slope = np.polyfit(np.log(x), np.log(y), 1)[0]
                cell = row[f"{column} [{group}]"]
                assert leading_number(cell) == pytest.approx(slope, abs=0.006), (method, column)
    assert leading_number(row_of(rows, "full (sdpa)")["both [time ∝ tokens^b]"]) > 1.8
    assert leading_number(row_of(rows, "stdeform 3d K=32")["both [time ∝ tokens^b]"]) < 1.2
    math = row_of(rows, "full (math)")
    assert math["T sweep [time ∝ tokens^b]"].endswith("(1 timeout excluded)")
    assert math["H×W sweep [time ∝ tokens^b]"].endswith("(1 OOM excluded)")
    assert math["points ok / measured"] == "7 / 9"


def test_scaling_analytic_exponents_follow_the_formulas(tables):
    rows = tables["(c) Scaling: fitted exponents of time and memory against tokens"]
    column = "both [analytic MACs ∝ tokens^b]"
    d, ffn = 256, 1024  # the fixture's layer
    tokens = sorted(
        r["case"]["tokens"]
        for r in fixture_records("measurements.jsonl")
        if r["case"]["kind"] == "scaling" and label(r) == "full (sdpa)" and r["metric"] == "time"
    )
    x = np.array(tokens, dtype=float)
    macs = (
        2 * x * x * d + 4 * x * d * d + 2 * x * d * ffn + 10 * x * d
    )  # QK^T+AV, projections, FFN, norms
    expected = np.polyfit(np.log(x), np.log(macs), 1)[0]
    for method in ("full (sdpa)", "full (math)"):
        assert leading_number(row_of(rows, method)[column]) == pytest.approx(expected, abs=0.006)
    assert row_of(rows, "stdeform 3d K=32")[column] == "1.00"  # linear in tokens
    # the fixture's frames points at T = 1 and 2 have window 3 > T: no such layer exists
    assert row_of(rows, "stdeform frames K=4 window=3")[column] == "— (no formula at 2 of 9 points)"


def test_scaling_points_table(tables):
    rows = tables["Scaling: the measured points"]
    assert len(rows) == 4 * 9
    indexed = {(r["method"], r["sweep"], r["T"], r["H"], r["W"]): r for r in rows}
    for r in fixture_records("measurements.jsonl"):
        case = r["case"]
        if case["kind"] != "scaling":
            continue
        row = indexed[(label(r), case["sweep"], str(case["T"]), str(case["H"]), str(case["W"]))]
        assert row["tokens"] == str(case["tokens"])
        column = "time (ms)" if r["metric"] == "time" else "peak memory (MiB)"
        if r["status"] == "ok":
            scale = 1000 if r["metric"] == "time" else 1
            assert close(row[column], scale * r["value"])
        else:
            assert row[column] == f"— ({r['status']})"


def test_flops_tables_show_every_counter_and_the_uncounted_operators(tables):
    counters = tables["FLOPs per component: fvcore, FlopCounterMode and analytic side by side"]
    names = {"fvcore": "fvcore", "flop_counter": "FlopCounterMode", "analytic": "analytic"}
    indexed = {(r["method"], r["component"]): r for r in counters}
    models = []
    for r in latest(fixture_records("measurements.jsonl")):
        if r["case"]["kind"] != "flops":
            continue
        row = indexed[(label(r), r["component"])]
        assert close(row[f"{names[r['counter']]} [GMACs by counter]"], r["value"])
        if r["component"] == "model" and r["counter"] == "fvcore":
            models.append(r)
    assert indexed[("full (sdpa)", "backbone")]["analytic [GMACs by counter]"] == "— (not run)"
    split = tables["Where the compute goes: GMACs per model component"]
    ops = tables["Operators fvcore could not count"]
    listed = {(r["method"], r["operator"]): r["calls"] for r in ops}
    for model in models:
        for op, calls in model["unsupported"].items():
            assert listed[(label(model), op)] == str(calls)
        backbone = row_of(split, label(model))["backbone [fvcore GMACs (% of model)]"]
        share = re.search(r"\(([\d.]+) %\)", backbone).group(1)
        parts = [
            r["value"]
            for r in fixture_records("measurements.jsonl")
            if r["case_id"] == model["case_id"]
            and r["counter"] == "fvcore"
            and r["component"] == "backbone"
        ]
        assert float(share) == pytest.approx(100 * parts[0] / model["value"], abs=0.05)


def test_failures_table_lists_each_failure_with_its_message(tables):
    rows = tables["Failed and missing measurements"]
    statuses = {row["status or reason"] for row in rows}
    assert {"timeout", "OOM", "not reached"} <= statuses
    assert "error: FloatingPointError: loss is NaN at iteration 412" in statuses
    assert any(row["detail"] == "exceeded 900 s" for row in rows)
    assert not any("exited with code -11" in row["status or reason"] for row in rows)  # superseded


def test_report_states_where_it_was_measured(report, tables):
    for text in (report["md"], report["html"]):
        for fact in (
            "Intel(R) Xeon(R) CPU @ 2.20GHz × 1 (cpu), 2 threads, torch 2.5.1+cpu",
            "NVIDIA H100 80GB HBM3 × 1 (cuda), 16 threads, torch 2.5.1+cu124, CUDA 12.4",
            "commit 353e56b1a2c4",
            "2025-11-26T15:40:00+00:00",
            "Cost (FLOPs, FPS, peak memory): paper preset",
            "quick preset, data set: synthetic",
            str(FIXTURE),
        ):
            assert fact in text, fact
    environments = {row["id"]: row for row in tables["Environment"]}
    assert set(environments) == {"E1", "E2"}
    assert "(a) cost and accuracy" in environments["E2"]["used by"]
    assert "(b) K ablation" not in environments["E2"]["used by"]
    assert "(b) K ablation" in environments["E1"]["used by"]
    notes = report["md"].split("### (b)")[0]
    assert "Measured in E1 (" in notes and "E2 (NVIDIA H100" in notes


def test_half_written_line_is_skipped_with_a_warning():
    with pytest.warns(RuntimeWarning, match="malformed"):
        results = load_results(FIXTURE)
    assert len(results.measurements) == len(latest(fixture_records("measurements.jsonl")))


# ---- HTML: valid, self-contained, images real ----


class StructureChecker(HTMLParser):
    """Collects tags and checks that every non-void element is closed, in order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.starts = [], [], defaultdict(int)
        self.declarations, self.attributes = [], []

    def handle_decl(self, decl):
        self.declarations.append(decl)

    def handle_starttag(self, tag, attrs):
        self.starts[tag] += 1
        self.attributes.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        self.starts[tag] += 1
        self.attributes.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in VOID:
            self.errors.append(f"end tag for void element {tag}")
        elif not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def check_html(html: str) -> StructureChecker:
    checker = StructureChecker()
    checker.feed(html)
    checker.close()
    assert html.startswith("<!DOCTYPE html>")
    assert checker.declarations == ["DOCTYPE html"]
    assert checker.errors == []
    assert checker.stack == [], f"unclosed: {checker.stack}"
    assert checker.starts["html"] == checker.starts["head"] == checker.starts["body"] == 1
    assert checker.starts["title"] == 1
    attributes = dict(checker.attributes)
    assert attributes["html"].get("lang") == "en"
    assert any(tag == "meta" and a.get("charset") == "utf-8" for tag, a in checker.attributes)
    return checker


def test_html_is_valid_html5(report):
    checker = check_html(report["html"])
    ids = [a["id"] for _, a in checker.attributes if "id" in a]
    assert len(ids) == len(set(ids)), "duplicate ids"
    for table_id in TABLE_IDS:
        assert ("table", {"id": table_id}) in checker.attributes, table_id


class TableCells(HTMLParser):
    """The text of every <td> per <table id>, row by row."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables, self.table, self.cell = {}, None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.table = self.tables.setdefault(dict(attrs)["id"], [])
        elif tag == "tr" and self.table is not None:
            self.table.append([])
        elif tag == "td":
            self.cell = ""

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if tag == "td":
            self.table[-1].append(self.cell.strip())
            self.cell = None
        elif tag == "table":
            self.table = None


def test_html_tables_hold_the_same_cells_as_the_markdown(report, tables):
    parser = TableCells()
    parser.feed(report["html"])
    titles = {
        "cost": "(a) Cost and accuracy per attention backend",
        "k-ablation": "(b) Ablation over K (sampling points per query)",
        "scaling": "(c) Scaling: fitted exponents of time and memory against tokens",
        "scaling-points": "Scaling: the measured points",
        "failures": "Failed and missing measurements",
    }
    for table_id, title in titles.items():
        html_rows = [row for row in parser.tables[table_id] if row]  # header rows have no <td>
        markdown_rows = [
            [re.sub(r" \((reported|baseline)\)$", "", cell.strip("*")) for cell in row.values()]
            for row in tables[title]
        ]
        html_rows = [
            [re.sub(r" (reported in paper|baseline)$", "", cell) for cell in row]
            for row in html_rows
        ]
        assert html_rows == markdown_rows, table_id


def test_html_loads_nothing_from_outside(report):
    html = report["html"]
    checker = check_html(html)
    for tag, attributes in checker.attributes:
        for name in ("src", "href", "srcset", "action", "data"):
            value = attributes.get(name) or ""
            assert not re.match(r"\s*(https?:)?//", value), (tag, name, value)
            assert not value.startswith(("http", "ftp", "file:")), (tag, name, value)
        assert tag not in ("link", "script", "iframe", "object", "embed"), tag
    for url in re.findall(r"url\(([^)]*)\)", html):
        assert not re.match(r"\s*['\"]?(https?:)?//", url), url
    assert "@import" not in html


def test_every_image_exists_and_is_a_png(report):
    out = report["out"]
    checker = check_html(report["html"])
    html_images = [a["src"] for tag, a in checker.attributes if tag == "img"]
    md_images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report["md"])
    assert sorted(html_images) == sorted(md_images) == sorted(f"figures/{n}" for n in FIGURES)
    for src in html_images:
        path = out / src
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 200


# ---- degraded inputs: missing parts, empty directory, CLI ----


def test_missing_results_replace_figures_with_a_sentence(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "measurements.jsonl").write_text(
        "".join(
            line + "\n"
            for line in (FIXTURE / "measurements.jsonl").read_text().splitlines()
            if '"kind": "inference"' in line and line.endswith("}")
        )
    )
    written = render_report(results, tmp_path / "out")
    markdown = written["README.md"].read_text()
    assert set(written) == {"README.md", "index.html"}
    assert "*Not drawn:* No convergence logs" in markdown
    assert "*Not drawn:* No finished deformable (stdeform) ablation runs" in markdown
    assert "*Not drawn:* No successful scaling measurements of time" in markdown
    assert "*Not drawn:* No successful scaling measurements of peak memory" in markdown
    html = written["index.html"].read_text()
    check_html(html)
    assert html.count('<p class="missing">Not drawn:') == 4
    assert "<img" not in html
    rows = markdown_tables(markdown)["(a) Cost and accuracy per attention backend"]
    assert row_of(rows, "full (math)")["FPS [paper · cpu]"] == "— (timeout)"


def test_an_empty_results_directory_renders_and_stale_figures_go(tmp_path, report):
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    stale = out / "figures" / "convergence.png"
    stale.write_bytes((report["out"] / "figures" / "convergence.png").read_bytes())
    (tmp_path / "empty").mkdir()
    written = render_report(tmp_path / "empty", out)
    assert set(written) == {"README.md", "index.html"} and not stale.exists()
    markdown = written["README.md"].read_text()
    assert markdown.count("*Not drawn:*") == 4
    assert "No scaling sweeps recorded." in markdown
    check_html(written["index.html"].read_text())


def test_a_missing_results_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        render_report(tmp_path / "nowhere", tmp_path / "out")


def test_command_line(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "bench.report", "--results", str(FIXTURE), "--out", str(out)]
    done = subprocess.run(
        [*command, "--note", "An example from the fixture."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out / 'index.html'}" in done.stdout
    assert "**Note:** An example from the fixture." in (out / "README.md").read_text()


def test_command_line_refuses_a_missing_results_directory(tmp_path, capsys):
    assert main(["--results", str(tmp_path / "no"), "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---- what the harness really writes ----


def test_cost_table_shows_what_the_measurement_cases_record(tmp_path):
    """End to end at a tiny size: bench.measure's own cases -> the store -> table (a)."""
    from bench.measure.cases import flops_case, inference_case
    from bench.store import ResultsStore

    store = ResultsStore(tmp_path / "measurements.jsonl")
    base = {"preset": "quick", "device": "cpu", "threads": 1}
    base["input"] = {"T": 6, "height": 64, "width": 64}
    specs = [("full", {"attention_impl": "sdpa"}, {"impl": "sdpa"})]
    specs.append(("stdeform", {"mode": "3d"}, {"mode": "3d", "K": 16}))
    for backend, overrides, options in specs:
        case = {**base, "backend": backend, "overrides": overrides, "options": options}
        store.append(*flops_case({**case, "kind": "flops"}))
        timing = {"warmup": 0, "repeats": 2, "seconds": 30}
        store.append(*inference_case({**case, "kind": "inference", **timing}))
    render_report(tmp_path, tmp_path / "out")
    rows = markdown_tables((tmp_path / "out" / "README.md").read_text(encoding="utf-8"))
    rows = rows["(a) Cost and accuracy per attention backend"]
    records = store.records()
    for method in ("full (sdpa)", "stdeform 3d K=16"):
        row = row_of(rows, method)
        mine = [
            r for r in records if method_label(r["case"]["backend"], r["case"]["options"]) == method
        ]
        value = {
            (r["metric"], r.get("component")): r["value"]
            for r in mine
            if r.get("counter", "fvcore") == "fvcore"
        }
        assert close(row["FPS [quick · cpu]"], value[("fps", None)])
        assert close(row["peak memory (MiB) [quick · cpu]"], value[("peak_memory", None)])
        assert close(row["GMACs model [quick · cpu]"], value[("macs", "model")])


# ---- the small pieces ----


def test_method_labels():
    assert method_label("full", {"impl": "sdpa"}) == "full (sdpa)"
    assert method_label("stdeform", {"mode": "3d", "K": 32}) == "stdeform 3d K=32"
    assert method_label("stdeform", {"mode": "frames", "K": 4, "window": 3}) == (
        "stdeform frames K=4 window=3"
    )
    assert method_label("stdeform", {"mode": "frames", "K": 4, "window": None}) == (
        "stdeform frames K=4"
    )
    assert method_label("linear", {"rank": 8}) == "linear (rank=8)"
    assert method_label("linear", {}) == "linear"


def test_a_measurement_of_the_reference_op_is_its_own_method():
    from bench.report.load import tidy_row

    case = {"backend": "stdeform", "options": {"mode": "3d", "K": 32}}
    assert tidy_row({"case": case, "op_impl": "cpu kernel"})["method"] == "stdeform 3d K=32"
    assert tidy_row({"case": case, "op_impl": "reference"})["method"] == (
        "stdeform 3d K=32 op=reference"
    )
    assert case["options"] == {"mode": "3d", "K": 32}  # the record itself is left alone


def test_cells_summarise_values_and_failures():
    import pandas as pd

    frame = lambda rows: pd.DataFrame(rows, columns=["value", "failure"])
    assert summary(frame([])) == "— (not run)"
    assert summary(frame([(None, "OOM"), (None, "OOM")])) == "— (OOM)"
    assert summary(frame([(2.0, None), (4.0, None)])) == "3.00 ± 1.41 (n=2)"
    assert summary(frame([(0.0, None)])) == "0"  # a measured zero stays a zero
    assert summary(frame([(5.0, None), (None, "timeout")])) == "5.00; 1 failed: timeout"
    assert [number(v) for v in (1234.5, 12.345, 1.2345, 0.012345)] == [
        "1234",
        "12.3",
        "1.23",
        "0.0123",
    ]
    assert missing("not reached") == "— (not reached)"


def test_markdown_escapes_cells_that_look_like_markup():
    table = Table(
        "t",
        "T",
        [Column("a"), Column("b", "group")],
        [Row(["x|y", "error: bad __init__ <here>"]), Row(["paper", "1"], "reported")],
    )
    rows = markdown_tables("### T\n" + table.to_markdown())["T"]
    assert rows[0] == {"a": "x|y", "b [group]": "error: bad __init__ &lt;here&gt;"}
    assert rows[1] == {"a": "*paper (reported)*", "b [group]": "*1*"}
