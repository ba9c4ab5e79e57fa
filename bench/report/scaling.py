"""Table (c): how one encoder layer's time and memory grow with the number of tokens.

Per backend (and implementation) and device, the exponent b of y ≈ a·tokens^b is fitted on
log-log axes (bench.measure.fit.loglog_slope) over the T sweep, the H×W sweep, both together,
and the upper half of both (the points at or above the median token count). Full attention should
come out near 2, deformable attention near 1; at small sizes the linear projections and FFN
dominate a layer's cost and pull full attention's all-points exponent below its asymptotic one,
which the upper half shows, and so does the exponent of the layer's analytic multiply-accumulates
(the backend's formula + FFN + norms) over the same points: what a kernel of constant efficiency
would give. Failed points (OOM, timeout) are excluded from a fit, and the cell says how many were.
"""

import dataclasses

import pandas as pd

from bench.measure.fit import loglog_slope
from bench.report.cells import exponent, missing, number, plain, summary
from bench.report.methods import methods_of
from bench.report.provenance import env_ids, measured_in
from bench.report.table import Column, Table

UPPER_HALF = "upper half"
SWEEPS = [("T", "T sweep"), ("HW", "H×W sweep"), (None, "both"), (UPPER_HALF, "upper half")]
METRICS = [("time", "time ∝ tokens^b"), ("peak_memory", "peak memory ∝ tokens^b")]


@dataclasses.dataclass
class Series:
    """The measured points of one method on one device for one metric, and their fit."""

    method: str
    device: str
    metric: str
    points: pd.DataFrame  # sweep, T, H, W, tokens, value, failure
    slope: float | None
    scale: float | None

    @property
    def ok(self) -> pd.DataFrame:
        return self.points[self.points["failure"].isna()]


def scaling_records(results) -> pd.DataFrame:
    frame = results.measurements
    return frame[frame["kind"] == "scaling"]


def select(points: pd.DataFrame, sweep: str | None) -> pd.DataFrame:
    """The points of one sweep, of both (None), or of the upper half of both: token counts at or
    above the median of the distinct token counts measured (failed points included, so that the
    threshold is a property of the sweep grid, not of what failed)."""
    if sweep is None:
        return points
    if sweep == UPPER_HALF:
        threshold = float(pd.Series(points["tokens"].unique(), dtype=float).median())
        return points[points["tokens"] >= threshold]
    return points[points["sweep"] == sweep]


def layer_macs(point: pd.Series) -> float | None:
    """One encoder layer's analytic MACs at a scaling point (None without a formula or shape)."""
    from bench.measure.cases import scaling_attention
    from bench.measure.flops import encoder_layer_macs

    fields = ("backend", "options", "T", "H", "W", "d_model", "n_heads", "dim_feedforward")
    case = {field: point.get(field) for field in fields}
    if any(v is None or (not isinstance(v, dict) and pd.isna(v)) for v in case.values()):
        return None
    case.update({field: int(case[field]) for field in fields[2:]})
    try:
        attention = scaling_attention(case)
    except (ValueError, TypeError, KeyError):  # a backend unknown here, or options it rejects
        return None
    T, H, W, d_model, _, dim_feedforward = (case[field] for field in fields[2:])
    macs = encoder_layer_macs(attention, T * H * W, [(T, H, W)], d_model, dim_feedforward)
    return float(sum(macs.values()))


def analytic_cell(points: pd.DataFrame) -> str:
    """The exponent of the layer's analytic MACs over every point of the grid, failed or not."""
    grid = points.drop_duplicates("case_id")
    macs = [layer_macs(point) for _, point in grid.iterrows()]
    unknown = sum(m is None for m in macs)
    if unknown:  # no shape recorded, or a backend/options this install cannot build
        return missing(f"no formula at {unknown} of {len(macs)} points")
    try:
        slope, _ = loglog_slope(grid["tokens"], macs)
    except ValueError:
        return missing("fewer than 2 points")
    return exponent(slope)


def fit(points: pd.DataFrame) -> tuple[float | None, float | None]:
    """(b, a) of y ≈ a·tokens^b over the usable points, or (None, None) if they do not allow it."""
    ok = points[points["failure"].isna()]
    try:
        return loglog_slope(ok["tokens"], ok["value"])
    except ValueError:
        return None, None


def fit_cell(points: pd.DataFrame) -> str:
    """The fitted exponent, with the failed points it had to leave out."""
    failures = points["failure"].dropna()
    excluded = ", ".join(f"{n} {reason}" for reason, n in failures.value_counts().items())
    slope, _ = fit(points)
    if slope is None:
        usable = int((points["failure"].isna() & (points["value"] > 0)).sum())
        why = f"{usable} usable point{'s' if usable != 1 else ''}, a fit needs 2"
        return missing(f"{why}; {excluded} excluded" if excluded else why)
    return f"{exponent(slope)} ({excluded} excluded)" if excluded else exponent(slope)


