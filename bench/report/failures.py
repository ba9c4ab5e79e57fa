"""Every failed or value-less record in one list, with its whole message, and every run that
the wall-clock cap cut.

Table cells shorten a failure to a word or a line ("— (OOM)"); this table keeps the full status
and the harness's detail (its ``message`` or ``reason`` field), one row per case and failure. A
run cut by the safety cap (run_status "budget") has usable-looking records but is left out of
every mean; it gets a row here too.
"""

import pandas as pd

from bench.report.cells import plain
from bench.report.load import UNSET
from bench.report.methods import methods_of
from bench.report.provenance import env_ids, short_device
from bench.report.table import Column, Table

MAX_DETAIL = 300


def what(case: pd.Series) -> str:
    """A short description of the case: its kind and what distinguishes it."""
    kind = str(case["kind"])
    if kind in ("ablation", "lr_sweep", "study"):
        return f"{kind} run {case.get('run', '?')}"
    if kind == "scaling":
        size = " ".join(f"{name}={plain(case.get(name))}" for name in ("T", "H", "W"))
        return f"scaling, {case.get('sweep')} sweep, {size}"
    return kind


def detail(case: pd.DataFrame) -> str:
    """The harness's message for the failure: its last line (a traceback's last line says most)."""
    for field in ("message", "reason"):
        if field in case:
            texts = [t for t in case[field].dropna() if isinstance(t, str) and t.strip()]
            if texts:
                lines = [line for line in texts[-1].strip().splitlines() if line.strip()]
                text = lines[-1].strip()
                return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
    return "none recorded"


def failures_table(results) -> Table:
    """One row per (case, failure): what, method, preset · device, metrics, status, detail."""
    records = pd.concat([results.measurements, results.training], ignore_index=True)
    cut = (records["run_status"] == "budget") & (records["metric"] == "AP")
    records.loc[cut, "failure"] = "budget: cut by the wall-clock cap, left out of every mean"
    records.loc[cut, "message"] = [
        f"stopped by the {plain(m)}-minute safety cap before its last iteration"
        for m in records.loc[cut, "budget_minutes"]
    ]
    failed = records[records["failure"].notna()]
    columns = [Column("what"), Column("method"), Column("preset · device"), Column("metrics")]
    columns += [Column("status or reason"), Column("detail")]
    methods = methods_of(failed)["method"].tolist()
    rows = []
    for (_, failure), case in failed.groupby(["case_id", "failure"], sort=False):
        first = case.iloc[0]
        device = short_device(first["device_name"]) if first["device_name"] != UNSET else "?"
        preset = first["preset"] if first["preset"] != UNSET else "no preset"
        metrics = ", ".join(
            dict.fromkeys(
                f"{m} ({c})" if isinstance(c, str) else str(m)
                for m, c in zip(case["metric"], case["component"], strict=True)
            )
        )
        cells = [what(first), first["method"], f"{preset} · {device}", metrics, failure]
        text = detail(case)
        cells.append("as the status" if text == failure else text)
        rows.append(((methods.index(first["method"]), str(first["kind"])), cells))
    rows = [cells for _, cells in sorted(rows, key=lambda r: r[0])]
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        "failures",
        "Failed and missing measurements",
        frame,
        columns,
        notes=[
            "Cases that were never run have no record; the tables above show them as “— (not run)”."
        ],
        short="failures",
        env_ids=env_ids(failed),
        empty="No failed measurements.",
    )
