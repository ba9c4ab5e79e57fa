"""Where the compute goes: GMACs per model component, by each counter.

Two tables: the split of fvcore's count over backbone / encoder / decoder / heads, and the same
components counted three ways side by side. fvcore counts one multiply-accumulate as one flop;
torch's FlopCounterMode counts two FLOPs per MAC and the harness stores its values already
halved; "analytic" is the attention backends' own formula. Which counters are independent of
which is bench.report.counters's table; what no counter counted, bench.report.uncounted's.
"""

import pandas as pd

from bench.report.cells import missing, number, summary
from bench.report.methods import methods_of
from bench.report.provenance import env_ids, input_shape, measured_in, preset_key, short_device
from bench.report.table import Column, Table

COMPONENTS = ["model", "backbone", "encoder", "encoder_layer", "encoder_attention"]
COMPONENTS += ["decoder", "heads"]
COUNTERS = [("fvcore", "fvcore"), ("flop_counter", "FlopCounterMode"), ("analytic", "analytic")]


def flops_records(results) -> pd.DataFrame:
    frame = results.measurements
    return frame[(frame["kind"] == "flops") & (frame["metric"] == "macs")]


def share_of_model(records: pd.DataFrame, component: str) -> str:
    """A component's fvcore count as a percentage of the whole model's fvcore count."""
    fvcore = records[(records["counter"] == "fvcore") & records["failure"].isna()]
    part = fvcore.loc[fvcore["component"] == component, "value"]
    whole = fvcore.loc[fvcore["component"] == "model", "value"]
    if part.empty or whole.empty or whole.iloc[-1] <= 0:
        return missing("needs fvcore counts of it and of the model")
    return f"{100 * part.iloc[-1] / whole.iloc[-1]:.1f}"


def settings(flops: pd.DataFrame) -> list[tuple]:
    """(method, preset, device name) combinations in the report's order."""
    methods = methods_of(flops)["method"].tolist()
    combos = flops[["method", "preset", "device_name"]].drop_duplicates().itertuples(index=False)
    return sorted(combos, key=lambda c: (preset_key(c[1]), methods.index(c[0]), str(c[2])))


def of_setting(flops: pd.DataFrame, method, preset, device) -> pd.DataFrame:
    return flops[
        (flops["method"] == method) & (flops["preset"] == preset) & (flops["device_name"] == device)
    ]


def flops_table(results) -> Table:
    """Per method and setting: one row per component, one column per counter, and the share."""
    flops = flops_records(results)
    columns = [Column("method"), Column("preset · device"), Column("input T×H×W")]
    columns += [Column("component")]
    columns += [Column(label, "GMACs by counter", numeric=True) for _, label in COUNTERS]
    columns += [Column("% of model (fvcore)", numeric=True)]
    rows = []
    for method, preset, device in settings(flops):
        records = of_setting(flops, method, preset, device)
        shape = ", ".join(sorted({input_shape(i) for i in records["input"]}))
        for component in COMPONENTS:
            of_component = records[records["component"] == component]
            cells = [method, f"{preset} · {short_device(device)}", shape, component]
            cells += [
                summary(of_component[of_component["counter"] == counter], number)
                for counter, _ in COUNTERS
            ]
            cells.append(share_of_model(records, component))
            rows.append(cells)
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    notes = [
        measured_in(env_ids(flops), results.environments),
        "Components: model = everything; encoder_layer is one of the encoder's layers and "
        "encoder_attention the attention in all encoder layers (both inside encoder). "
        "fvcore: one multiply-accumulate = one MAC; FlopCounterMode: FLOPs / 2; "
        "analytic: the backend's own formula (attention and encoder layers only).",
    ]
    return Table.from_frame(
        "flops-counters",
        "FLOPs per component: fvcore, FlopCounterMode and analytic side by side",
        frame,
        columns,
        notes=notes,
        short="FLOPs by counter",
        collapsed=True,
        env_ids=env_ids(flops),
        empty="No FLOP counts recorded.",
    )


SPLIT = [  # component, column name
    ("backbone", "backbone"),
    ("encoder", "encoder"),
    ("encoder_attention", "of which attention"),
    ("decoder", "decoder"),
    ("heads", "heads"),
    ("model", "model"),
]


def split_cell(records: pd.DataFrame, component: str) -> str:
    """fvcore GMACs of a component with its share of the model, e.g. "468 (62.9 %)"."""
    fvcore = records[(records["counter"] == "fvcore") & (records["component"] == component)]
    text = summary(fvcore, number)
    share = share_of_model(records, component)
    return text if text.startswith("—") or share.startswith("—") else f"{text} ({share} %)"


def split_table(results) -> Table:
    """Where the compute goes: one row per method and setting, fvcore GMACs per component."""
    flops = flops_records(results)
    columns = [Column("method"), Column("preset · device"), Column("input T×H×W")]
    columns += [Column(name, "fvcore GMACs (% of model)", numeric=True) for _, name in SPLIT]
    rows = []
    for method, preset, device in settings(flops):
        records = of_setting(flops, method, preset, device)
        shape = ", ".join(sorted({input_shape(i) for i in records["input"]}))
        cells = [method, f"{preset} · {short_device(device)}", shape]
        rows.append(cells + [split_cell(records, component) for component, _ in SPLIT])
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    notes = [
        measured_in(env_ids(flops), results.environments),
        "fvcore multiply-accumulates per clip (batch 1); “of which attention” is the attention "
        "inside all encoder layers, part of the encoder. The other counters are in the folded "
        "table below.",
    ]
    return Table.from_frame(
        "flops-split",
        "Where the compute goes: GMACs per model component",
        frame,
        columns,
        notes=notes,
        short="compute per component",
        env_ids=env_ids(flops),
        empty="No FLOP counts recorded.",
    )
