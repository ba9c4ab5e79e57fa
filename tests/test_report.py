"""The report renderer on the fixture: every section is there, tables hold the fixture's numbers,
failures show as dashes with reasons, the poster's figures sit apart, the HTML is valid and
self-contained, every figure is a real PNG, and a results folder missing parts says what.

The fixture (tests/fixtures/report) is a results directory in the harness's schema; expected
values are computed here from its JSON lines (with bench.stats for intervals), independently of
bench.report's own loading code. The other test_report_*.py files cover the headline, fits,
comparison and reproducibility; they import the helpers below.
"""

import json
import re
import shutil
import subprocess
import sys
import warnings
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.method import method_label
from bench.report import render_report
from bench.report.cells import missing, number, summary
from bench.report.load import load_results
from bench.report.provenance import short_device
from bench.report.table import Column, Row, Table
from bench.stats import mean_interval, paired_difference, verdict

FIXTURE = Path(__file__).parent / "fixtures" / "report"
ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ["curves_ablation.png", "ap_vs_stdeform_n_points.png", "curves_study.png"]
FIGURES += ["time_vs_tokens.png", "memory_vs_tokens.png"]
CPU = short_device("Intel(R) Xeon(R) CPU @ 2.20GHz")
DIVIDED = method_label("divided", {"impl": "sdpa"})  # its own label once the backend is registered
GPU = short_device("NVIDIA H100 80GB HBM3")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
VOID |= {"track", "wbr"}
TITLES = {
    "headline": "The answer: cost and accuracy per method, against dense attention",
    "cost-paper": "Cost at the paper preset",
    "cost-quick": "Cost at the quick preset",
    "accuracy": "Accuracy: quick preset, synthetic data",
    "reported": "Reported in the poster: ResNet-50, YouTube-VIS 2019",
    "k": "Ablation over K (stdeform n_points): quick preset, synthetic data",
    "mode": "Ablation over mode: quick preset, synthetic data",
    "differences": "Paired differences in AP: quick preset, synthetic data",
    "hybrids": "Hybrids: encoder × decoder attention, quick preset, synthetic data",
    "lr": "Learning-rate sweep",
    "study": "Convergence study: to the target and to the plateau",
    "study-ratio": "Convergence study: dense over the others, device-hours (b) to the target",
    "time": "Scaling: time against tokens",
    "memory": "Scaling: memory against tokens",
    "points": "Scaling: the measured points",
    "crossover": "Where each mechanism beats dense attention (SDPA)",
    "split": "Where the compute goes: GMACs per model component",
    "counters": "FLOPs per component: fvcore, FlopCounterMode and analytic side by side",
    "independence": "FLOP counters: where they are independent",
    "uncounted": "Operators no counter counted",
    "uncounted-list": "Uncounted operators, in full",
    "failures": "Failed and missing measurements",
    "environment": "Environment",
}


# ---- reading the fixture and the rendered Markdown, independently of bench.report ----


def fixture_records(name: str, folder: Path = FIXTURE) -> list[dict]:
    """A results file's well-formed lines (the last line of measurements.jsonl is half-written)."""
    records = []
    for line in (folder / name).read_text().splitlines():
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
    case = record["case"]
    return method_label(case["backend"], case["options"], case.get("decoder"))


def runs_of(name: str = "ablation.jsonl") -> dict[str, dict]:
    """run -> {"label", "seed", "usable", metric: value} from a training results file."""
    found = {}
    for r in fixture_records(name):
        run = found.setdefault(
            r["case"]["run"],
            {"label": label(r), "seed": r["case"]["seed"], "usable": True, "case": r["case"]},
        )
        if r["status"] != "ok" or r.get("run_status", "ok") != "ok":
            found[r["case"]["run"]]["usable"] = False
        run[r["metric"]] = r["value"]
    return found


def usable_by_label(name: str = "ablation.jsonl") -> dict[str, list[dict]]:
    by = defaultdict(list)
    for run in runs_of(name).values():
        if run["usable"]:
            by[run["label"]].append(run)
    return by


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
    matches = [
        row
        for row in rows
        if re.sub(r" \((baseline|reported)\)$", "", next(iter(row.values())).strip("*"))
        == first_cell
    ]
    assert len(matches) == 1, f"{first_cell!r}: {len(matches)} rows"
    return matches[0]


def lines_of(cell: str) -> list[str]:
    """A stacked cell's lines (Markdown writes them joined by <br>)."""
    return cell.split("<br>")


def leading_number(cell: str) -> float:
    """The number a cell starts with ("34.3 ± 0.6 (n=2)" -> 34.3, "×1.93 [..]" -> 1.93)."""
    match = re.match(r"[×+−-]?\d+(\.\d+)?(e-?\d+)?", cell.strip())
    assert match, f"no number in cell {cell!r}"
    return float(match.group().lstrip("×+").replace("−", "-"))


def half_width(cell: str) -> float:
    match = re.search(r"± (\d+(\.\d+)?(e-?\d+)?)", cell)
    assert match, f"no ± in {cell!r}"
    return float(match.group(1))


