"""Compare two results folders (two commits, two machines, two settings): B against A.

Records match when they have the same case_id, metric, component and counter; records left over
match when their cases agree in every field but the environment's (the case's device and threads,
which differ between machines), provided that leaves one record on each side. Per match: A's and
B's value, the ratio B/A, each side's spread (IQR / median of its timing repeats; 0 for a quantity
measured once) and a verdict by the noise rule (bench.report.noise.changed): "no change" unless
|log(B/A)| exceeds the sum of both spreads and 5%; otherwise what changed, in the metric's words
(faster / slower, more / less memory, ...). A training run is one seed, so its metrics get no
per-record verdict; the training table compares each configuration (bench.report.runs.GROUP) over
seeds instead: B − A in AP points, paired by the seeds both sides ran
(bench.stats.paired_difference), with its interval and verdict ("not distinguishable" when the
interval contains 0), and the runs that reached the target on each side. Records of one side only are listed.
The comparison is written as README.md and index.html (bench.report.page) with comparison.json.
"""

import json
from pathlib import Path

import pandas as pd

from bench.report import runs
from bench.report.ablation import ap_by_seed
from bench.report.cells import estimate, missing, number, plain
from bench.report.environments import describe
from bench.report.load import load_results
from bench.report.noise import CHANGE_RULE, changed, spread
from bench.report.page import Page, Section, write_page
from bench.report.provenance import short_device
from bench.report.quantity import signed_points
from bench.report.summary import check_overwrite, write_comparison
from bench.report.table import Column, Table
from bench.stats import METHOD, mean_interval, paired_difference
from bench.stats import verdict as interval_verdict

ENVIRONMENT_FIELDS = ("device", "threads")  # case fields that name the machine, not the case
KEY = ["case_id", "metric", "component", "counter"]
WORDS = {  # metric -> (word when B is higher, word when B is lower)
    "fps": ("faster", "slower"),
    "time": ("slower", "faster"),
    "step_time": ("slower", "faster"),
    "eval_video_time": ("slower", "faster"),
    "peak_memory": ("more memory", "less memory"),
    "macs": ("more MACs", "fewer MACs"),
}
NO_CHANGE = "no change"
TRAINING_KINDS = ("ablation", "lr_sweep", "study")
ONE_SEED = "one seed: see the training table"


def case_key(case: dict) -> str:
    """A case without its environment fields, canonical."""
    kept = {k: v for k, v in (case or {}).items() if k not in ENVIRONMENT_FIELDS}
    return json.dumps(kept, sort_keys=True, default=str)


def records_of(folder: Path) -> tuple[pd.DataFrame, object]:
    """The latest record per case and metric of a folder, with its loose key and spread."""
    results = load_results(folder)
    frame = pd.concat([results.measurements, results.training], ignore_index=True)
    if frame.empty:
        return frame.assign(loose=[], spread=[]), results
    frame = frame.assign(
        loose=[
            json.dumps([case_key(row["case"]), row["metric"], row["component"], row["counter"]],
                       default=str)
            for _, row in frame.iterrows()
        ],
        spread=[spread(i, m) for i, m in zip(frame["iqr_s"], frame["median_s"], strict=True)],
    )  # fmt: skip
    return frame, results


