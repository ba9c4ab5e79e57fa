"""Table (a): cost and accuracy per attention backend, in the poster's shape.

Cost columns (GMACs, peak memory, FPS) come from the flops/memory/fps measurements and are grouped
by the preset and device they were measured at; training columns (device-hours and epochs to the
target AP, totals, AP) come from the ablation and are grouped by its preset, device and data.
Columns of different presets are never merged. The poster's figures follow as reported rows.
"""

import pandas as pd

from bench.report import paper
from bench.report.cells import missing, number, percent, summary
from bench.report.methods import methods_of
from bench.report.provenance import env_ids, input_shape, measured_in, preset_key
from bench.report.table import Column, Table

COST_KINDS = ("flops", "inference")  # bench.measure's case kinds behind table (a)
COST_COLUMNS = [  # name, kind, metric, fvcore component
    ("GMACs model", "flops", "macs", "model"),
    ("GMACs encoder", "flops", "macs", "encoder"),
    ("peak memory (MiB)", "inference", "peak_memory", None),
    ("FPS", "inference", "fps", None),
]
TRAINING_COLUMNS = [  # name, metric, format
    ("device-h to target", "device_hours_to_target", number),
    ("epochs to target", "epochs_to_target", number),
    ("device-h total", "device_hours", number),
    ("epochs total", "epochs", number),
    ("AP (%)", "AP", percent),
]


def cost_records(results) -> pd.DataFrame:
    """fvcore totals, memory and FPS records (the other counters are in the FLOPs tables)."""
    frame = results.measurements
    frame = frame[frame["kind"].isin(COST_KINDS)]
    return frame[(frame["kind"] != "flops") | (frame["counter"] == "fvcore")]


def cost_groups(cost: pd.DataFrame) -> list[tuple]:
    """(preset, device) pairs of the cost measurements: paper first, cpu before cuda."""
    pairs = cost[["preset", "device"]].drop_duplicates().itertuples(index=False)
    return sorted(pairs, key=lambda p: (preset_key(p[0]), str(p[1])))


def training_groups(training: pd.DataFrame) -> list[tuple]:
    """(preset, device, data) triples of the ablation runs."""
    if training.empty:
        return []
    pairs = training[["preset", "env_device", "data"]].drop_duplicates().itertuples(index=False)
    return sorted(pairs, key=lambda p: (preset_key(p[0]), str(p[1]), str(p[2])))


def cost_columns(cost: pd.DataFrame, methods: pd.DataFrame):
    """The cost columns that have any record, each with its cells per method."""
    for preset, device in cost_groups(cost):
        group = cost[(cost["preset"] == preset) & (cost["device"] == device)]
        for name, kind, metric, component in COST_COLUMNS:
            records = group[(group["kind"] == kind) & (group["metric"] == metric)]
            if component is not None:
                records = records[records["component"] == component]
            if records.empty:
                continue
            cells = [summary(records[records["method"] == m]) for m in methods["method"]]
            yield Column(name, f"{preset} · {device}", numeric=True), cells


def training_columns(training: pd.DataFrame, methods: pd.DataFrame):
    """The training columns per (preset, device, data) group, with cells per method."""
    for preset, device, data in training_groups(training):
        group = training[
            (training["preset"] == preset)
            & (training["env_device"] == device)
            & (training["data"] == data)
        ]
        label = f"training · {preset} · {device} · {data}"
        for name, metric, fmt in TRAINING_COLUMNS:
            records = group[group["metric"] == metric]
            cells = [summary(records[records["method"] == m], fmt) for m in methods["method"]]
            yield Column(name, label, numeric=True), cells


def reported_rows(columns: list[Column], complexity: dict) -> list[list[str]]:
    """The poster's VisTR and Deformable VisTR rows, each figure in the column of that name."""
    cuda_fps = [i for i, c in enumerate(columns) if c.name == "FPS" and "cuda" in c.group]
    targets = {
        "fps": cuda_fps[:1],  # the poster's FPS are GPU figures: never under a CPU column
        "device_hours": [i for i, c in enumerate(columns) if c.name == "device-h total"][:1],
        "epochs": [i for i, c in enumerate(columns) if c.name == "epochs total"][:1],
        "AP": [i for i, c in enumerate(columns) if c.name == "AP (%)"][:1],
    }
    rows = []
    for entry in paper.METHODS:
        cells = [f"{entry['method']} ({paper.SETTING})", complexity.get(entry["backend"], "?")]
        cells += ["—"] * (len(columns) - 2)
        for field, indices in targets.items():
            for index in indices:
                cells[index] = entry[field]
        rows.append(cells)
    return rows


