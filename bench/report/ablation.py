"""Table (b): the ablation over K, the number of sampling points per query.

One row per deformable configuration (backbone, mode, K, data set), AP/AP50/AP75 over its runs;
the full-attention runs come first as separate, marked baseline rows; the poster's K = 16 and
K = 32 figures last, as reported rows.
"""

import pandas as pd

from bench.report import paper
from bench.report.cells import percent, summary
from bench.report.methods import methods_of
from bench.report.provenance import env_ids, measured_in
from bench.report.table import Column, Table

AP_METRICS = ["AP", "AP50", "AP75"]


def mode_label(backend: str, options: dict) -> str:
    """The mode column: "3d", "frames (window=3)", or "full (sdpa)" for a baseline."""
    if backend != "stdeform":
        return "full attention" + (f" ({options['impl']})" if "impl" in options else "")
    extra = {k: v for k, v in options.items() if k not in ("mode", "K") and v is not None}
    mode = str(options.get("mode", "?"))
    return mode + (f" ({', '.join(f'{k}={v}' for k, v in extra.items())})" if extra else "")


def k_label(backend: str, options: dict) -> str:
    return str(options["K"]) if backend == "stdeform" and "K" in options else "all T·H·W keys"


def configurations(training: pd.DataFrame) -> list[tuple]:
    """(method, backbone, data, preset) per configuration: full baselines, then stdeform by K."""
    baselines = training[training["backend"] == "full"]
    deformable = training[training["backend"] == "stdeform"]
    ordered = []
    for frame in (baselines, deformable):
        methods = methods_of(frame)["method"].tolist()
        combos = frame[["method", "backbone", "data", "preset"]].drop_duplicates()
        ordered += sorted(
            combos.itertuples(index=False),
            key=lambda c: (methods.index(c[0]), str(c[1]), str(c[2]), str(c[3])),
        )
    return ordered


def k_ablation_table(results) -> Table:
    """Table (b): backbone, mode, K, data, runs, AP, AP50, AP75."""
    training = results.ablation
    columns = [Column("backbone"), Column("mode"), Column("K", numeric=True)]
    columns += [Column("preset · data"), Column("seeds")]
    columns += [Column(f"{m} (%)", numeric=True) for m in AP_METRICS]
    rows, kinds = [], []
    for method, backbone, data, preset in configurations(training):
        runs = training[
            (training["method"] == method)
            & (training["backbone"] == backbone)
            & (training["data"] == data)
            & (training["preset"] == preset)
        ]
        first = runs.iloc[0]
        seeds = ", ".join(str(s) for s in sorted(runs["seed"].dropna().unique()))
        cells = [str(backbone), mode_label(first["backend"], first["options"])]
        cells += [k_label(first["backend"], first["options"]), f"{preset} · {data}", seeds or "?"]
        cells += [summary(runs[runs["metric"] == m], percent) for m in AP_METRICS]
        rows.append(cells)
        kinds.append("baseline" if first["backend"] == "full" else "measured")
    for entry in paper.K_ABLATION:
        rows.append(
            [entry["backbone"], "—", str(entry["K"]), "YouTube-VIS 2019", "—", entry["AP"]]
            + ["—"] * (len(AP_METRICS) - 1)
        )
        kinds.append("reported")
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    used = training[training["backend"].isin(["full", "stdeform"])]
    notes = [
        measured_in(env_ids(used), results.environments),
        "AP on the validation split as recorded for each run (YouTube-VIS AP, in %). "
        "Baseline rows: full attention, every query attends to all T·H·W keys.",
        f"Reported rows: the poster's K ablation ({paper.SOURCE}), not measured here.",
    ]
    return Table.from_frame(
        "k-ablation",
        "(b) Ablation over K (sampling points per query)",
        frame,
        columns,
        kinds,
        notes=notes,
        short="(b) K ablation",
        env_ids=env_ids(used),
    )