def _empty(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def match(a: pd.DataFrame, b: pd.DataFrame) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Index pairs (A, B) that match, and the indices of A and of B left unmatched."""
    pairs = []
    b_by_key = {tuple(r): i for i, r in zip(b.index, b[KEY].astype(str).values, strict=True)}
    for i, row in zip(a.index, a[KEY].astype(str).values, strict=True):
        j = b_by_key.get(tuple(row))
        if j is not None:
            pairs.append((i, j))
    left_a = a.drop(index=[i for i, _ in pairs])
    left_b = b.drop(index=[j for _, j in pairs])
    counts_a, counts_b = left_a["loose"].value_counts(), left_b["loose"].value_counts()
    b_loose = {key: i for i, key in zip(left_b.index, left_b["loose"], strict=True)}
    for i, key in zip(left_a.index, left_a["loose"], strict=True):
        if counts_a.get(key) == 1 and counts_b.get(key) == 1:
            pairs.append((i, b_loose[key]))
    matched_a, matched_b = {i for i, _ in pairs}, {j for _, j in pairs}
    return (
        pairs,
        [i for i in a.index if i not in matched_a],
        [j for j in b.index if j not in matched_b],
    )


def verdict(metric: str, a, b, spread_a, spread_b, kind: str = "") -> str:
    """The noise rule's verdict of B against A, in the metric's words; none for one training run."""
    if kind in TRAINING_KINDS and not (_empty(a) or _empty(b)):
        return ONE_SEED
    if _empty(a) or _empty(b):
        return "no value on " + (
            "both sides" if _empty(a) and _empty(b) else "A" if _empty(a) else "B"
        )
    if not changed(float(a), float(b), spread_a, spread_b):
        return NO_CHANGE
    higher, lower = WORDS.get(metric, ("higher", "lower"))
    return higher if b > a else lower


def what(row: pd.Series) -> str:
    """A short description of a record's case."""
    kind = str(row["kind"])
    if kind == "scaling":
        size = "×".join(plain(row.get(n)) for n in ("T", "H", "W"))
        return f"scaling {row.get('sweep')} {size}"
    if kind in ("ablation", "lr_sweep", "study"):
        return f"{kind} run {row.get('run')}"
    parts = [kind, str(row.get("preset"))]
    if isinstance(row.get("component"), str):
        parts.append(f"{row['component']} ({row['counter']})")
    return " ".join(parts)


def _failed(row: pd.Series) -> bool:
    """A record of a failure (OOM, timeout, error, not reached); None or NaN when it has a value."""
    return not _empty(row["failure"])


def value_cell(row: pd.Series) -> str:
    if _failed(row):
        return f"— ({row['failure']})"
    return number(float(row["value"]))


def spread_cell(value) -> str:
    return "0" if value is None or _empty(value) else f"{value:.2f}"


def compared_table(a: pd.DataFrame, b: pd.DataFrame, pairs) -> Table:
    columns = [Column("what"), Column("method"), Column("metric"), Column("device A → B")]
    columns += [Column("A", numeric=True), Column("B", numeric=True), Column("B/A", numeric=True)]
    columns += [Column("spread A", numeric=True), Column("spread B", numeric=True)]
    columns += [Column("verdict")]
    rows = []
    for i, j in pairs:
        ra, rb = a.loc[i], b.loc[j]
        ok = not _failed(ra) and not _failed(rb) and float(ra["value"]) > 0
        ratio = f"×{number(float(rb['value']) / float(ra['value']))}" if ok else "— (no ratio)"
        devices = f"{short_device(ra['device_name'])} → {short_device(rb['device_name'])}"
        if ra["device_name"] == rb["device_name"]:
            devices = short_device(ra["device_name"])
        value_a = None if _failed(ra) else ra["value"]
        value_b = None if _failed(rb) else rb["value"]
        rows.append(
            [what(ra), ra["method"], ra["metric"], devices, value_cell(ra), value_cell(rb), ratio,
             spread_cell(ra["spread"]), spread_cell(rb["spread"]),
             verdict(ra["metric"], value_a, value_b, ra["spread"], rb["spread"], ra["kind"])]
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        "compared",
        "Measured in both",
        frame,
        columns,
        notes=[CHANGE_RULE + ". Spread: IQR / median of the timing repeats."],
        short="compared",
        empty="No case was measured in both folders.",
    )


def configurations(results) -> dict[tuple, pd.DataFrame]:
    """Training runs by configuration (runs.GROUP, the rate to 3 digits: a swept 2e-4 x 3 is the
    preset's 6e-4), over every training kind."""
    table = runs.run_table(results.training)
    if table.empty:
        return {}
    found = table.groupby(runs.GROUP, sort=True, dropna=False)
    return {(*(str(v) for v in key[:-1]), rate(str(key[-1]))): group for key, group in found}


def rate(lr: str) -> str:
    """A learning rate as the lr sweep's table shows it (3 significant digits)."""
    try:
        return f"{float(lr):.3g}"
    except ValueError:
        return lr


def points(value: float) -> str:
    return f"{value:.1f}"


def training_table(results_a, results_b) -> Table:
    """Per configuration both sides trained: AP over seeds, B − A paired by seed, its verdict."""
    columns = [Column("kind"), Column("configuration"), Column("preset · data"), Column("lr")]
    columns += [Column("AP A (%)", numeric=True), Column("AP B (%)", numeric=True)]
    columns += [Column("B − A (points)", numeric=True), Column("seeds paired", numeric=True)]
    columns += [Column("verdict"), Column("reached target A → B", numeric=True)]
    a, b = configurations(results_a), configurations(results_b)
    rows = []
    for key in sorted(set(a) & set(b)):
        kind, preset, data, method, lr = key
        ap_a, ap_b = ap_by_seed(a[key], method), ap_by_seed(b[key], method)
        difference = paired_difference(ap_a, ap_b)
        reached = [runs.censored(side[key], "iterations_to_target").label for side in (a, b)]
        rows.append(
            [kind, method, f"{preset} · {data}", lr,
             estimate(mean_interval(ap_a.values()), points, "no finished run"),
             estimate(mean_interval(ap_b.values()), points, "no finished run"),
             signed_points(difference) if difference else missing("no seed on both sides"),
             str(difference.n if difference else 0), interval_verdict(difference),
             " → ".join(r.removeprefix("reached in ") for r in reached)]
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        "training",
        "Training over seeds",
        frame,
        columns,
        notes=[
            f"AP: final validation AP, mean ± {METHOD} over usable runs (seeds). B − A: paired "
            'by seed over the seeds both sides ran; verdict "not distinguishable at this scale" '
            "when its interval contains 0 (a single paired seed has no interval)."
        ],
        short="training",
        empty="No training configuration was run in both folders.",
    )


def only_table(frame: pd.DataFrame, indices: list[int], side: str) -> Table:
    columns = [Column("what"), Column("method"), Column("metric"), Column("value", numeric=True)]
    rows = [[what(frame.loc[i]), frame.loc[i, "method"], frame.loc[i, "metric"],
             value_cell(frame.loc[i])] for i in indices]  # fmt: skip
    table = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        f"only-{side.lower()}",
        f"Only in {side}",
        table,
        columns,
        short=f"only in {side}",
        empty=f"Every case of {side} was matched.",
    )