def pretraining_note(group: pd.DataFrame, pretraining: pd.DataFrame) -> str:
    """What the runs started from: the shared pretrained backbone, which their clocks exclude."""
    flags = group["pretrained_backbone"] if "pretrained_backbone" in group else pd.Series()
    if not flags.fillna(False).astype(bool).any():
        return "every run trained its backbone from scratch"
    if pretraining.empty:
        return "runs start from a shared pretrained backbone (its summary is not in the results)"
    done = "; ".join(
        f"{number(row.iterations)} iterations, {number(row.seconds / 3600)} device-h"
        for row in pretraining.itertuples()
    )
    return (
        "runs start from one shared backbone pretrained on per-pixel shape classes of the "
        f"training frames ({done}), not included in the runs' device-hours, as VisTR's "
        "ImageNet/COCO pretraining is not in its GPU-hours"
    )


def cost_notes(
    cost: pd.DataFrame, training: pd.DataFrame, complexity_from: str, pretraining: pd.DataFrame
) -> list[str]:
    """Where each column group comes from, in words."""
    notes = []
    for preset, device in cost_groups(cost):
        group = cost[(cost["preset"] == preset) & (cost["device"] == device)]
        shapes = ", ".join(sorted({input_shape(i) for i in group["input"]}))
        parts = [f"Columns “{preset} · {device}”: {preset} preset, input T×H×W = {shapes}, batch 1"]
        if (group["kind"] == "flops").any():
            parts.append("GMACs by fvcore (one multiply-accumulate = one MAC)")
        memory = sorted(set(group["measured_by"].dropna()))
        if memory:
            parts.append(f"peak memory by {', '.join(memory)}")
        notes.append("; ".join(parts) + ".")
    for preset, device, data in training_groups(training):
        group = training[
            (training["preset"] == preset)
            & (training["env_device"] == device)
            & (training["data"] == data)
        ]
        targets = sorted(set(group["target_AP"].dropna()))
        backbones = ", ".join(sorted(set(group["backbone"].dropna())))
        budgets = ", ".join(number(b) for b in sorted(set(group["budget_minutes"].dropna())))
        target = ", ".join(percent(t) for t in targets) or "not recorded"
        notes.append(
            f"Columns “training · {preset} · {device} · {data}”: ablation runs of the {preset} "
            f"preset on the {data} data set, backbone {backbones}, budget {budgets} min per run; "
            f"target AP {target} %; device-hours = wall-clock × devices, evaluation included; "
            f"{pretraining_note(group, pretraining)}."
        )
    notes.append(f"Complexity from {complexity_from}.")
    notes.append(
        "A dash gives the reason a value is missing: not run, OOM, timeout, error, or not reached "
        "(the run never reached the target AP). Several runs show as mean ± sd (n = runs)."
    )
    notes.append(
        f"Reported rows: figures published in the poster ({paper.SOURCE}), not measured here; "
        "its training time and epochs are totals; — in a reported row: the poster gives none."
    )
    return notes


def cost_accuracy_table(results, complexity: dict, complexity_from: str) -> Table:
    """Table (a): method, complexity, cost columns per preset/device, training columns, AP."""
    cost = cost_records(results)
    training = results.ablation
    methods = methods_of(cost, training)
    columns = [Column("method"), Column("complexity")]
    frame = pd.DataFrame(
        {
            "method": methods["method"],
            "complexity": [
                complexity.get(b, missing("unknown backend")) for b in methods["backend"]
            ],
        }
    )
    for column, cells in [*cost_columns(cost, methods), *training_columns(training, methods)]:
        columns.append(column)
        frame[f"{column.group}/{column.name}"] = cells
    reported = reported_rows(columns, complexity)
    frame = pd.concat([frame, pd.DataFrame(reported, columns=frame.columns)], ignore_index=True)
    kinds = ["measured"] * len(methods) + ["reported"] * len(reported)
    notes = [measured_in(env_ids(cost, training), results.environments)]
    notes += cost_notes(cost, training, complexity_from, results.pretraining)
    return Table.from_frame(
        "cost",
        "(a) Cost and accuracy per attention backend",
        frame,
        columns,
        kinds,
        notes=notes,
        short="(a) cost and accuracy",
        env_ids=env_ids(cost, training),
    )
