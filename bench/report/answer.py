"""The headline as a table: one compact row per method, each cell its number over its ratio to
dense attention, each column's source in the legend (bench.report.headline computes the numbers).
"""

import pandas as pd

from bench.report.headline import COLUMNS, Headline
from bench.report.noise import CHANGE_RULE
from bench.report.provenance import short_device
from bench.report.table import Column, Table
from bench.stats import METHOD


def column_groups(headline: Headline) -> dict[str, str]:
    """The heading over each column: preset, device or data it is measured at."""
    context = headline.context
    preset, devices = context["cost_preset"] or "no preset", context["devices"]
    training_preset, data = context["training"]
    training = f"{training_preset} · {data}" if training_preset else "no training runs"
    device = lambda name: short_device(name) if name else "not measured"
    return {
        "encoder_gmacs": f"{preset} preset",
        "fps": f"{preset} · {device(devices['inference'])}",
        "peak_memory": f"{preset} · {device(devices['inference'])}",
        "time_exponent": f"layer · {device(devices['scaling'])}",
        "AP": training,
        "device_hours_b": f"{training_preset or 'no training'} · {device(context['step_device'])}",
    }


def headline_table(headline: Headline) -> Table:
    """Table 1: method, then per column the number and, below it, "×ratio" to dense."""
    groups = column_groups(headline)
    columns = [Column("method")]
    columns += [Column(c.title, groups[c.key], numeric=True) for c in COLUMNS]
    rows, kinds = [], []
    for method in headline.methods["method"]:
        cells = [method]
        for column in COLUMNS:
            quantity = headline.cells[method][column.key]
            below = "reference" if method == headline.reference else quantity.ratio_text(True)
            below = below if quantity.value is not None else ""
            cells.append(quantity.text(column.fmt) + (f"\n{below}" if below else ""))
        rows.append(cells)
        kinds.append("baseline" if method == headline.reference else "measured")
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    legend = [f"{c.title}: {headline.legend[c.key]}." for c in COLUMNS]
    reference = headline.reference or "full (sdpa), which is not in these results"
    notes = [
        f"Under each number: its ratio to dense attention, {reference} (×1 = the same). "
        f"Counts and exponents: a plain ratio. FPS and memory: {CHANGE_RULE} (A: dense); "
        "otherwise “within noise”. "
        "Device-hours: the geometric-mean ratio over seeds paired with the dense runs, with its "
        f"{METHOD} on the log scale (n.d.: “not distinguishable at this scale”, the interval "
        "contains 1). AP: the geometric-mean ratio, then Δ, the paired difference in AP points "
        f"with its {METHOD}, which gives the verdict (n.d.: the interval contains 0).",
        "A dash gives the reason a value is missing; “n” counts seeds (AP, device-hours) or "
        "fitted points (exponents).",
    ]
    return Table.from_frame(
        "headline",
        "The answer: cost and accuracy per method, against dense attention",
        frame,
        columns,
        kinds,
        notes=notes,
        legend=legend,
        short="headline",
        empty="No measurements or training runs to compare.",
    )


def summary_rows(headline: Headline) -> list[dict]:
    """The headline for summary.json: per method its identity and cells as numbers."""
    rows = []
    for method, backend, options, decoder in headline.methods.itertuples(index=False):
        cells = {c.key: headline.cells[method][c.key].to_json() for c in COLUMNS}
        rows.append(
            {
                "method": method,
                "backend": backend,
                "options": options,
                "decoder": decoder if decoder else None,
                "reference": method == headline.reference,
                "cells": cells,
            }
        )
    return rows