def close(cell: str, expected: float) -> bool:
    """Equal to three significant figures, the precision the report prints."""
    return leading_number(cell) == pytest.approx(expected, rel=6e-3, abs=6e-4)


def close_points(cell: str, expected: float) -> bool:
    """Equal to the one decimal AP (in points) is printed with."""
    return leading_number(cell) == pytest.approx(expected, abs=0.051)


def render(folder: Path, out: Path, **kwargs) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fixture's half-written line
        written = render_report(folder, out, **kwargs)
    markdown = (out / "README.md").read_text(encoding="utf-8")
    html = (out / "index.html").read_text(encoding="utf-8")
    return {"out": out, "written": written, "md": markdown, "html": html}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return render(FIXTURE, tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def tables(report):
    return markdown_tables(report["md"])


# ---- files, sections and tables ----


def test_writes_markdown_html_summary_and_every_figure(report):
    out = report["out"]
    expected = {"README.md", "index.html", "summary.json", *(f"figures/{n}" for n in FIGURES)}
    assert set(report["written"]) == expected
    for name, path in report["written"].items():
        assert path == out / name and path.is_file() and path.stat().st_size > 0


def test_every_section_and_table_is_in_the_markdown(report, tables):
    assert set(TITLES.values()) <= set(tables)
    sections = re.findall(r"^## (.+)$", report["md"], re.M)
    assert sections == [
        "The answer",
        "Cost per preset",
        "Accuracy per data set",
        "Reported in the poster",
        "Ablations",
        "Convergence study",
        "Scaling fits",
        "Crossover",
        "FLOPs",
        "Deviations from VisTR / Deformable VisTR",
        "Failures",
        "Environment",
    ]
    assert report["md"].index(TITLES["headline"]) < report["md"].index(TITLES["cost-paper"])


def cost_column(record: dict) -> str:
    case, metric = record["case"], record["metric"]
    if case["kind"] == "flops":
        return f"GMACs {record['component']} [fvcore]"
    name = {
        "fps": "FPS",
        "peak_memory": "peak memory (MiB)",
        "step_time": "step (s)",
        "eval_video_time": "eval (s/video)",
    }[metric]
    return f"{name} [{short_device(record['env']['device_name'])}]"


def test_cost_tables_hold_the_fixtures_numbers(tables):
    checked = 0
    for r in latest(fixture_records("measurements.jsonl")):
        case = r["case"]
        if case["kind"] not in ("flops", "inference", "step") or r["status"] != "ok":
            continue
        if case["kind"] == "flops" and (
            r["counter"] != "fvcore" or r["component"] not in ("model", "encoder")
        ):
            continue
        rows = tables[TITLES[f"cost-{case['preset']}"]]
        cell = row_of(rows, label(r))[cost_column(r)]
        assert close(cell, r["value"]), (label(r), cost_column(r), cell, r["value"])
        checked += 1
    # flops: 9 methods x 2 components x 2 presets; inference: paper cpu 8 fps + 9 memory, cuda
    # 7 fps + 7 memory, quick 9 + 9; step: 9 methods x 2 metrics x 2 devices
    assert checked == 36 + 17 + 14 + 18 + 36


def test_cost_tables_list_every_method_of_the_ablation(tables):
    trained = {label(r) for r in fixture_records("ablation.jsonl")}
    for preset in ("paper", "quick"):
        rows = tables[TITLES[f"cost-{preset}"]]
        assert trained <= {re.sub(r" \(baseline\)$", "", row["method"]) for row in rows}
    k64 = row_of(tables[TITLES["cost-paper"]], "stdeform 3d K=64")
    assert k64["GMACs encoder [fvcore]"] == "— (not run)"
    assert row_of(tables[TITLES["cost-paper"]], "full (sdpa)")["complexity"] == "O(H²W²T²C)"


def test_failed_and_missing_cases_show_a_dash_with_the_reason(tables):
    paper = tables[TITLES["cost-paper"]]
    assert row_of(paper, "full (math)")[f"FPS [{CPU}]"] == "— (timeout)"
    assert row_of(paper, "full (math)")[f"peak memory (MiB) [{GPU}]"] == "— (OOM)"
    error = row_of(paper, DIVIDED)[f"FPS [{GPU}]"]
    assert error.startswith("— (error: RuntimeError: CUDA error")
    hybrid = row_of(paper, "stdeform frames K=32 enc + full (sdpa) dec")
    assert hybrid[f"FPS [{GPU}]"] == "— (not run)"
    accuracy = tables[TITLES["accuracy"]]
    k64 = row_of(accuracy, "stdeform 3d K=64")
    assert k64["AP (%) [final AP]"].startswith("— (error: FloatingPointError: loss is NaN")


def test_a_rerun_supersedes_an_earlier_error(tables):
    paper = tables[TITLES["cost-paper"]]
    assert row_of(paper, "stdeform frames K=16")[f"peak memory (MiB) [{CPU}]"] == "3120"


def step_of(method: str, device_name: str) -> dict:
    found = {}
    for r in fixture_records("measurements.jsonl"):
        if (
            r["case"]["kind"] == "step"
            and label(r) == method
            and (r["env"]["device_name"] == device_name)
        ):
            found[r["metric"]] = r["value"]
    return found


def hours_b(run: dict, device_name: str) -> float | None:
    if run.get("iterations_to_target") is None:
        return None
    step = step_of(run["label"], device_name)
    seconds = run["iterations_to_target"] * step["step_time"]
    seconds += run["evaluations_to_target"] * run["val_videos"] * step["eval_video_time"]
    return seconds / 3600


def test_accuracy_table_holds_the_fixtures_numbers(tables):
    rows = tables[TITLES["accuracy"]]
    for method, runs in usable_by_label().items():
        row = row_of(rows, method)
        aps = [100 * r["AP"] for r in runs]
        ap = mean_interval(aps)
        assert close_points(row["AP (%) [final AP]"], ap.value)
        assert half_width(row["AP (%) [final AP]"]) == pytest.approx(ap.half_width, abs=0.051)
        reached = [r for r in runs if r["iterations_to_target"] is not None]
        assert row["reached [to target]"] == f"{len(reached)} of {len(runs)}"
        iterations = mean_interval([r["iterations_to_target"] for r in reached])
        assert close(row["iterations [to target]"], iterations.value)
        wall = mean_interval([r["device_hours_to_target"] for r in reached])
        assert close(row[f"(a) {CPU} [device-h to target]"], wall.value)
        for device in ("NVIDIA H100 80GB HBM3", "Intel(R) Xeon(R) CPU @ 2.20GHz"):
            expected = mean_interval([hours_b(r, device) for r in reached])
            cell = row[f"(b) {short_device(device)} [device-h to target]"]
            assert close(cell, expected.value), (method, device, cell)
    assert row_of(rows, "full (sdpa)")["reached [to target]"] == "2 of 3"


def test_a_budget_cut_run_is_left_out_and_listed(report, tables):
    rows = tables[TITLES["accuracy"]]
    assert row_of(rows, "stdeform 3d K=32")["seeds ok"] == "2 of 3"
    assert "stdeform-3d-k32-seed2 (budget)" in report["md"]
    failures = tables[TITLES["failures"]]
    cut = [row for row in failures if row["what"] == "ablation run stdeform-3d-k32-seed2"]
    assert len(cut) == 1 and cut[0]["status or reason"].startswith("budget: cut by")


def test_no_measured_cell_is_zero_blank_or_a_bare_dash(tables):
    for title, rows in tables.items():
        if title == TITLES["reported"]:  # the poster gives no figure for some cells
            continue
        for row in rows:
            for column, cell in row.items():
                if column in ("seeds", "points ok / measured"):
                    continue
                for line in lines_of(cell):
                    assert line not in ("", "0", "0.0", "nan", "None", "—"), (title, column, row)
                    if line.startswith("—"):
                        assert re.fullmatch(r"— \(.+\)", line), (title, column, line)


def test_the_posters_figures_sit_only_in_their_own_table(report, tables):
    reported = tables[TITLES["reported"]]
    assert [row["method"] for row in reported] == [
        "*VisTR (reported)*",
        "*Deformable VisTR (reported)*",
        "*Deformable VisTR, K = 16 (reported)*",
        "*Deformable VisTR, K = 32 (reported)*",
    ]
    assert [row["AP (%)"] for row in reported] == ["*35.6*", "*34.6*", "*33.8*", "*34.6*"]
    for title, rows in tables.items():
        if title != TITLES["reported"]:
            assert not any("(reported)" in cell for row in rows for cell in row.values()), title
    html_reported = re.findall(r'<tr class="reported">(.*?)</tr>', report["html"], re.S)
    assert len(html_reported) == 4
    assert all("reported in paper" in row for row in html_reported)
    assert "tr.reported td { font-style: italic;" in report["html"]
    assert "8.3× GPU-hours" in report["md"]


def ap_per_seed(method: str) -> dict[int, float]:
    return {r["seed"]: 100 * r["AP"] for r in usable_by_label()[method]}


def test_k_ablation_per_mode_with_paired_differences(tables):
    rows = tables[TITLES["k"]]
    for mode in ("frames", "3d"):
        mine = [row for row in rows if row["setting"] == f"impl=op, mode={mode}"]
        ks = [row["K (stdeform n_points)"] for row in mine]
        assert ks == (["16", "32"] if mode == "frames" else ["16", "32", "64"])
        for row in mine[:2]:
            ap = mean_interval(ap_per_seed(row["method"]).values())
            assert close_points(row["AP (%)"], ap.value)
        k16, k32 = (f"stdeform {mode} K={k}" for k in (16, 32))
        difference = paired_difference(ap_per_seed(k16), ap_per_seed(k32))
        cell = mine[1]["Δ AP (points), paired"]
        assert close_points(cell, difference.value) and cell.endswith("vs 16")
        assert half_width(cell) == pytest.approx(difference.half_width, abs=0.051)
        assert mine[1]["verdict"] == verdict(difference)
        formulation = "the poster's formulation" if mode == "frames" else "second axis"
        assert all(row["formulation"].startswith(formulation) for row in mine)
    k64 = [row for row in rows if row["K (stdeform n_points)"] == "64"][0]
    assert k64["AP (%)"].startswith("— (error: FloatingPointError")
    assert k64["verdict"] == "— (no paired seeds)"


def test_every_option_that_varies_gets_its_ablation(tables):
    rows = tables[TITLES["mode"]]
    assert [(row["setting"], row["mode"]) for row in rows] == [
        ("impl=op, n_points=16", "3d"),
        ("impl=op, n_points=16", "frames"),
        ("impl=op, n_points=32", "3d"),
        ("impl=op, n_points=32", "frames"),
    ]
    difference = paired_difference(
        ap_per_seed("stdeform 3d K=16"), ap_per_seed("stdeform frames K=16")
    )
    assert close_points(rows[1]["Δ AP (points), paired"], difference.value)


def test_paired_differences_against_dense_and_between_ks(tables):
    rows = {row["B − A"]: row for row in tables[TITLES["differences"]]}
    for method in usable_by_label():
        if method == "full (sdpa)":
            continue
        row = rows[f"{method} − full (sdpa)"]
        difference = paired_difference(ap_per_seed("full (sdpa)"), ap_per_seed(method))
        assert close_points(row["Δ AP (points)"], difference.value)
        assert row["seeds"] == str(difference.n)
        assert row["verdict"] == verdict(difference)
    assert rows["stdeform frames K=32 − stdeform frames K=16"]["comparison"] == "n_points 16 → 32"


def test_hybrids_grid(tables):
    rows = tables[TITLES["hybrids"]]
    grid = {
        (row["encoder ↓ · decoder →"], decoder.removesuffix(" [decoder]")): cell
        for row in rows
        for decoder, cell in row.items()
        if decoder.endswith("[decoder]")
    }
    specs = ["full (sdpa)", "stdeform frames K=32"]
    methods = {
        (specs[0], specs[0]): "full (sdpa)",
        (specs[0], specs[1]): "full (sdpa) enc + stdeform frames K=32 dec",
        (specs[1], specs[0]): "stdeform frames K=32 enc + full (sdpa) dec",
        (specs[1], specs[1]): "stdeform frames K=32",
    }
    assert set(grid) == set(methods)
    for key, method in methods.items():
        cell = lines_of(grid[key])
        assert close_points(cell[0], mean_interval(ap_per_seed(method).values()).value)
        if method != "full (sdpa)":
            difference = paired_difference(ap_per_seed("full (sdpa)"), ap_per_seed(method))
            assert close_points(cell[1].removeprefix("Δ vs dense "), difference.value)


def test_lr_sweep_marks_the_chosen_rate(tables):
    rows = tables[TITLES["lr"]]
    by_rate = defaultdict(list)
    for run in runs_of("lr_sweep.jsonl").values():
        by_rate[(run["label"], run["case"]["lr"])].append(100 * run["AP"])
    for (method, lr), aps in by_rate.items():
        row = next(r for r in rows if r["configuration"] == method and r["lr"] == f"{lr:.3g}")
        assert close_points(row["AP (%)"], np.mean(aps))
    chosen = {row["configuration"]: row["lr"] for row in rows if row["choice"].startswith("chosen")}
    assert chosen == {"full (sdpa)": "0.0002", "stdeform frames K=16": "0.0006"}
    assert "the ablation's" in next(r["choice"] for r in rows if r["lr"] == "0.0002")


def test_convergence_study_tables(tables):
    rows = tables[TITLES["study"]]
    assert row_of(rows, "full (sdpa)")["flattened"] == "0 of 3"
    assert row_of(rows, "stdeform frames K=16")["flattened"] == "3 of 3"
    assert row_of(rows, "full (sdpa)")["reached"] == "2 of 3"
    study = runs_of("study.jsonl")
    for device in ("NVIDIA H100 80GB HBM3", "Intel(R) Xeon(R) CPU @ 2.20GHz"):
        dense = {
            r["seed"]: hours_b(r, device) for r in study.values() if r["label"] == "full (sdpa)"
        }
        other = {
            r["seed"]: hours_b(r, device) for r in study.values() if r["label"] != "full (sdpa)"
        }
        seeds = [s for s in sorted(dense) if dense[s] is not None and other[s] is not None]
        ratios = np.log([dense[s] / other[s] for s in seeds])
        ratio = mean_interval(ratios)
        row = next(r for r in tables[TITLES["study-ratio"]] if r["device"] == short_device(device))
        assert close(row["device-h (b) to target"], np.exp(ratio.value))
        assert row["seeds where both reached"] == "2 of 3"
        assert row["verdict"].startswith("dense needs more")


def answer_section(markdown: str) -> str:
    return markdown.split("## The answer", 1)[1].split("\n## ", 1)[0]


def test_the_answer_states_the_studys_ratio(report, tables):
    first = tables[TITLES["study-ratio"]][0]
    sentence = next(
        line for line in answer_section(report["md"]).splitlines()
        if line.startswith("Convergence study")
    )  # fmt: skip
    assert (
        f"on {first['device']}, {first['ratio']}: {first['device-h (b) to target']} (" in sentence
    )
    assert "dense needs more" in sentence and "seeds where both reached: 2 of 3" in sentence
    assert "(12000 iterations per run)" in sentence and "The poster reports 8.3×" in sentence
    dense = {r["seed"]: 100 * r["AP"] for r in runs_of("study.jsonl").values()
             if r["label"] == "full (sdpa)"}  # fmt: skip
    other = {r["seed"]: 100 * r["AP"] for r in runs_of("study.jsonl").values()
             if r["label"] == "stdeform frames K=16"}  # fmt: skip
    difference = paired_difference(dense, other)
    assert f"final AP: full (sdpa) {mean_interval(dense.values()).value:.1f} ± " in sentence
    assert f"stdeform frames K=16 − full (sdpa): {difference.value:+.1f} ± " in sentence


def test_a_configuration_that_never_reaches_the_target_reports_its_plateau(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results, ignore=shutil.ignore_patterns("*.py"))
    lines = []
    for r in fixture_records("study.jsonl"):
        if label(r) == "full (sdpa)" and r["metric"].endswith("_to_target"):
            r = {**r, "value": None, "reason": "not reached"}
        lines.append(json.dumps(r) + "\n")
    (results / "study.jsonl").write_text("".join(lines))
    rendered = render(results, tmp_path / "out")
    rows = markdown_tables(rendered["md"])[TITLES["study-ratio"]]
    assert len(rows) == 2 and all(r["device-h (b) to target"] == "— (never reached)" for r in rows)
    finals = [100 * r["AP"] for r in runs_of("study.jsonl").values() if r["label"] == "full (sdpa)"]
    plateau = f"full (sdpa) never reached it: plateau AP {mean_interval(finals).value:.1f} ± "
    assert rows[0]["verdict"].startswith(plateau)
    assert "after 12000, 12000, 12000 iterations" in rows[0]["verdict"]
    answer = answer_section(rendered["md"])
    assert f"{rows[0]['ratio']}: {plateau}" in answer


def scaling_points(method: str, metric: str, device: str, sweep=None) -> tuple:
    x, y, grid = [], [], set()
    for r in fixture_records("measurements.jsonl"):
        case = r["case"]
        if case["kind"] != "scaling" or label(r) != method or r["env"]["device_name"] != device:
            continue
        if r["metric"] != metric:
            continue
        grid.add(case["tokens"])
        if r["status"] == "ok" and (sweep in (None, "upper half") or case["sweep"] == sweep):
            x.append(case["tokens"])
            y.append(r["value"])
    x, y = np.array(x, dtype=float), np.array(y, dtype=float)
    if sweep == "upper half":
        keep = x >= np.median(sorted(grid))
        x, y = x[keep], y[keep]
    return x, y


def test_scaling_exponents_are_the_log_log_slopes_of_the_fixture(tables):
    rows = tables[TITLES["time"]]
    columns = [("T", "T sweep"), ("HW", "H×W sweep"), (None, "all points")]
    columns += [("upper half", "upper half")]
    checked = 0
    for row in rows:
        device = (
            "NVIDIA H100 80GB HBM3" if row["device"] == GPU else "Intel(R) Xeon(R) CPU @ 2.20GHz"
        )
        for sweep, column in columns:
            x, y = scaling_points(row["method"], "time", device, sweep)
            slope = np.polyfit(np.log(x), np.log(y), 1)[0]
            cell = row[f"{column} [time ∝ tokens^b]"]
            assert leading_number(cell) == pytest.approx(slope, abs=0.006), (row["method"], column)
            checked += 1
        x, y = scaling_points(row["method"], "time", device, "upper half")
        fitted = np.polyval(np.polyfit(np.log(x), np.log(y), 1), np.log(x))
        r2 = 1 - np.sum((np.log(y) - fitted) ** 2) / np.sum((np.log(y) - np.log(y).mean()) ** 2)
        assert float(row["R² [upper half]"].split()[0]) == pytest.approx(r2, abs=6e-4)
    assert checked == 4 * len(rows) == 4 * 11
    math = row_of([r for r in rows if r["device"] == CPU], "full (math)")
    assert math["T sweep [time ∝ tokens^b]"].endswith("(1 timeout excluded)")
    assert math["H×W sweep [time ∝ tokens^b]"].endswith("(1 OOM excluded)")
    assert math["points ok / measured"] == "8 / 10"
    noisy = [r for r in rows if r["method"] == "stdeform 3d K=16" and r["device"] == GPU][0]
    assert "⚠" in noisy["upper half [time ∝ tokens^b]"] and "⚠" in noisy["spread [upper half]"]
    clean = [r for r in rows if r["method"] == "stdeform 3d K=16" and r["device"] == CPU][0]
    assert "⚠" not in clean["upper half [time ∝ tokens^b]"]


def test_scaling_analytic_exponents_follow_the_formulas(tables):
    from attention.registry import BACKENDS

    rows = [r for r in tables[TITLES["time"]] if r["device"] == CPU]
    d, ffn = 384, 2048  # the fixture's layer
    x, _ = scaling_points("full (sdpa)", "time", "Intel(R) Xeon(R) CPU @ 2.20GHz", "upper half")
    macs = 2 * x * x * d + 4 * x * d * d + 2 * x * d * ffn + 10 * x * d  # QKᵀ+AV, proj, FFN, norms
    expected = np.polyfit(np.log(x), np.log(macs), 1)[0]
    column = "analytic [upper half]"
    assert leading_number(row_of(rows, "full (sdpa)")[column]) == pytest.approx(expected, abs=0.006)
    assert row_of(rows, "stdeform 3d K=16")[column] == "1.00"  # linear in tokens
    if "divided" not in BACKENDS:  # a backend this checkout cannot build has no formula
        assert row_of(rows, DIVIDED)[column] == "— (no formula at 5 of 5 points)"


def test_memory_fit_says_which_implementations_materialise_the_matrix(tables):
    rows = [r for r in tables[TITLES["memory"]] if r["device"] == CPU]
    matrices = "S×S fp32 matrices (c / 4·heads)"
    assert float(row_of(rows, "full (math)")[matrices]) == pytest.approx(2.0, abs=0.05)
    assert float(row_of(rows, "full (sdpa)")[matrices]) == pytest.approx(0.0, abs=0.05)
    c = leading_number(row_of(rows, "full (math)")["c (B/token²) [peak ≈ a + b·S + c·S²]"])
    assert c == pytest.approx(64, rel=0.02)  # 2 matrices x 8 heads x 4 bytes
    b = leading_number(row_of(rows, "full (sdpa)")["b (B/token) [peak ≈ a + b·S + c·S²]"])
    assert b == pytest.approx(36 * 1024, rel=0.02)


def test_scaling_points_table(tables):
    rows = tables[TITLES["points"]]
    assert len(rows) == 11 * 10
    indexed = {(r["method"], r["device"], r["sweep"], r["T"], r["H"], r["W"]): r for r in rows}
    for r in fixture_records("measurements.jsonl"):
        case = r["case"]
        if case["kind"] != "scaling":
            continue
        key = (label(r), short_device(r["env"]["device_name"]), case["sweep"])
        row = indexed[key + (str(case["T"]), str(case["H"]), str(case["W"]))]
        column = "time (ms) (spread)" if r["metric"] == "time" else "peak memory (MiB)"
        if r["status"] == "ok":
            assert close(row[column], (1000 if r["metric"] == "time" else 1) * r["value"])
        else:
            assert row[column] == f"— ({r['status']})"
    assert sum("⚠" in row["time (ms) (spread)"] for row in rows) == 2


def test_flops_tables_show_every_counter(tables):
    counters = tables[TITLES["counters"]]
    names = {"fvcore": "fvcore", "flop_counter": "FlopCounterMode", "analytic": "analytic"}
    indexed = {(r["method"], r["preset · device"], r["component"]): r for r in counters}
    for r in latest(fixture_records("measurements.jsonl")):
        if r["case"]["kind"] != "flops":
            continue
        where = f"{r['case']['preset']} · {CPU}"
        row = indexed[(label(r), where, r["component"])]
        assert close(row[f"{names[r['counter']]} [GMACs by counter]"], r["value"])
    assert (
        indexed[("full (sdpa)", f"paper · {CPU}", "backbone")]["analytic [GMACs by counter]"]
        == "— (not run)"
    )
    split = tables[TITLES["split"]]
    row = next(
        r
        for r in split
        if r["method"] == "full (sdpa)" and r["preset · device"].startswith("paper")
    )
    share = re.search(r"\(([\d.]+) %\)", row["backbone [fvcore GMACs (% of model)]"]).group(1)
    values = {
        r["component"]: r["value"]
        for r in fixture_records("measurements.jsonl")
        if r["case"]["kind"] == "flops" and label(r) == "full (sdpa)"
        and r["case"]["preset"] == "paper" and r["counter"] == "fvcore"
    }  # fmt: skip
    assert float(share) == pytest.approx(100 * values["backbone"] / values["model"], abs=0.05)


def test_the_counters_independence_table_comes_from_the_handles(tables):
    from bench.measure.flops import FVCORE_HANDLES

    rows = {row["operator family"]: row for row in tables[TITLES["independence"]]}
    for operator in FVCORE_HANDLES:
        assert rows[operator]["independent?"].startswith("no: one formula")
        assert "the suite's" in rows[operator]["fvcore"]
    convolutions = next(row for name, row in rows.items() if name.startswith("convolutions"))
    assert convolutions["independent?"].startswith("yes")


def test_uncounted_operators_fold_into_one_line_per_method(tables):
    fold = tables[TITLES["uncounted"]]
    full = tables[TITLES["uncounted-list"]]
    for r in fixture_records("measurements.jsonl"):
        if (
            r["case"]["kind"] != "flops"
            or r.get("component") != "model"
            or r["counter"] != "fvcore"
        ):
            continue
        where = f"{r['case']['preset']} · {CPU}"
        row = next(x for x in fold if x["method"] == label(r) and x["preset · device"] == where)
        ops = r["unsupported"]
        assert row["uncounted operators"] == str(len(ops))
        assert row["calls"] == str(sum(ops.values()))
        inputs = r["case"]["input"]
        clip = inputs["T"] * 3 * inputs["height"] * inputs["width"]
        expected = 100 * sum(ops.values()) * clip / (r["value"] * 1e9)
        assert float(row["estimated share"].removeprefix("≈ ").removesuffix(" %")) == pytest.approx(
            expected, rel=0.05
        )
        listed = {
            x["operator"]: x["calls"]
            for x in full
            if x["method"] == label(r) and x["preset · device"] == where
        }
        assert listed == {op: str(calls) for op, calls in ops.items()}


def test_deviations_are_built_from_the_presets_and_the_results(report):
    section = report["md"].split("## Deviations from VisTR / Deformable VisTR")[1].split("## ")[0]
    assert "- d_model: 96 (VisTR: 384)" in section  # the quick preset
    assert "as VisTR: backbone resnet50" in section  # the paper preset is VisTR's
    assert "mask head: per-frame FPN over backbone strides 16, 8, 4 with 64-channel" in section
    assert "instance score: the class probability × the mask quality" in section
    assert "ablation: data synthetic, 1500 iterations per run, 40 validation videos" in section
    assert "800 iterations at batch 16" in section


def test_deviations_follow_a_changed_preset(monkeypatch):
    import dataclasses

    from bench.report.deviations import preset_lines
    from models import presets

    changed = dataclasses.replace(presets.QUICK, d_model=120, n_heads=6, mask_dim=32)
    monkeypatch.setitem(presets.PRESETS, "quick", changed)
    lines = preset_lines("quick")
    assert "d_model: 120 (VisTR: 384)" in lines
    assert "attention heads: 6 (VisTR: 8)" in lines
    assert any("32-channel pixel embeddings" in line for line in lines)


def test_failures_table_lists_each_failure_with_its_message(tables):
    rows = tables[TITLES["failures"]]
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
            "Cost (FLOPs, FPS, peak memory, step times): paper, quick preset",
            "Training (ablation): quick preset, data set: synthetic",
        ):
            assert fact in text, fact
    environments = {row["id"]: row for row in tables[TITLES["environment"]]}
    assert set(environments) == {"E1", "E2"}
    assert "cost (paper)" in environments["E2"]["used by"]
    assert "accuracy (quick, synthetic)" not in environments["E2"]["used by"]
    assert "accuracy (quick, synthetic)" in environments["E1"]["used by"]


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
    for table_id in ("headline", "cost-paper", "cost-quick", "accuracy-quick-synthetic"):
        assert ("table", {"id": table_id}) in checker.attributes, table_id


