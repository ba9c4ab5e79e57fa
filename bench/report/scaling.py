"""The scaling sweeps, fitted: how one encoder layer's time and memory grow with the token count.

Per encoder spec (its label; a hybrid's encoder is measured under its own label) and device:

- time: the exponent b of time ≈ a·tokens^b on log-log axes (bench.measure.fit.loglog_fit) over
  the T sweep, the H×W sweep, all points, and the upper half — the points at or above the median
  of the grid's distinct token counts; below it the linear projections and the FFN dominate a
  layer's time and pull a quadratic mechanism's exponent down. Beside it, the analytic exponent:
  the same fit of the layer's multiply-accumulates by formula (the backend's mac_breakdown + FFN +
  norms, bench.measure.flops.encoder_layer_macs) over the same points — what a kernel of constant
  efficiency would show. Every fit has its R², its points' spread and the noise rule's verdict
  (bench.report.noise).
- memory: peak ≈ a + b·S + c·S² by least squares (bench.measure.fit.quadratic_fit) over all
  points, b in bytes per token, c in bytes per token², with R².

Failed points (OOM, timeout) stay out of every fit and are counted where a fit is shown.
"""

import dataclasses
import functools
import json

import pandas as pd

from bench.measure.fit import PowerFit, QuadraticFit, loglog_fit, quadratic_fit
from bench.method import method_label
from bench.report.noise import fit_problems, spread
from bench.report.provenance import ordered_devices

UPPER_HALF = "upper half"
UPPER_T, UPPER_HW = "T sweep, upper half", "H×W sweep, upper half"  # one sweep's upper half
SELECTIONS = [("T", "T sweep"), ("HW", "H×W sweep"), (None, "all points"), (UPPER_HALF, UPPER_HALF)]
MIB = 2**20
LAYER_FIELDS = ("d_model", "n_heads", "dim_feedforward")


@dataclasses.dataclass
class TimeFit:
    """A log-log fit of time over some points: the fit (None if impossible) and its problems."""

    fit: PowerFit | None
    problems: list[str]  # why it is noisy (bench.report.noise); empty when clean
    excluded: dict[str, int]  # failed points left out, by status
    usable: int  # points that went into it
    spread: float | None = None  # the largest IQR / median of its points' timing repeats


@dataclasses.dataclass
class Sweep:
    """The scaling points of one encoder spec on one device (time and memory records)."""

    method: str
    backend: str
    options: dict
    device_name: str
    points: pd.DataFrame

    def metric(self, metric: str) -> pd.DataFrame:
        return self.points[self.points["metric"] == metric].sort_values(["sweep", "tokens"])

    def ok(self, metric: str) -> pd.DataFrame:
        points = self.metric(metric)
        return points[points["failure"].isna() & (points["value"] > 0)]

    def time_fit(self, selection: str | None) -> TimeFit:
        points = select(self.metric("time"), selection)
        ok = points[points["failure"].isna() & (points["value"] > 0)]
        excluded = points["failure"].dropna().value_counts().to_dict()
        try:
            fit = loglog_fit(ok["tokens"], ok["value"])
        except ValueError:
            return TimeFit(None, [], excluded, len(ok))
        spreads = [spread(iqr, value) for iqr, value in zip(ok["iqr_s"], ok["value"], strict=True)]
        known = [s for s in spreads if s is not None]
        problems = fit_problems(fit.r2, spreads, fit.points)
        return TimeFit(fit, problems, excluded, len(ok), max(known) if known else None)

    def analytic_slope(self, selection: str | None) -> float | str:
        """The exponent of the layer's analytic MACs over the usable time points of the
        selection, or why there is none."""
        ok = select(self.ok("time"), selection)
        macs = [layer_macs(self.backend, self.options, row) for _, row in ok.iterrows()]
        unknown = sum(m is None for m in macs)
        if unknown:
            return f"no formula at {unknown} of {len(macs)} points"
        try:
            return loglog_fit(ok["tokens"], macs).slope
        except ValueError:
            return "fewer than 2 points"

    def memory_fit(self) -> QuadraticFit | None:
        ok = self.ok("peak_memory")
        try:
            return quadratic_fit(ok["tokens"], ok["value"] * MIB)
        except ValueError:
            return None

    @property
    def layer(self) -> dict:
        """d_model, n_heads, dim_feedforward of the swept layer (from its first point)."""
        first = self.points.iloc[0]
        return {name: first.get(name) for name in LAYER_FIELDS}


def scaling_records(results) -> pd.DataFrame:
    frame = results.measurements
    return frame[frame["kind"] == "scaling"]


def select(points: pd.DataFrame, selection: str | None) -> pd.DataFrame:
    """The points of one sweep, all points (None), or the upper half (of both sweeps, or of one):
    token counts at or above the median of the distinct token counts measured (failed points
    included, so that the threshold is a property of the sweep grid, not of what failed)."""
    if selection is None or points.empty:
        return points
    if selection in (UPPER_T, UPPER_HW):
        return select(
            points[points["sweep"] == ("T" if selection == UPPER_T else "HW")], UPPER_HALF
        )
    if selection == UPPER_HALF:
        threshold = float(pd.Series(points["tokens"].unique(), dtype=float).median())
        return points[points["tokens"] >= threshold]
    return points[points["sweep"] == selection]


@functools.lru_cache(maxsize=4096)
def _layer_macs(backend: str, options: str, T: int, H: int, W: int, layer: str) -> float | None:
    from bench.measure.cases import scaling_attention
    from bench.measure.flops import encoder_layer_macs

    sizes = json.loads(layer)
    case = {"backend": backend, "options": json.loads(options), "T": T, **sizes}
    try:
        attention = scaling_attention(case)
        macs = encoder_layer_macs(
            attention, T * H * W, [(T, H, W)], sizes["d_model"], sizes["dim_feedforward"]
        )
    except (ValueError, TypeError, KeyError):  # a backend unknown here, or options it rejects
        return None
    return float(sum(macs.values()))


def layer_macs(backend: str, options: dict, point, T=None, H=None, W=None) -> float | None:
    """One encoder layer's analytic MACs for the layer of a scaling ``point`` (its d_model,
    n_heads, dim_feedforward), at the point's T×H×W or the one given; None without a formula."""
    sizes = {name: point.get(name) for name in LAYER_FIELDS}
    shape = [T or point.get("T"), H or point.get("H"), W or point.get("W")]
    if any(v is None or pd.isna(v) for v in [*sizes.values(), *shape]):
        return None
    layer = json.dumps({k: int(v) for k, v in sizes.items()}, sort_keys=True)
    return _layer_macs(
        backend, json.dumps(options, sort_keys=True), *(int(v) for v in shape), layer
    )


def sweeps(results) -> list[Sweep]:
    """Every (encoder spec, device) of the scaling records, in the report's method order."""
    from bench.report.methods import methods_of

    records = scaling_records(results)
    order = methods_of(records)["method"].tolist()
    found = []
    for (method, device), points in records.groupby(["method", "device_name"], sort=False):
        first = points.iloc[0]
        found.append(Sweep(method, first["backend"], first["options"], device, points))
    devices = ordered_devices(records)
    return sorted(found, key=lambda s: (order.index(s.method), devices.index(s.device_name)))


def encoder_label(backend, options) -> str:
    """The label scaling records carry for an encoder spec (a hybrid's encoder side)."""
    return method_label(backend, options)