def series_of(results) -> list[Series]:
    """Every (method, device, metric) of the scaling sweeps, with its fit over both sweeps."""
    records = scaling_records(results)
    methods = methods_of(records)["method"].tolist()
    series = []
    for (method, device, metric), points in records.groupby(
        ["method", "device", "metric"], dropna=False
    ):
        points = points.sort_values(["sweep", "tokens"])
        series.append(Series(method, device, metric, points, *fit(points)))
    return sorted(series, key=lambda s: (methods.index(s.method), str(s.device), s.metric))


def exponents_table(results, complexity: dict) -> Table:
    """Table (c): fitted exponents per method and device, per sweep and over both."""
    records = scaling_records(results)
    columns = [Column("method"), Column("complexity"), Column("device")]
    for _, metric_label in METRICS:
        columns += [Column(label, metric_label, numeric=True) for _, label in SWEEPS]
    columns.append(Column("both", "analytic MACs ∝ tokens^b", numeric=True))
    columns.append(Column("points ok / measured", numeric=True))
    rows = []
    methods = methods_of(records)
    for backend, method in zip(methods["backend"], methods["method"], strict=True):
        for device in sorted(records.loc[records["method"] == method, "device"].unique(), key=str):
            mine = records[(records["method"] == method) & (records["device"] == device)]
            cells = [method, complexity.get(backend, "?"), device]
            for metric, _ in METRICS:
                for sweep, _ in SWEEPS:
                    points = select(mine[mine["metric"] == metric], sweep)
                    cells.append(fit_cell(points) if not points.empty else missing("not run"))
            cells.append(analytic_cell(mine))
            cases = mine.drop_duplicates("case_id")
            ok_cases = mine[mine["failure"].isna()]["case_id"].nunique()
            cells.append(f"{ok_cases} / {len(cases)}")
            rows.append(cells)
    frame = pd.DataFrame(rows, columns=[f"{c.group}/{c.name}" for c in columns])
    d_models = ", ".join(plain(d) for d in sorted(set(records["d_model"].dropna())))
    notes = [
        measured_in(env_ids(records), results.environments),
        "One encoder layer's forward (median time) and peak memory against tokens = T·H·W of "
        f"the feature map (d_model {d_models or '?'}); b fitted by least squares on log-log "
        "axes. Full attention is expected near 2, deformable attention near 1. Upper half: the "
        "points at or above the median token count; below it the linear projections and FFN "
        "dominate a layer's cost and pull full attention's all-points exponent down. Analytic "
        "MACs: the exponent of the layer's multiply-accumulates by formula (backend + FFN + "
        "norms) over all the points — the time exponent of a kernel of constant efficiency.",
    ]
    return Table.from_frame(
        "scaling",
        "(c) Scaling: fitted exponents of time and memory against tokens",
        frame,
        columns,
        notes=notes,
        short="(c) scaling",
        env_ids=env_ids(records),
        empty="No scaling sweeps recorded.",
    )


def points_table(results) -> Table:
    """The measured points behind table (c): one row per case, time and memory side by side."""
    records = scaling_records(results)
    columns = [Column("method"), Column("device"), Column("sweep")]
    columns += [Column(name, numeric=True) for name in ("T", "H", "W", "tokens")]
    columns += [Column("time (ms)", numeric=True), Column("peak memory (MiB)", numeric=True)]
    methods = methods_of(records)["method"].tolist()
    rows = []
    for _, case in records.groupby("case_id", sort=False):
        first = case.iloc[0]
        cells = [first["method"], first["device"], first["sweep"]]
        cells += [plain(first[name]) for name in ("T", "H", "W", "tokens")]
        cells.append(summary(case[case["metric"] == "time"], lambda s: number(1000 * s)))
        cells.append(summary(case[case["metric"] == "peak_memory"], number))
        order = (methods.index(first["method"]), str(first["device"]), first["sweep"])
        rows.append((order + (int(first["tokens"]),), cells))
    rows = [cells for _, cells in sorted(rows, key=lambda r: r[0])]
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        "scaling-points",
        "Scaling: the measured points",
        frame,
        columns,
        notes=[measured_in(env_ids(records), results.environments)],
        short="scaling points",
        collapsed=True,
        env_ids=env_ids(records),
        empty="No scaling sweeps recorded.",
    )
