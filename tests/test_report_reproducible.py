"""A report re-renders the same from its results, wherever they lie, and is never overwritten by a
report of other results without --force."""

import json
import shutil
import subprocess
import sys

import pytest

from tests.test_report import FIXTURE, ROOT, render


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    return render(FIXTURE, tmp_path_factory.mktemp("first"))


def test_rendering_twice_gives_the_same_markdown_and_html(first, tmp_path):
    again = render(FIXTURE, tmp_path / "again")
    assert again["md"] == first["md"]
    assert again["html"] == first["html"]


def test_a_copy_of_the_results_elsewhere_renders_the_same(first, tmp_path):
    copy = tmp_path / "somewhere" / "else"
    shutil.copytree(FIXTURE, copy, ignore=shutil.ignore_patterns("*.py"))
    rendered = render(copy, tmp_path / "out")
    assert rendered["md"] == first["md"]
    assert str(copy) not in rendered["md"] and str(FIXTURE) not in first["md"]


def test_summary_json_records_the_results_folder_relative_to_the_report(tmp_path):
    results = tmp_path / "reports" / "data"
    shutil.copytree(FIXTURE, results, ignore=shutil.ignore_patterns("*.py"))
    rendered = render(results, tmp_path / "reports")
    summary = json.loads((rendered["out"] / "summary.json").read_text())
    assert summary["results"] == "data"  # reports/ and reports/data/ move together
    assert len(summary["digest"]) == 12 and summary["digest"] in rendered["md"]


def test_a_report_of_other_results_is_not_overwritten(tmp_path):
    out = tmp_path / "reports"
    render(FIXTURE, out)
    other = tmp_path / "other"
    shutil.copytree(FIXTURE, other, ignore=shutil.ignore_patterns("*.py"))
    before = (out / "README.md").read_text()
    with pytest.raises(ValueError, match="pass --force") as refused:
        render(other, out)
    assert str(FIXTURE.resolve()) in str(refused.value) and str(other.resolve()) in str(
        refused.value
    )
    assert (out / "README.md").read_text() == before
    render(FIXTURE, out)  # the same results: re-rendered without asking
    render(other, out, force=True)
    assert json.loads((out / "summary.json").read_text())["results"] == "../other"


def test_the_command_line_refuses_in_one_line_and_forces(tmp_path):
    out = tmp_path / "reports"
    render(FIXTURE, out)
    (tmp_path / "empty").mkdir()
    command = [sys.executable, "-m", "bench.report", "--results", str(tmp_path / "empty"),
               "--out", str(out)]  # fmt: skip
    refused = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m bench.report: error: --out")
    assert "empty" in lines[0] and str(FIXTURE.resolve()) in lines[0]
    forced = subprocess.run([*command, "--force"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert json.loads((out / "summary.json").read_text())["results"] == "../empty"
