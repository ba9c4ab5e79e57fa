"""Cost per preset: one table per preset, one row per method, measured values only.

Columns: the backend's complexity (attention.registry), fvcore's GMACs of the encoder and of the
whole model, then per device (accelerators first) FPS and peak memory of batch-1 inference and
the training-step and evaluation-pass times (bench.measure's inference and step cases) — each
only where something was measured at that preset and device. The rows are every method measured
at the preset and every method of the ablation, so a method the ablation trained but nobody
measured shows "— (not run)" rather than disappearing. The poster's figures are in their own
table (bench.report.paper), never here.
"""

import pandas as pd

from bench.report.cells import number, plain, summary
from bench.report.load import UNSET
from bench.report.methods import method_complexity, methods_of, reference_label
from bench.report.noise import MARK, point_noisy, spread
from bench.report.provenance import (
    env_ids,
    input_shape,
    measured_in,
    ordered_devices,
    preset_key,
    short_device,
)
from bench.report.table import Column, Table

COST_KINDS = ("flops", "inference", "step")
MACS = [("GMACs encoder", "encoder"), ("GMACs model", "model")]
PER_DEVICE = [  # column, kind, metric
    ("FPS", "inference", "fps"),
    ("peak memory (MiB)", "inference", "peak_memory"),
    ("step (s)", "step", "step_time"),
    ("eval (s/video)", "step", "eval_video_time"),
]
TIMED = {"fps", "step_time", "eval_video_time"}


def cost_records(results) -> pd.DataFrame:
    frame = results.measurements
    return frame[frame["kind"].isin(COST_KINDS)]


def timed_cell(records: pd.DataFrame, metric: str) -> str:
    """The summary of a cell's records, marked when its timing repeats are noisy."""
    text = summary(records, number)
    if metric not in TIMED:
        return text
    ok = records[records["failure"].isna()]
    spreads = [spread(i, m) for i, m in zip(ok["iqr_s"], ok["median_s"], strict=True)]
    return f"{text} {MARK}" if any(point_noisy(s) for s in spreads) else text


def macs_cell(flops: pd.DataFrame, method: str, component: str) -> str:
    records = flops[(flops["method"] == method) & (flops["component"] == component)]
    ok = records[records["failure"].isna()]
    if not ok.empty:  # counts agree across devices: show the first device's
        records = ok[ok["device_name"] == ordered_devices(ok)[0]]
    return summary(records, number)


def preset_table(results, preset: str, trained: pd.DataFrame) -> Table:
    """The cost table of one preset."""
    cost = cost_records(results)
    at_preset = cost[cost["preset"] == preset]
    methods = methods_of(at_preset, trained)
    flops = at_preset[(at_preset["kind"] == "flops") & (at_preset["counter"] == "fvcore")]
    timed = at_preset[at_preset["kind"] != "flops"]
    columns = [Column("method"), Column("complexity")]
    columns += [Column(name, "fvcore", numeric=True) for name, _ in MACS]
    present = []
    for device in ordered_devices(timed):
        on_device = timed[timed["device_name"] == device]
        for name, kind, metric in PER_DEVICE:
            if ((on_device["kind"] == kind) & (on_device["metric"] == metric)).any():
                present.append((device, metric))
                columns.append(Column(name, short_device(device), numeric=True))
    rows, kinds = [], []
    reference = reference_label(methods)
    for method, backend, _, decoder in methods.itertuples(index=False):
        cells = [method, method_complexity(backend, decoder)]
        cells += [macs_cell(flops, method, component) for _, component in MACS]
        for device, metric in present:
            records = timed[
                (timed["method"] == method)
                & (timed["device_name"] == device)
                & (timed["metric"] == metric)
            ]
            cells.append(timed_cell(records, metric))
        rows.append(cells)
        kinds.append("baseline" if method == reference else "measured")
    frame = pd.DataFrame(rows, columns=[f"{c.group}/{c.name}" for c in columns])
    return Table.from_frame(
        f"cost-{preset}",
        f"Cost at the {preset} preset",
        frame,
        columns,
        kinds,
        notes=notes(at_preset, preset, present, results),
        short=f"cost ({preset})",
        env_ids=env_ids(at_preset),
        empty=f"Nothing measured at the {preset} preset.",
    )


def notes(records: pd.DataFrame, preset: str, present, results) -> list[str]:
    """Where the columns come from, in words."""
    shapes = ", ".join(sorted({input_shape(i) for i in records["input"]})) or "?"
    lines = [measured_in(env_ids(records), results.environments)]
    lines.append(
        f"{preset} preset, input T×H×W = {shapes}, batch 1. GMACs: fvcore's multiply-accumulates "
        "(one MAC each); the other counters are in the FLOPs section. FPS: T × clips per second, "
        "median of the timed passes after warm-up. Peak memory: of the first pass, by "
        + (", ".join(sorted(set(records["measured_by"].dropna()))) or "the harness")
        + "."
    )
    step = records[(records["kind"] == "step") & records["failure"].isna()]
    if not step.empty:
        batch = ", ".join(sorted({plain(b) for b in step["batch_size"].dropna()}))
        frames = ", ".join(sorted({plain(f) for f in step["frames"].dropna()}))
        lines.append(
            f"step: one training step (forward, losses, backward, AdamW) at batch {batch}; eval: "
            f"one evaluation pass (inference and postprocess) over a {frames}-frame video; both "
            "median of the timed repeats, measured in isolation. They turn iterations and "
            "evaluations into device-hours (b)."
        )
    else:
        lines.append(
            f"Training-step times were not measured at the {preset} preset: python -m "
            f"bench.measure --metrics step --step-presets {preset} measures them."
        )
    lines.append(
        f"{MARK}: the timing repeats spread by more than 25% of their median (IQR / median). "
        "Complexity: each backend's own statement (attention.registry). A dash gives the reason "
        "a value is missing; “not run”: no record of the case."
    )
    return lines


def cost_tables(results) -> list[Table]:
    """One table per preset with cost records (the paper preset first)."""
    cost = cost_records(results)
    trained = results.ablation
    presets = sorted(set(cost["preset"]) - {None, UNSET}, key=preset_key)
    if not presets:
        empty = Table(
            "cost",
            "Cost",
            [Column("method")],
            [],
            empty="No cost measurements (measurements.jsonl): python -m bench.measure produces "
            "them.",
        )
        return [empty]
    return [preset_table(results, preset, trained) for preset in presets]
