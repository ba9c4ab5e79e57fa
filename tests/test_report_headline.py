"""The answer first: the headline table's cells and ratios on the fixture, its sentences, and
summary.json, each checked against numbers computed here from the fixture's records."""

import json
import math

import numpy as np
import pytest

from bench.report.headline import Headline
from bench.report.quantity import Quantity
from bench.report.sentences import sentences
from bench.stats import NOT_DISTINGUISHABLE, Interval, mean_interval
from tests.test_report import (
    CPU,
    DIVIDED,
    FIXTURE,
    GPU,
    close,
    close_points,
    fixture_records,
    half_width,
    hours_b,
    label,
    latest,
    leading_number,
    lines_of,
    markdown_tables,
    render,
    row_of,
    runs_of,
    scaling_points,
)

TITLE = "The answer: cost and accuracy per method, against dense attention"
XEON = "Intel(R) Xeon(R) CPU @ 2.20GHz"
H100 = "NVIDIA H100 80GB HBM3"
COLUMNS = {
    "gmacs": "encoder GMACs [paper preset]",
    "fps": f"FPS [paper · {CPU}]",
    "memory": f"peak memory (MiB) [paper · {CPU}]",
    "exponent": f"time ∝ tokens^b [layer · {CPU}]",
    "AP": "AP (%) [quick · synthetic]",
    "hours": f"device-h to target (b) [quick · {GPU}]",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return render(FIXTURE, tmp_path_factory.mktemp("headline"))


@pytest.fixture(scope="module")
def headline(rendered):
    return markdown_tables(rendered["md"])[TITLE]


def paper_values(kind: str, metric: str, device: str | None = None, **fields) -> dict:
    found = {}
    for r in latest(fixture_records("measurements.jsonl")):
        case = r["case"]
        if case["kind"] != kind or case["preset"] != "paper" or r["metric"] != metric:
            continue
        if device and r["env"]["device_name"] != device:
            continue
        if any(r.get(k) != v for k, v in fields.items()) or r["status"] != "ok":
            continue
        found[label(r)] = r["value"]
    return found


def paired_ratio(values: dict, reference: dict):
    """Geometric-mean ratio over common seeds with its t interval, computed by hand."""
    seeds = sorted(set(values) & set(reference))
    logs = [math.log(values[s] / reference[s]) for s in seeds]
    interval = mean_interval(logs)
    return math.exp(interval.value), math.exp(interval.low), math.exp(interval.high)


def test_one_row_per_method_and_hybrid_with_the_reference_first(headline):
    methods = [row["method"] for row in headline]
    assert methods[0] == "full (sdpa) (baseline)"
    assert len(methods) == 10  # 9 measured (with both hybrids) + the K=64 run that failed
    assert "full (sdpa) enc + stdeform frames K=32 dec" in methods
    assert list(headline[0]) == ["method", *COLUMNS.values()]
    assert all(lines_of(cell)[-1] == "reference" for cell in list(headline[0].values())[1:])


def test_cost_cells_and_their_ratios(headline):
    for column, values in (
        ("gmacs", paper_values("flops", "macs", counter="fvcore", component="encoder")),
        ("fps", paper_values("inference", "fps", XEON)),
        ("memory", paper_values("inference", "peak_memory", XEON)),
    ):
        reference = values["full (sdpa)"]
        for method, value in values.items():
            cell = lines_of(row_of(headline, method)[COLUMNS[column]])
            assert close(cell[0], value), (method, column, cell)
            if method != "full (sdpa)":
                assert close(cell[1], value / reference), (method, column, cell)
    k16 = lines_of(row_of(headline, "stdeform 3d K=16")[COLUMNS["fps"]])
    assert k16[1].endswith("(faster)")
    hybrid = lines_of(
        row_of(headline, "full (sdpa) enc + stdeform frames K=32 dec")[COLUMNS["fps"]]
    )
    assert hybrid[1].endswith("(within noise)")  # 0.618 / 0.625: inside the 5% rule
    math_row = row_of(headline, "full (math)")
    assert math_row[COLUMNS["fps"]] == "— (timeout)"  # no ratio under a missing value
    assert lines_of(math_row[COLUMNS["memory"]])[1].endswith("(more memory)")


def sweep_upper_half(method: str, sweep: str) -> tuple:
    """The time points of one sweep at or above the median of that sweep's token counts."""
    x, y = scaling_points(method, "time", XEON, sweep)
    grid = sorted(set(scaling_points(method, "time", XEON, sweep)[0]))
    keep = x >= np.median(grid)
    return x[keep], y[keep]


def test_the_time_exponents_are_the_upper_half_fits_of_each_sweep(headline):
    slopes = {}
    for method in ("full (sdpa)", "stdeform 3d K=16", "stdeform frames K=16", DIVIDED):
        slopes[method] = {
            sweep: np.polyfit(*(np.log(v) for v in sweep_upper_half(method, sweep)), 1)[0]
            for sweep in ("T", "HW")
        }
    for method, slope in slopes.items():
        cell = lines_of(row_of(headline, method)[COLUMNS["exponent"]])
        assert leading_number(cell[0]) == pytest.approx(slope["T"], abs=0.006)
        assert cell[1] == f"H×W {slope['HW']:.2f}", (cell, slope)
        if method != "full (sdpa)":
            ratio = slope["T"] / slopes["full (sdpa)"]["T"]
            assert leading_number(cell[2]) == pytest.approx(ratio, rel=0.01)
    hybrid = row_of(headline, "full (sdpa) enc + stdeform frames K=32 dec")[COLUMNS["exponent"]]
    assert close(hybrid, slopes["full (sdpa)"]["T"])  # a hybrid shows its encoder's
    # K points in every frame: about T² along T, linear along H×W; one exponent would hide it
    frames = slopes["stdeform frames K=16"]
    assert frames["T"] > 1.5 and frames["HW"] < 1.3


def test_ap_cells_and_paired_ratios(headline):
    runs = runs_of()
    by_method: dict[str, dict[int, float]] = {}
    for run in runs.values():
        if run["usable"]:
            by_method.setdefault(run["label"], {})[run["seed"]] = 100 * run["AP"]
    for method, values in by_method.items():
        cell = lines_of(row_of(headline, method)[COLUMNS["AP"]])
        interval = mean_interval(values.values())
        assert close_points(cell[0], interval.value)
        assert half_width(cell[0]) == pytest.approx(interval.half_width, abs=0.051)
        if method == "full (sdpa)":
            continue
        value, _, _ = paired_ratio(values, by_method["full (sdpa)"])
        assert close(cell[1], value)
        dense = by_method["full (sdpa)"]
        difference = mean_interval([values[s] - dense[s] for s in sorted(set(values) & set(dense))])
        assert cell[2].startswith(f"Δ {difference.value:+.1f} ± {difference.half_width:.1f}"), cell
        low, high = difference.low, difference.high
        expected = "n.d." if low <= 0 <= high else ("above dense" if low > 0 else "below dense")
        assert cell[2].endswith(f"({expected})")
    assert "1 excluded" in row_of(headline, "stdeform 3d K=32")[COLUMNS["AP"]]  # the budget run
    assert row_of(headline, "stdeform 3d K=64")[COLUMNS["AP"]].startswith("— (error:")


def test_device_hours_b_and_their_paired_ratios(headline):
    runs = [r for r in runs_of().values() if r["usable"]]
    hours = {}
    for run in runs:
        hours.setdefault(run["label"], {})[run["seed"]] = hours_b(run, H100)
    for method, per_seed in hours.items():
        reached = {s: h for s, h in per_seed.items() if h is not None}
        cell = lines_of(row_of(headline, method)[COLUMNS["hours"]])
        assert close(cell[0], mean_interval(reached.values()).value), (method, cell)
        if method == "full (sdpa)":
            assert "reached in 2 of 3" in cell[0]
            continue
        dense = {s: h for s, h in hours["full (sdpa)"].items() if h is not None}
        value, _, _ = paired_ratio(reached, dense)
        assert close(cell[1], value), (method, cell)


def test_every_column_names_its_source(rendered):
    text = rendered["md"].split("## Cost per preset")[0]
    for fact in (
        "encoder GMACs: fvcore's multiply-accumulates of the encoder (all layers), paper preset, "
        "input T×H×W = 36×300×540",
        f"FPS: batch-1 inference, paper preset, {XEON}",
        f"upper half of the T sweep (more frames at 10×17; token counts at or above its median), "
        f"then of the H×W sweep (larger frames at T = 8), {XEON}",
        "AP (%): quick preset, synthetic data, 1500 iterations: final validation AP, mean ± 95% Student t interval "
        "over seeds",
        f"timed in isolation on {H100} (quick preset)",
        "to the target AP 25.0 %",
    ):
        assert fact in text, fact


def test_the_sentences_follow_the_verdicts(rendered, headline):
    text = rendered["md"].split("## Cost per preset")[0]
    fps = paper_values("inference", "fps", XEON)
    ratio = fps["stdeform 3d K=16"] / fps["full (sdpa)"]
    assert f"against full (sdpa): faster: stdeform 3d K=16 (×{ratio:.2f})" in text
    assert "within the timing noise: full (sdpa) enc + stdeform frames K=32 dec (×0.989)" in text
    opening = "AP (quick preset, synthetic data, seeds paired) against full (sdpa): "
    sentence = text.split(opening)[1].split(" (verdicts from the paired difference")[0]
    groups = dict(part.split(": ", 1) for part in sentence.split("; "))
    by_method: dict[str, dict[int, float]] = {}
    for run in runs_of().values():
        if run["usable"]:
            by_method.setdefault(run["label"], {})[run["seed"]] = 100 * run["AP"]
    dense = by_method.pop("full (sdpa)")
    for method, values in by_method.items():
        d = mean_interval([values[s] - dense[s] for s in sorted(set(values) & set(dense))])
        word = NOT_DISTINGUISHABLE if d.low <= 0 <= d.high else "higher" if d.low > 0 else "lower"
        shown = f"{method} ({d.value:+.1f} ± {d.half_width:.1f} points, ×"
        assert shown in groups[word], (shown, word, groups)
    assert "full (sdpa) reached in 2 of 3 seeds, so each ratio pairs only the seeds" in text
    flagged = [row["method"] for row in headline if "⚠" in row[COLUMNS["exponent"]]]
    assert flagged and f"The time exponents of {', '.join(flagged)} come from noisy fits" in text


def quantity(value, ratio=None, verdict="", **fields) -> Quantity:
    q = Quantity(value, "x", "constructed", n=3, **fields)
    if ratio is not None:
        q.ratio = Quantity(ratio, "×", "constructed", low=ratio * 0.9, high=ratio * 1.1, n=3)
        q.ratio_verdict = verdict
    return q


def constructed(rows: dict) -> Headline:
    import pandas as pd

    methods = pd.DataFrame(
        [(m, "b", {}, None) for m in rows], columns=["method", "backend", "options", "decoder"]
    )
    context = {
        "cost_preset": "paper",
        "devices": {"inference": "GPU X", "scaling": "GPU X"},
        "training": ("quick", "synthetic"),
        "step_device": "GPU X",
        "target": [0.3],
    }
    return Headline(methods, rows, {}, "dense", context)


def test_sentences_on_constructed_numbers():
    def row(fps, fps_verdict, ap, ap_verdict, hours, hours_verdict, noisy=""):
        gained = Interval(30.0 * (ap - 1), 30.0 * (ap - 1) - 1.0, 30.0 * (ap - 1) + 1.0, 3)
        return {
            "encoder_gmacs": quantity(10.0, 0.5),
            "fps": quantity(5.0, fps, fps_verdict),
            "peak_memory": quantity(1.0),
            "time_exponent": quantity(1.0, noisy=noisy),
            "AP": quantity(30.0, ap, ap_verdict, difference=gained),
            "device_hours_b": quantity(1.0, hours, hours_verdict),
        }

    rows = {
        "dense": row(1, "", 1, "", 1, ""),
        "A": row(2.0, "faster", 1.2, "above dense", 0.5, "below dense"),
        "B": row(0.5, "slower", 0.8, "below dense", 2.0, "above dense", noisy="R² 0.5"),
        "C": row(1.01, "within noise", 1.0, NOT_DISTINGUISHABLE, 1.0, NOT_DISTINGUISHABLE),
    }
    rows["dense"]["device_hours_b"].note = ""
    text = " ".join(sentences(constructed(rows)))
    assert (
        "on GPU X, against dense: faster: A (×2.00); slower: B (×0.5); within the timing noise: C (×1.01)."
        in text
    )
    assert (
        "against dense: higher: A (+6.0 ± 1.0 points, ×1.20); lower: B (-6.0 ± 1.0 points, ×0.8); "
        "not distinguishable at this scale: C (+0.0 ± 1.0 points, ×1.00)" in text
    )
    assert "target AP 30.0 % on GPU X, against dense: fewer: A (×0.5); more: B (×2.00)" in text
    assert "The time exponents of B come from noisy fits" in text
    assert "from ×0.5 (A) to ×0.5" in text


def test_without_dense_attention_the_sentences_say_so():
    headline = constructed({"A": {}})
    headline.reference = None
    assert sentences(headline)[0].startswith(
        "Dense attention, full (sdpa), is not in these results"
    )


def test_summary_json_holds_the_headline_as_numbers(rendered, headline):
    summary = json.loads((rendered["out"] / "summary.json").read_text())
    assert summary["reference"] == "full (sdpa)"
    assert [c["key"] for c in summary["columns"]] == [
        "encoder_gmacs", "fps", "peak_memory", "time_exponent", "AP", "device_hours_b"
    ]  # fmt: skip
    rows = {row["method"]: row for row in summary["rows"]}
    assert len(rows) == len(headline)
    dense = rows["full (sdpa)"]
    assert (
        dense["reference"] and dense["backend"] == "full" and dense["options"] == {"impl": "sdpa"}
    )
    hybrid = rows["full (sdpa) enc + stdeform frames K=32 dec"]
    assert hybrid["decoder"]["backend"] == "stdeform"
    for row in rows.values():
        for cell in row["cells"].values():
            assert set(cell) >= {"value", "low", "high", "n", "unit", "source"}
            assert cell["value"] is None or isinstance(cell["value"], float | int)
            assert isinstance(cell["source"], str) and cell["source"]
    ap = rows["stdeform 3d K=16"]["cells"]["AP"]
    shown = lines_of(row_of(headline, "stdeform 3d K=16")[COLUMNS["AP"]])[0]
    assert close_points(shown, ap["value"]) and ap["n"] == 3 and ap["unit"] == "% AP"
    assert ap["low"] < ap["value"] < ap["high"]
    ratio, difference = ap["ratio_to_dense"], ap["difference_to_dense"]
    assert isinstance(ratio["value"], float) and ratio["low"] is None  # a point: Δ has the interval
    assert difference["low"] < difference["value"] < difference["high"] and difference["n"] == 3
    hours = rows["stdeform 3d K=16"]["cells"]["device_hours_b"]["ratio_to_dense"]
    assert hours["low"] < hours["value"] < hours["high"]
    assert rows["full (math)"]["cells"]["fps"] == {
        **rows["full (math)"]["cells"]["fps"], "value": None, "missing": "timeout"
    }  # fmt: skip
