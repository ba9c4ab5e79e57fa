"""Where each mechanism beats dense attention: the crossover table.

Per device and mechanism, from the scaling sweeps (one encoder layer, bench.report.scaling):

- the token count (T·H·W) above which the mechanism's layer is faster than dense SDPA's, per
  sweep: at the sweep points both measured, d = log t_mechanism − log t_SDPA; the crossover is
  the last point where d turns from ≥ 0 to < 0, interpolated linearly in log tokens between the
  two points around it (``crossover``). "always" when the mechanism is faster at every point,
  "never in the measured range" when at none, "not at the largest size" when it is faster only
  somewhere in between.
- at the paper shape (models.presets "paper": T frames of the stride-32 map, 36 × 10 × 17 = 6120
  tokens): the achieved speedup t_SDPA / t_mechanism — at a measured point of that shape, else
  interpolated on log-log axes in the sweep that varies T at the paper's H×W (or, failing that,
  in tokens within any sweep that brackets it) — beside the speedup the layer's analytic MACs
  predict (MACs_SDPA / MACs_mechanism, bench.report.scaling.layer_macs), and their quotient
  achieved / MAC-bound, as NATTEN's profiler reports it.
"""

import dataclasses
import math

import numpy as np
import pandas as pd

from bench.report.cells import missing, number
from bench.report.methods import is_reference
from bench.report.provenance import env_ids, measured_in, short_device
from bench.report.scaling import Sweep, layer_macs, scaling_records, sweeps
from bench.report.table import Column, Table

ALWAYS, NEVER, NOT_AT_LARGEST = "always", "never in the measured range", "not at the largest size"


@dataclasses.dataclass(frozen=True)
class Crossover:
    """``kind`` is ALWAYS, NEVER, NOT_AT_LARGEST or "above" (then ``tokens`` is the crossover)."""

    kind: str
    tokens: float | None = None
    low: float | None = None  # the smallest token count compared
    high: float | None = None  # the largest


def crossover(tokens, mechanism, reference) -> Crossover | None:
    """The crossover of two time series over the same token counts (None: no common point)."""
    frame = pd.DataFrame({"n": tokens, "m": mechanism, "r": reference}).dropna()
    frame = frame[(frame["n"] > 0) & (frame["m"] > 0) & (frame["r"] > 0)].sort_values("n")
    if frame.empty:
        return None
    n = frame["n"].to_numpy(dtype=float)
    d = np.log(frame["m"].to_numpy(dtype=float)) - np.log(frame["r"].to_numpy(dtype=float))
    span = {"low": float(n[0]), "high": float(n[-1])}
    if (d < 0).all():
        return Crossover(ALWAYS, **span)
    if (d >= 0).all():
        return Crossover(NEVER, **span)
    if d[-1] >= 0:
        return Crossover(NOT_AT_LARGEST, **span)
    i = int(np.nonzero(d >= 0)[0][-1])  # the last point where the mechanism is not faster
    fraction = d[i] / (d[i] - d[i + 1])
    log_n = math.log(n[i]) + fraction * (math.log(n[i + 1]) - math.log(n[i]))
    return Crossover("above", math.exp(log_n), **span)


def crossover_text(found: Crossover | None) -> str:
    if found is None:
        return missing("no common points")
    if found.kind == "above":
        return f"{found.tokens:.0f}"
    if found.kind == ALWAYS:
        return f"always (from {found.low:.0f})"
    if found.kind == NEVER:
        return f"never up to {found.high:.0f}"
    return f"{NOT_AT_LARGEST} ({found.high:.0f})"


def interpolate(x, y, at: float) -> float | None:
    """y at ``at`` by linear interpolation of log y against log x between the bracketing points
    (exactly y where x == at); None outside the range."""
    frame = pd.DataFrame({"x": x, "y": y}).dropna()
    frame = frame[(frame["x"] > 0) & (frame["y"] > 0)].groupby("x")["y"].mean().sort_index()
    if frame.empty or not frame.index[0] <= at <= frame.index[-1]:
        return None
    if at in frame.index:
        return float(frame[at])
    return float(np.exp(np.interp(math.log(at), np.log(frame.index), np.log(frame.to_numpy()))))


def paper_shape() -> tuple[int, int, int]:
    """(T, H, W) of the paper preset's coarsest feature map (ResNet padding rounds up)."""
    from models.presets import get_preset

    preset = get_preset("paper")
    stride = preset.strides[-1]
    return (
        preset.num_frames,
        math.ceil(preset.short_side / stride),
        math.ceil(preset.max_size / stride),
    )


