"""The HTML report in a real browser: headless Chromium opens it from disk at a 1280 px wide window,
every image loads, every table is there and no table is wider than the page.

A copy of index.html, next to it in the rendered folder so that the relative image paths resolve,
gets one inline script that, once the page has loaded, writes what the browser sees (each image's
natural size, the tables and their rows, the style of the reported rows) into a <pre> element;
``--dump-dom`` prints the DOM after the virtual-time budget, and the test reads that element.
Skipped, with the reason, when Chromium is not installed (Debian: ``apt-get install chromium``;
another binary can be named in $VISBENCH_CHROMIUM).
"""

import html
import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from bench.report import render_report

FIXTURE = Path(__file__).parent / "fixtures" / "report"
TABLE_IDS = {"headline", "cost-paper", "cost-quick", "accuracy-quick-synthetic", "reported"}
TABLE_IDS |= {"ablation-stdeform-mode", "ablation-stdeform-n-points", "differences", "hybrids"}
TABLE_IDS |= {"lr-sweep", "study", "study-ratio", "scaling-time", "scaling-memory"}
TABLE_IDS |= {"scaling-points", "crossover", "flops-split", "flops-counters", "flop-counters"}
TABLE_IDS |= {"uncounted", "uncounted-list", "failures", "environments"}
WIDTH = 1280  # px: the window the report must fit
MUST_FIT = {"headline", "cost-paper", "cost-quick"}
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--run-all-compositor-stages-before-draw",
    "--virtual-time-budget=5000",
    f"--window-size={WIDTH},900",
]
CHECK_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var result = {
    title: document.title,
    images: Array.from(document.images).map(function (img) {
      return {src: img.getAttribute("src"), complete: img.complete,
              width: img.naturalWidth, height: img.naturalHeight};
    }),
    viewport: document.documentElement.clientWidth,
    tables: Array.from(document.querySelectorAll("table[id]")).map(function (table) {
      var box = table.getBoundingClientRect();
      return {id: table.id, rows: table.tBodies[0].rows.length,
              shown: box.width > 0, right: box.right, width: box.width,
              scrollWidth: table.scrollWidth};
    }),
    reportedStyles: Array.from(document.querySelectorAll("tr.reported td:first-child")).map(
      function (cell) { return getComputedStyle(cell).fontStyle; }),
  };
  var out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str:
    binary = os.environ.get("VISBENCH_CHROMIUM") or shutil.which("chromium")
    if not binary:
        pytest.skip(
            "chromium not installed: the browser check of reports/index.html needs it "
            "(Debian: apt-get install -y chromium, or set VISBENCH_CHROMIUM)"
        )
    return binary


def test_the_report_renders_in_headless_chromium(tmp_path):
    browser = chromium()
    out = tmp_path / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fixture's half-written line
        written = render_report(FIXTURE, out)
    page = written["index.html"].read_text(encoding="utf-8")
    assert page.count("</body>") == 1
    check = out / "browser_check.html"  # beside index.html: the same relative image paths
    check.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    profile = tmp_path / "profile"
    done = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", check.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no result in the dumped DOM (exit {done.returncode}): {done.stderr[-2000:]}"
    result = json.loads(html.unescape(found.group(1)))

    assert result["title"].startswith("visbench report")
    pngs = sorted(str(p.relative_to(out)) for p in (out / "figures").glob("*.png"))
    assert sorted(image["src"] for image in result["images"]) == pngs and len(pngs) == 5
    for image in result["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    tables = {table["id"]: table["rows"] for table in result["tables"]}
    assert set(tables) == TABLE_IDS
    assert all(rows > 0 for rows in tables.values()), tables
    assert result["reportedStyles"] == ["italic"] * 4

    assert result["viewport"] <= WIDTH
    shown = {table["id"]: table for table in result["tables"] if table["shown"]}
    assert set(shown) >= MUST_FIT  # folded (<details>) tables are not laid out; these are
    too_wide = {
        name: (table["width"], table["scrollWidth"], table["right"])
        for name, table in shown.items()
        if max(table["right"], table["scrollWidth"]) > result["viewport"]
    }
    assert not too_wide, f"wider than the {result['viewport']} px page: {too_wide}"
