"""The measured points behind the scaling fits: one row per case, time and memory side by side,
each time with its spread (IQR / median of the repeats) and marked when noisy.
"""

import pandas as pd

from bench.report.cells import number, plain, summary
from bench.report.methods import methods_of
from bench.report.noise import MARK, POINT_RULE, point_noisy, spread
from bench.report.provenance import env_ids, measured_in, ordered_devices, short_device
from bench.report.scaling import scaling_records
from bench.report.table import Column, Table


def time_cell(records: pd.DataFrame) -> str:
    text = summary(records, lambda s: number(1000 * s))
    ok = records[records["failure"].isna()]
    if ok.empty:
        return text
    value = spread(ok["iqr_s"].iloc[-1], ok["value"].iloc[-1])
    if value is None:
        return text
    return f"{text} ({value:.2f}{' ' + MARK if point_noisy(value) else ''})"


def points_table(results) -> Table:
    records = scaling_records(results)
    columns = [Column("method"), Column("device"), Column("sweep")]
    columns += [Column(name, numeric=True) for name in ("T", "H", "W", "tokens")]
    columns += [
        Column("time (ms) (spread)", numeric=True),
        Column("peak memory (MiB)", numeric=True),
    ]
    methods = methods_of(records)["method"].tolist()
    devices = ordered_devices(records)
    rows = []
    for _, case in records.groupby("case_id", sort=False):
        first = case.iloc[0]
        cells = [first["method"], short_device(first["device_name"]), first["sweep"]]
        cells += [plain(first[name]) for name in ("T", "H", "W", "tokens")]
        cells.append(time_cell(case[case["metric"] == "time"]))
        cells.append(summary(case[case["metric"] == "peak_memory"], number))
        order = (methods.index(first["method"]), devices.index(first["device_name"]))
        rows.append((order + (str(first["sweep"]), int(first["tokens"])), cells))
    rows = [cells for _, cells in sorted(rows, key=lambda r: r[0])]
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        "scaling-points",
        "Scaling: the measured points",
        frame,
        columns,
        notes=[
            measured_in(env_ids(records), results.environments),
            "Time: median of the timed repeats; in brackets their IQR / median. "
            + POINT_RULE
            + ".",
        ],
        short="scaling points",
        collapsed=True,
        env_ids=env_ids(records),
        empty="No scaling sweeps recorded.",
    )