def time_at(sweep: Sweep, shape: tuple[int, int, int]) -> tuple[float | None, str]:
    """A sweep's layer time at a shape, and how it was found."""
    T, H, W = shape
    ok = sweep.ok("time")
    exact = ok[(ok["T"] == T) & (ok["H"] == H) & (ok["W"] == W)]
    if not exact.empty:
        return float(exact["value"].iloc[0]), "measured"
    same_frame = ok[(ok["H"] == H) & (ok["W"] == W)]
    value = interpolate(same_frame["T"], same_frame["value"], T)
    if value is not None:
        return value, f"interpolated in T at {H}×{W}"
    for name, points in ok.groupby("sweep"):
        value = interpolate(points["tokens"], points["value"], T * H * W)
        if value is not None:
            return value, f"interpolated in tokens ({name} sweep)"
    return None, "outside the swept range"


def on_both(mechanism: Sweep, reference: Sweep, sweep: str) -> pd.DataFrame:
    """The mechanism's and the reference's times at the points of one sweep both measured."""
    keys = ["T", "H", "W", "tokens"]
    a = mechanism.ok("time")
    b = reference.ok("time")
    a, b = a[a["sweep"] == sweep], b[b["sweep"] == sweep]
    return a[keys + ["value"]].merge(b[keys + ["value"]], on=keys, suffixes=("_m", "_r"))


def row(mechanism: Sweep, reference: Sweep, shape) -> list[str]:
    cells = [mechanism.method, short_device(mechanism.device_name)]
    for sweep in ("T", "HW"):
        both = on_both(mechanism, reference, sweep)
        cells.append(crossover_text(crossover(both["tokens"], both["value_m"], both["value_r"])))
    t_m, how_m = time_at(mechanism, shape)
    t_r, how_r = time_at(reference, shape)
    point = mechanism.points.iloc[0]
    macs_m = layer_macs(mechanism.backend, mechanism.options, point, *shape)
    macs_r = layer_macs(reference.backend, reference.options, point, *shape)
    achieved = t_r / t_m if t_m and t_r else None
    bound = macs_r / macs_m if macs_m and macs_r else None
    cells.append(f"×{number(achieved)}" if achieved else missing(how_m if not t_m else how_r))
    cells.append(f"×{number(bound)}" if bound else missing("no formula"))
    cells.append(f"{achieved / bound:.2f}" if achieved and bound else missing("needs both"))
    cells.append(how_m if how_m == how_r else f"{how_m}; SDPA {how_r}")
    return cells


def crossover_table(results) -> Table:
    shape = paper_shape()
    tokens = shape[0] * shape[1] * shape[2]
    found = sweeps(results)
    columns = [Column("mechanism"), Column("device")]
    columns += [Column("T sweep", "faster than SDPA above (tokens)", numeric=True)]
    columns += [Column("H×W sweep", "faster than SDPA above (tokens)", numeric=True)]
    paper = f"at the paper shape {shape[0]}×{shape[1]}×{shape[2]} = {tokens} tokens"
    columns += [Column("achieved speedup", paper, numeric=True)]
    columns += [Column("MAC-bound speedup", paper, numeric=True)]
    columns += [Column("achieved / MAC-bound", paper, numeric=True), Column("paper point")]
    rows = []
    for reference in (s for s in found if is_reference(s.backend, s.options, None)):
        for mechanism in found:
            if mechanism.device_name != reference.device_name or mechanism is reference:
                continue
            rows.append(row(mechanism, reference, shape))
    frame = pd.DataFrame(rows, columns=[f"{c.group}/{c.name}" for c in columns])
    records = scaling_records(results)
    return Table.from_frame(
        "crossover",
        "Where each mechanism beats dense attention (SDPA)",
        frame,
        columns,
        notes=[
            measured_in(env_ids(records), results.environments),
            "One encoder layer's median time, each mechanism against full (sdpa) on the same "
            "device and sweep points. Crossover: the token count above which the mechanism is "
            "faster, interpolated on log-log axes between the two measured points around the "
            "last change from slower to faster. Speedups > 1: faster than SDPA. MAC-bound: the "
            "ratio of the layers' analytic multiply-accumulates at that shape; achieved / "
            "MAC-bound < 1 means the mechanism's kernel turns fewer MACs into less time less "
            "efficiently than SDPA's.",
        ],
        short="crossover",
        env_ids=env_ids(records),
        empty="No scaling sweeps of full (sdpa) and another mechanism on one device "
        "(python -m bench.measure --metrics scaling).",
    )
