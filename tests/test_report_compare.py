"""``python -m bench.report --compare A B`` on two constructed results folders: a change inside
the spread is "no change", a halved time is "faster", a machine change still matches its cases,
and cases of one side only are listed."""

import json
import subprocess
import sys

import pytest

from bench.report import compare_results
from bench.store import ResultsStore, record
from tests.test_report import ROOT, markdown_tables

CPU = {"device": "cpu", "device_name": "Test Xeon", "device_count": 1, "threads": 2,
       "torch": "2.x", "cuda": None, "python": "3.x", "host": "a", "commit": "aaa",
       "date": "2026-01-01T00:00:00+00:00"}  # fmt: skip
GPU = {**CPU, "device": "cuda", "device_name": "Test GPU", "threads": 8, "commit": "bbb"}
METHOD = {"backend": "full", "options": {"impl": "sdpa"}, "decoder": None}


def inference(preset: str, device: str = "cpu", threads: int = 2) -> dict:
    return {"kind": "inference", "preset": preset, **METHOD, "device": device,
            "threads": threads, "input": {"T": 6, "height": 64, "width": 64}}  # fmt: skip


def scaling(T: int, device: str = "cpu") -> dict:
    return {"kind": "scaling", "preset": None, "backend": "full", "options": {"impl": "sdpa"},
            "sweep": "T", "T": T, "H": 4, "W": 4, "tokens": 16 * T, "device": device,
            "threads": 2}  # fmt: skip


def timed(case, metric, value, env, spread=0.02) -> dict:
    median = value if metric != "fps" else 6 / value
    return record(case, metric, value, "s", env, median_s=median, iqr_s=spread * median)


@pytest.fixture
def folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ResultsStore(a / "measurements.jsonl").append(
        timed(inference("quick"), "fps", 100.0, CPU),  # B: 102, inside the noise
        timed(scaling(4), "time", 1.0, CPU),  # B: halved, faster
        timed(scaling(8), "time", 2.0, CPU, spread=0.3),  # B: 2.4, inside A's own spread
        timed(scaling(16), "time", 4.0, CPU),  # only in A
        record(inference("paper"), "peak_memory", 500.0, "MiB", CPU),  # B on a GPU: 400
    )
    ResultsStore(b / "measurements.jsonl").append(
        timed(inference("quick"), "fps", 102.0, CPU),
        timed(scaling(4), "time", 0.5, CPU),
        timed(scaling(8), "time", 2.4, CPU),
        timed(scaling(32), "time", 9.0, CPU),  # only in B
        record(inference("paper", "cuda", 8), "peak_memory", 400.0, "MiB", GPU),
    )
    return a, b


def verdicts(markdown: str) -> dict[tuple[str, str], dict]:
    rows = markdown_tables(markdown)["Measured in both"]
    return {(row["what"], row["metric"]): row for row in rows}


def test_verdicts_follow_the_noise_rule(folders, tmp_path):
    a, b = folders
    written = compare_results(a, b, tmp_path / "out")
    markdown = written["README.md"].read_text(encoding="utf-8")
    rows = verdicts(markdown)
    assert rows[("inference quick", "fps")]["verdict"] == "no change"
    assert rows[("inference quick", "fps")]["B/A"] == "×1.02"
    assert rows[("scaling T 4×4×4", "time")]["verdict"] == "faster"
    assert rows[("scaling T 4×4×4", "time")]["B/A"] == "×0.5"
    noisy = rows[("scaling T 8×4×4", "time")]
    assert noisy["verdict"] == "no change" and noisy["spread A"] == "0.30"
    memory = rows[("inference paper", "peak_memory")]  # matched across machines
    assert memory["verdict"] == "less memory" and memory["device A → B"] == "Test Xeon → Test GPU"
    tables = markdown_tables(markdown)
    assert [row["what"] for row in tables["Only in A"]] == ["scaling T 16×4×4"]
    assert [row["what"] for row in tables["Only in B"]] == ["scaling T 32×4×4"]
    assert "4 matched records: 2 no change, 1 faster, 1 less memory." in markdown
    assert "|log(B/A)| exceeds both the sum of the two sides' spreads" in markdown
    html = written["index.html"].read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and 'id="compared"' in html
    recorded = json.loads(written["comparison.json"].read_text())
    assert recorded["compared"] == ["../a", "../b"]


def test_the_command_line_compares_and_refuses_to_overwrite_a_report(folders, tmp_path):
    a, b = folders
    out = tmp_path / "comparison"
    command = [sys.executable, "-m", "bench.report", "--compare", str(a), str(b), "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "README.md").is_file() and (out / "comparison.json").is_file()
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr  # the same two folders: re-rendered
    swapped = [sys.executable, "-m", "bench.report", "--compare", str(b), str(a), "--out", str(out)]
    refused = subprocess.run(swapped, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    message = refused.stderr.strip()
    assert "\n" not in message and "pass --force" in message
    assert str(a) in message and str(b) in message


def test_training_runs_compare_over_seeds_not_per_run(tmp_path):
    """Two real-format results folders (the report fixture and a copy with every seed of one
    configuration's AP raised by 10 points, one seed by 10.5): a run's record shows its values and
    ratio but no per-run verdict; the training table gives each configuration's paired B − A with
    its interval and verdict, and an unchanged configuration is "not distinguishable" there."""
    import shutil

    from bench.stats import paired_difference
    from tests.test_report import FIXTURE, label

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(FIXTURE, a)
    shutil.copytree(FIXTURE, b)
    records = [json.loads(line) for line in (b / "ablation.jsonl").read_text().splitlines()]
    first = next(r for r in records if r["metric"] == "AP" and r["value"])
    raised_label = label(first)
    before, after = {}, {}
    for r in records:
        if r["metric"] == "AP" and r["value"] and label(r) == raised_label:
            seed = r["case"]["seed"]
            before[seed] = 100 * r["value"]
            r["value"] += 0.105 if seed == 0 else 0.10
            after[seed] = 100 * r["value"]
    (b / "ablation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    markdown = compare_results(a, b, tmp_path / "out")["README.md"].read_text(encoding="utf-8")
    tables = markdown_tables(markdown)
    runs = [row for row in tables["Measured in both"] if row["what"].startswith("ablation run")]
    valued = [row for row in runs if not row["A"].startswith("—") and not row["B"].startswith("—")]
    assert valued and all(row["verdict"] == "one seed: see the training table" for row in valued)
    raised_runs = [row for row in valued if row["metric"] == "AP" and row["method"] == raised_label]
    assert raised_runs and all(row["B/A"] != "×1" for row in raised_runs)
    training = tables["Training over seeds"]
    row = next(
        r for r in training if r["kind"] == "ablation" and r["configuration"] == raised_label
    )
    expected = paired_difference(before, after)
    assert len(before) >= 2 and row["seeds paired"] == str(expected.n)
    assert row["B − A (points)"].startswith(f"{expected.value:+.1f} ± {expected.half_width:.1f}")
    assert row["verdict"] == "higher"
    others = [
        r for r in training if r["configuration"] != raised_label and r["seeds paired"] != "0"
    ]
    assert others and all(r["B − A (points)"].startswith("+0.0") for r in others)
    assert all(r["verdict"] == "not distinguishable at this scale" for r in others)
