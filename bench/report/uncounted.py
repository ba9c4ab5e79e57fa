"""Operators no counter counted, folded into one line per method with an estimated share.

fvcore's model record lists the operators it had no formula for with their call counts
(``unsupported``); their arithmetic is missing from its GMACs. The fold shows, per method and
preset, how many operators and calls that is and a rough estimate of their share of the model's
count: the records hold call counts, not shapes, so each call is charged one multiply-accumulate
per element of a tensor the size of the input clip (batch 1, T × 3 × H × W) — the element-wise
operators listed (activations, softmax, interpolation) touch tensors of that order (feature maps
of tens of channels at a quarter of the resolution, mask logits of a few instances at full
resolution) and cost about one operation per element, so the estimate is an order of magnitude,
not a bound. Where a record lists each operator's output elements (``unsupported_elements``),
the estimate uses them instead. The full list is in a folded table.
"""

import pandas as pd

from bench.report.cells import plain
from bench.report.flops import flops_records, of_setting, settings
from bench.report.provenance import env_ids, short_device
from bench.report.table import Column, Table


def model_record(flops: pd.DataFrame, method, preset, device) -> pd.Series | None:
    records = of_setting(flops, method, preset, device)
    records = records[(records["counter"] == "fvcore") & (records["component"] == "model")]
    records = records[records["failure"].isna()]
    return None if records.empty else records.iloc[-1]


def clip_elements(inputs) -> int | None:
    """T × 3 × H × W of a model case's input (batch 1), or None when not recorded."""
    try:
        return int(inputs["T"]) * 3 * int(inputs["height"]) * int(inputs["width"])
    except (KeyError, TypeError, ValueError):
        return None


def share(record: pd.Series) -> tuple[float | None, str]:
    """(estimated uncounted MACs / counted MACs, how it was estimated)."""
    ops = record.get("unsupported") or {}
    elements = record.get("unsupported_elements")
    if isinstance(elements, dict) and elements:
        uncounted, how = float(sum(elements.values())), "output elements recorded"
    else:
        per_call = clip_elements(record.get("input"))
        if per_call is None:
            return None, "input size not recorded"
        uncounted, how = float(sum(ops.values()) * per_call), "calls × clip elements"
    total = float(record["value"]) * 1e9
    return (uncounted / total if total > 0 else None), how


def fold_table(results) -> Table:
    """One line per method and preset: operators, calls, estimated share of the model's MACs."""
    flops = flops_records(results)
    columns = [Column("method"), Column("preset · device"), Column("uncounted operators")]
    columns += [Column("calls", numeric=True), Column("estimated share", numeric=True)]
    columns += [Column("estimate")]
    rows = []
    for method, preset, device in settings(flops):
        record = model_record(flops, method, preset, device)
        if record is None:
            continue
        ops = record.get("unsupported")
        where = f"{preset} · {short_device(device)}"
        if not isinstance(ops, dict):
            rows.append(
                [method, where, "— (no list recorded)", "— (no list)", "— (no list)", "none"]
            )
            continue
        fraction, how = share(record)
        shown = f"— ({how})" if fraction is None else f"≈ {100 * fraction:.2g} %"
        rows.append([method, where, str(len(ops)), str(sum(ops.values())), shown, how])
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        "uncounted",
        "Operators no counter counted",
        frame,
        columns,
        notes=[
            "The operators fvcore had no formula for (its ignore list — shape, copy and integer "
            "ops, which cost no arithmetic — aside); FlopCounterMode does not count element-wise "
            "operators either. Estimated share (an order of magnitude: the records hold call "
            "counts, not shapes): each call charged one MAC per element of an input-clip-sized "
            "tensor (T × 3 × H × W), over fvcore's model GMACs. "
            "The full list per method is folded below."
        ],
        short="uncounted operators",
        env_ids=env_ids(flops),
        empty="No fvcore model counts.",
    )


def list_table(results) -> Table:
    """Every uncounted operator per method and preset with its calls (shown folded)."""
    flops = flops_records(results)
    columns = [Column("method"), Column("preset · device"), Column("operator")]
    columns += [Column("calls", numeric=True)]
    rows = []
    for method, preset, device in settings(flops):
        record = model_record(flops, method, preset, device)
        ops = record.get("unsupported") if record is not None else None
        if not isinstance(ops, dict):
            continue
        for op, calls in sorted(ops.items()):
            rows.append([method, f"{preset} · {short_device(device)}", op, plain(calls)])
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        "uncounted-list",
        "Uncounted operators, in full",
        frame,
        columns,
        short="uncounted operators in full",
        collapsed=True,
        env_ids=env_ids(flops),
        empty="fvcore counted every operator.",
    )