def compare_results(folder_a, folder_b, out_dir, note: str | None = None, force: bool = False):
    """Write the comparison of B against A into out_dir; returns {name: path}."""
    folder_a, folder_b, out_dir = Path(folder_a), Path(folder_b), Path(out_dir)
    for folder in (folder_a, folder_b):
        if not folder.is_dir():
            raise FileNotFoundError(f"results directory {folder} does not exist")
    check_overwrite([folder_a, folder_b], out_dir, force)
    a, results_a = records_of(folder_a)
    b, results_b = records_of(folder_b)
    pairs, only_a, only_b = (
        match(a, b) if not (a.empty or b.empty) else ([], list(a.index), list(b.index))
    )
    compared = compared_table(a, b, pairs)
    verdicts = pd.Series([row.cells[-1] for row in compared.rows], dtype=object)
    counts = ", ".join(f"{n} {word}" for word, n in verdicts.value_counts().items())
    section = Section(
        "comparison",
        "B against A",
        [
            compared,
            training_table(results_a, results_b),
            only_table(a, only_a, "A"),
            only_table(b, only_b, "B"),
        ],
        [f"{len(pairs)} matched records: {counts or 'none'}."],
    )
    page = Page(
        "visbench comparison: B against A",
        [f"A: {folder_a} (files hash to {results_a.digest})",
         f"B: {folder_b} (files hash to {results_b.digest})"],
        [("A measured on", [describe(e) for _, e in results_a.environments.iterrows()]),
         ("B measured on", [describe(e) for _, e in results_b.environments.iterrows()])],
        [section],
        note,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    written = write_page(page, out_dir)
    written["comparison.json"] = write_comparison(
        out_dir, [folder_a, folder_b], [results_a.digest, results_b.digest]
    )
    return written