class TableCells(HTMLParser):
    """The text of every <td> per <table id>, row by row; <br> becomes "<br>"."""

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
        elif tag == "br" and self.cell is not None:
            self.cell += "<br>"

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
    ids = {
        "headline": "headline",
        "cost-paper": "cost-paper",
        "accuracy-quick-synthetic": "accuracy",
        "reported": "reported",
        "scaling-time": "time",
        "scaling-points": "points",
        "crossover": "crossover",
        "failures": "failures",
    }
    for table_id, key in ids.items():
        html_rows = [row for row in parser.tables[table_id] if row]  # header rows have no <td>
        markdown_rows = [
            [re.sub(r" \((reported|baseline)\)$", "", cell.strip("*")) for cell in row.values()]
            for row in tables[TITLES[key]]
        ]
        html_rows = [
            [re.sub(r" (reported in paper|dense reference)$", "", cell) for cell in row]
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


def test_a_folder_missing_parts_says_what_is_missing_and_which_command_makes_it(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "measurements.jsonl").write_text(
        "".join(
            line + "\n"
            for line in (FIXTURE / "measurements.jsonl").read_text().splitlines()
            if '"kind": "inference"' in line and line.endswith("}")
        )
    )
    rendered = render(results, tmp_path / "out")
    markdown = rendered["md"]
    assert set(rendered["written"]) == {"README.md", "index.html", "summary.json"}
    for sentence in (
        "*Missing:* No convergence study (study.jsonl): python -m bench.study convergence",
        "*Missing:* No learning-rate sweep (lr_sweep.jsonl): python -m bench.study lr",
        "*Missing:* No hybrid runs: python -m bench.ablate --hybrids full/stdeform:mode=frames",
        "No ablation runs (ablation.jsonl): python -m bench.ablate produces them.",
        "*Not drawn:* No usable scaling measurements of time: python -m bench.measure",
        "*Not drawn:* No ablation runs with logs (runs/*/log.jsonl): python -m bench.ablate",
        "Training-step times were not measured at the paper preset: python -m bench.measure "
        "--metrics step --step-presets paper measures them.",
    ):
        assert sentence in markdown, sentence
    check_html(rendered["html"])
    assert "<img" not in rendered["html"]
    rows = markdown_tables(markdown)[TITLES["cost-paper"]]
    assert row_of(rows, "full (math)")[f"FPS [{CPU}]"] == "— (timeout)"


def test_an_empty_results_directory_renders_and_stale_figures_go(tmp_path, report):
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    stale = out / "figures" / "curves_study.png"
    stale.write_bytes((report["out"] / "figures" / "curves_study.png").read_bytes())
    mine = out / "figures" / "mine.png"  # not the report's: left alone
    mine.write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    rendered = render(tmp_path / "empty", out)
    assert set(rendered["written"]) == {"README.md", "index.html", "summary.json"}
    assert not stale.exists() and mine.exists()
    assert rendered["md"].count("*Not drawn:*") == 4  # the study's missing figure: its section says
    assert "No scaling sweeps recorded" in rendered["md"]
    check_html(rendered["html"])


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
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out / 'index.html'}" in done.stdout
    assert "**Note:** An example from the fixture." in (out / "README.md").read_text()


def test_command_line_refuses_a_missing_results_directory(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.report", "--results", str(tmp_path / "no"), "--out",
         str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "does not exist" in done.stderr


# ---- what the harness really writes ----


def test_cost_table_shows_what_the_measurement_cases_record(tmp_path):
    """End to end at a tiny size: bench.measure's own cases -> the store -> the cost table."""
    from attention.registry import parse_backend
    from bench.measure.cases import flops_case, inference_case
    from bench.method import method_fields
    from bench.store import ResultsStore

    store = ResultsStore(tmp_path / "measurements.jsonl")
    base = {"preset": "quick", "device": "cpu", "threads": 1}
    base["input"] = {"T": 6, "height": 64, "width": 64}
    for spec in ("full", "stdeform:mode=3d,n_points=16"):
        encoder = parse_backend(spec)
        case = {**base, **method_fields({"encoder": encoder, "decoder": encoder})}
        store.append(*flops_case({**case, "kind": "flops"}))
        timing = {"warmup": 0, "repeats": 2, "seconds": 30}
        store.append(*inference_case({**case, "kind": "inference", **timing}))
    rendered = render(tmp_path, tmp_path / "out")
    rows = markdown_tables(rendered["md"])[TITLES["cost-quick"]]
    records = store.records()
    device = short_device(records[0]["env"]["device_name"])
    for method in ("full (sdpa)", "stdeform 3d K=16"):
        row = row_of(rows, method)
        mine = [r for r in records if label(r) == method]
        value = {
            (r["metric"], r.get("component")): r["value"]
            for r in mine
            if r.get("counter", "fvcore") == "fvcore"
        }
        assert close(row[f"FPS [{device}]"], value[("fps", None)])
        assert close(row[f"peak memory (MiB) [{device}]"], value[("peak_memory", None)])
        assert close(row["GMACs model [fvcore]"], value[("macs", "model")])


# ---- the small pieces ----


def test_a_measurement_of_the_reference_op_is_its_own_method():
    from bench.report.load import tidy_row

    options = {"mode": "3d", "n_points": 32, "window": None, "impl": "op"}
    case = {"backend": "stdeform", "options": options}
    assert tidy_row({"case": case, "op_impl": "cpu kernel"})["method"] == "stdeform 3d K=32"
    assert tidy_row({"case": case, "op_impl": "reference"})["method"] == (
        "stdeform 3d K=32 [op ran as reference]"
    )
    reference = {"backend": "stdeform", "options": {**options, "impl": "reference"}}
    assert "[op ran" not in tidy_row({"case": reference, "op_impl": "reference"})["method"]
    assert case["options"] == options  # the record itself is left alone


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


def test_markdown_escapes_cells_that_look_like_markup_and_stacks_lines():
    table = Table(
        "t",
        "T",
        [Column("a"), Column("b", "group")],
        [Row(["x|y", "error: bad __init__ <here>"]), Row(["paper", "1\n×2"], "reported")],
    )
    rows = markdown_tables("### T\n" + table.to_markdown())["T"]
    assert rows[0] == {"a": "x|y", "b [group]": "error: bad __init__ &lt;here&gt;"}
    assert rows[1] == {"a": "*paper (reported)*", "b [group]": "*1<br>×2*"}
