"""The answer first: one row per method (and hybrid), each number with its ratio to dense attention.

Columns, each from one place that its legend names:

- encoder GMACs: fvcore's count of the encoder (all layers) at the paper preset;
- FPS and peak memory: batch-1 inference at the paper preset on the headline device;
- time exponent: one encoder layer's time ∝ tokens^b over the upper half of the T sweep (more
  frames), beside the H×W sweep's (larger frames) — one number would hide a mechanism whose cost
  grows differently along the two, such as K points in every frame — on the headline scaling
  device, flagged when either fit is noisy (bench.report.noise);
- AP: the ablation's main (preset, data) group — the one with most usable runs — mean ± 95%
  Student t interval over seeds (bench.stats.mean_interval);
- device-hours (b) to the target AP on the headline step device (bench.report.devicehours), mean
  over the seeds that reached it, "reached in n of m".

The ratio to the dense reference, full (sdpa) (bench.report.methods.REFERENCE), sits under each
number: a plain ratio for counts and exponents; for FPS and memory with the noise rule's verdict
(bench.report.noise.changed); for device-hours the geometric-mean ratio paired by seed with its
interval and verdict (bench.stats.ratio_interval, verdict against 1); for AP the geometric-mean
ratio beside the paired difference in points, whose interval gives the verdict
(bench.stats.paired_difference, against 0), as the ablation's differences table does.

The headline device of a column is, among the devices that measured the dense reference there,
the one that measured the most methods (ties: accelerators first, bench.report.provenance
.ordered_devices); the other devices' numbers are in the cost and accuracy tables.
"""

import dataclasses

import pandas as pd

from bench.report import devicehours, runs
from bench.report.cells import exponent, number, percent
from bench.report.methods import is_reference, methods_of, reference_label
from bench.report.noise import changed, spread
from bench.report.provenance import input_shape, ordered_devices, preset_key
from bench.report.quantity import Quantity, interval_verdict
from bench.report.scaling import UPPER_HW, UPPER_T, encoder_label, sweeps
from bench.stats import Interval, mean_interval, paired_difference, ratio_interval, verdict

COST_PRESET = "paper"
MEASURE = "python -m bench.measure"


@dataclasses.dataclass(frozen=True)
class Column:
    key: str
    title: str
    unit: str
    fmt: object = number


COLUMNS = [
    Column("encoder_gmacs", "encoder GMACs", "GMAC"),
    Column("fps", "FPS", "frames/s"),
    Column("peak_memory", "peak memory (MiB)", "MiB"),
    Column("time_exponent", "time ∝ tokens^b", "exponent", exponent),
    Column("AP", "AP (%)", "% AP", lambda v: f"{v:.1f}"),
    Column("device_hours_b", "device-h to target (b)", "device-hours"),
]


@dataclasses.dataclass
class Headline:
    """The headline's rows (methods), its cells {method: {column key: Quantity}}, the legend."""

    methods: pd.DataFrame
    cells: dict[str, dict[str, Quantity]]
    legend: dict[str, str]  # column key -> where its numbers come from
    reference: str | None
    context: dict  # cost_preset, devices, training group, target


def cost_preset(measurements: pd.DataFrame) -> str | None:
    """The paper preset when anything was measured there, else the first preset measured."""
    cost = measurements[measurements["kind"].isin(["flops", "inference"])]
    presets = sorted(set(cost["preset"]), key=preset_key)
    return COST_PRESET if COST_PRESET in presets else (presets[0] if presets else None)


def headline_device(records: pd.DataFrame) -> str | None:
    """Among the devices with a usable record of the reference (any device when none has one),
    the one with usable records of the most methods; ties go to accelerators, then by name."""
    ok = records[records["failure"].isna()]
    reference = reference_label(ok)
    with_reference = ok[ok["method"] == reference] if reference else ok
    devices = ordered_devices(with_reference) or ordered_devices(ok)
    if not devices:
        return None
    counts = ok.groupby("device_name")["method"].nunique()
    return max(devices, key=lambda d: (counts.get(d, 0), -devices.index(d)))


def plain_ratio(value: Quantity, reference: Quantity | None, verdict: str = "") -> None:
    """Attach value / reference (no interval) to ``value``."""
    if reference is None or reference.value in (None, 0) or value.value is None:
        why = "no dense value" if reference is None or reference.value is None else "no value"
        value.ratio = Quantity(None, "×", value.source, missing=why)
        return
    value.ratio = Quantity(value.value / reference.value, "×", value.source, n=1)
    value.ratio_verdict = verdict


def cost_cells(measurements, methods, preset) -> tuple[dict, dict, dict]:
    """GMACs, FPS and memory cells per method, the legend lines and the devices used."""
    cells = {m: {} for m in methods["method"]}
    at_preset = measurements[measurements["preset"] == preset]
    flops = at_preset[
        (at_preset["kind"] == "flops")
        & (at_preset["counter"] == "fvcore")
        & (at_preset["component"] == "encoder")
    ]
    inference = at_preset[at_preset["kind"] == "inference"]
    device = headline_device(inference)
    shapes = ", ".join(sorted({input_shape(i) for i in at_preset["input"]})) or "?"
    legend = {
        "encoder_gmacs": f"fvcore's multiply-accumulates of the encoder (all layers), {preset} "
        f"preset, input T×H×W = {shapes}, batch 1",
        "fps": f"batch-1 inference, {preset} preset, {device}: T × clips/s, median of the timed "
        "passes",
        "peak_memory": f"batch-1 inference, {preset} preset, {device}: peak memory of the first "
        "pass",
    }
    if flops.empty:
        legend["encoder_gmacs"] = f"not counted: {MEASURE} --metrics flops counts them"
    if device is None:
        legend["fps"] = legend["peak_memory"] = (
            f"not measured: {MEASURE} --metrics fps memory measures them"
        )
    for method in methods["method"]:
        mine = flops[(flops["method"] == method)]
        ok = mine[mine["failure"].isna()]
        source = legend["encoder_gmacs"]
        if not ok.empty:
            first = ok[ok["device_name"] == ordered_devices(ok)[0]].iloc[-1]
            cells[method]["encoder_gmacs"] = Quantity(first["value"], "GMAC", source, n=1)
        else:
            reason = mine["failure"].iloc[-1] if not mine.empty else "not run"
            cells[method]["encoder_gmacs"] = Quantity(None, "GMAC", source, missing=reason)
        on_device = inference[
            (inference["method"] == method) & (inference["device_name"] == device)
        ]
        for metric in ("fps", "peak_memory"):
            records = on_device[on_device["metric"] == metric]
            ok = records[records["failure"].isna()]
            unit = "frames/s" if metric == "fps" else "MiB"
            if ok.empty:
                reason = records["failure"].iloc[-1] if not records.empty else "not run"
                cells[method][metric] = Quantity(None, unit, legend[metric], missing=reason)
                continue
            row = ok.iloc[-1]
            quantity = Quantity(float(row["value"]), unit, legend[metric], n=1)
            if metric == "fps":
                quantity.spread = spread(row["iqr_s"], row["median_s"])
            cells[method][metric] = quantity
    return cells, legend, {"inference": device}


def noise_verdict(value: Quantity, reference: Quantity, higher: str, lower: str) -> str:
    """The noise rule's word for value against the reference."""
    a, b = reference.value, value.value
    if not changed(a, b, reference.spread, value.spread):
        return "within noise"
    return higher if b > a else lower


def add_cost_ratios(cells: dict, reference: str | None) -> None:
    ref = cells.get(reference, {}) if reference else {}
    for row in cells.values():
        for key, higher, lower in (
            ("encoder_gmacs", "", ""),
            ("fps", "faster", "slower"),
            ("peak_memory", "more memory", "less memory"),
        ):
            value, base = row[key], ref.get(key)
            verdict = ""
            if higher and value.value is not None and base is not None and base.value:
                verdict = noise_verdict(value, base, higher, lower)
            plain_ratio(value, base, verdict)


def exponent_cells(results, methods) -> tuple[dict, str, str | None]:
    """Upper-half time exponent per method (a hybrid: its encoder's) on the headline device."""
    found = sweeps(results)
    records = results.measurements[results.measurements["kind"] == "scaling"]
    device = headline_device(records[records["metric"] == "time"])
    by_label = {s.method: s for s in found if s.device_name == device}
    legend = (
        f"one encoder layer's time ∝ tokens^b, least squares on log-log axes over the upper half "
        f"of the T sweep (more frames at 10×17; token counts at or above its median), then of "
        f"the H×W sweep (larger frames at T = 8), {device}; a hybrid shows its encoder's"
    )
    if device is None:
        legend = f"not swept: {MEASURE} --metrics scaling sweeps one encoder layer"
    cells, reference_fit = {}, None
    for method, backend, options, decoder in methods.itertuples(index=False):
        sweep = by_label.get(encoder_label(backend, options))
        if sweep is None:
            cells[method] = Quantity(None, "exponent", legend, missing="not swept")
            continue
        along_t, along_hw = sweep.time_fit(UPPER_T), sweep.time_fit(UPPER_HW)
        if along_t.fit is None:
            cells[method] = Quantity(None, "exponent", legend, missing="fewer than 2 points")
            continue
        quantity = Quantity(along_t.fit.slope, "exponent", legend, n=along_t.fit.points)
        problems = [*along_t.problems, *(f"H×W: {p}" for p in along_hw.problems)]
        quantity.noisy = ", ".join(problems)
        if along_hw.fit is not None:
            quantity.detail = f"H×W {exponent(along_hw.fit.slope)}"
        cells[method] = quantity
        if is_reference(backend, options, decoder):
            reference_fit = quantity
    for quantity in cells.values():
        plain_ratio(quantity, reference_fit)
    return cells, legend, device


def difference_verdict(interval: Interval | None) -> str:
    """bench.stats.verdict of a paired difference against 0, in words for a comparison with dense."""
    text = verdict(interval)
    return {"higher": "above dense", "lower": "below dense"}.get(text, text)


def paired(values: dict[int, float], reference: dict[int, float]) -> Interval | None:
    """Geometric-mean ratio values / reference over the seeds both have (paired)."""
    seeds = sorted(set(values) & set(reference))
    if not seeds:
        return None
    return ratio_interval([values[s] for s in seeds], [reference[s] for s in seeds])


def training_cells(results, methods, group_runs, reference) -> tuple[dict, dict, dict]:
    """AP and device-hours (b) cells per method from the main group's runs."""
    steps = devicehours.step_times(results.measurements)
    preset = group_runs["preset"].iloc[0] if not group_runs.empty else None
    data = group_runs["data"].iloc[0] if not group_runs.empty else None
    step = results.measurements[results.measurements["kind"] == "step"]
    device = headline_device(step[(step["preset"] == preset) & (step["metric"] == "step_time")])
    if not group_runs.empty and device is not None:
        group_runs = group_runs.assign(
            hours_b=devicehours.hours_to_target(group_runs, steps, device)
        )
    else:
        group_runs = group_runs.assign(hours_b=float("nan"))
    targets = sorted(set(group_runs["target_AP"].dropna()))
    target = ", ".join(percent(t) for t in targets) or "none"
    planned = sorted({int(i) for i in group_runs["planned_iterations"].dropna()})
    length = f", {' / '.join(map(str, planned))} iterations" if planned else ""
    legend = {
        "AP": f"{preset} preset, {data} data{length}: final validation AP, mean ± 95% Student t "
        "interval over seeds; × dense: geometric-mean ratio to full (sdpa), paired by seed; Δ: the paired "
        "difference in AP points with its 95% Student t interval, which gives the verdict"
        if preset is not None
        else "no ablation runs: python -m bench.ablate trains them",
        "device_hours_b": f"to the target AP {target} %: iterations to target × training-step "
        f"time + evaluations × validation videos × evaluation time per video, timed in isolation "
        f"on {device} ({preset} preset); mean over the seeds that reached the target; × dense: "
        "paired over the seeds where both reached",
    }
    if device is None:
        legend["device_hours_b"] = (
            f"no training-step times: {MEASURE} --metrics step --step-presets "
            f"{preset or 'quick'} measures them"
        )
    ap_by_seed, hours_by_seed, cells = {}, {}, {}
    for method in methods["method"]:
        mine = group_runs[group_runs["method"] == method]
        ap_by_seed[method] = {s: 100 * v for s, v in runs.per_seed(mine, "AP").items()}
        hours_by_seed[method] = runs.per_seed(mine, "hours_b")
        cells[method] = {
            "AP": ap_quantity(mine, ap_by_seed[method], legend["AP"]),
            "device_hours_b": hours_quantity(mine, hours_by_seed[method], legend, device),
        }
    dense_runs = (
        reference is not None
        and not runs.usable(group_runs[group_runs["method"] == reference]).empty
    )
    for method, row in cells.items():
        for key, by_seed in (("AP", ap_by_seed), ("device_hours_b", hours_by_seed)):
            quantity = row[key]
            if quantity.value is None:
                continue
            if not dense_runs or not by_seed.get(reference):
                why = "dense never reached the target" if dense_runs else "no dense runs"
                quantity.ratio = Quantity(None, "×", quantity.source, missing=why)
                continue
            interval = paired(by_seed[method], by_seed[reference])
            if key == "AP":  # the ratio's point, the paired difference's interval and verdict
                point = None if interval is None else Interval(interval.value, None, None, 1)
                quantity.ratio = Quantity.of(point, "×", quantity.source, "no seed in common")
                quantity.difference = paired_difference(by_seed[reference], by_seed[method])
                quantity.ratio_verdict = difference_verdict(quantity.difference)
                continue
            quantity.ratio = Quantity.of(interval, "×", quantity.source, "no seed both reached")
            quantity.ratio_verdict = interval_verdict(interval) if interval else ""
    context = {"training": (preset, data), "step_device": device, "target": targets}
    return cells, legend, context


def ap_quantity(mine: pd.DataFrame, by_seed: dict, source: str) -> Quantity:
    if mine.empty:
        return Quantity(None, "% AP", source, missing="not trained")
    quantity = Quantity.of(mean_interval(by_seed.values()), "% AP", source, "no finished run")
    if quantity.value is None:
        quantity.missing = mine["state"].iloc[-1] if not mine.empty else "not trained"
    left_out = runs.excluded(mine)
    if left_out and quantity.value is not None:
        quantity.note = f"{len(left_out)} excluded"
    return quantity


def hours_quantity(mine: pd.DataFrame, by_seed: dict, legend: dict, device) -> Quantity:
    source = legend["device_hours_b"]
    if mine.empty:
        return Quantity(None, "device-hours", source, missing="not trained")
    if device is None:
        return Quantity(None, "device-hours", source, missing="no step times")
    if runs.usable(mine).empty:
        return Quantity(None, "device-hours", source, missing=mine["state"].iloc[-1])
    reached = runs.censored(mine, "iterations_to_target")
    if not runs.usable(mine)["iterations_to_target"].notna().any():
        return Quantity(None, "device-hours", source, missing=f"never reached: {reached.label}")
    if not by_seed:
        return Quantity(None, "device-hours", source, missing=f"no step time on {device}")
    quantity = Quantity.of(mean_interval(by_seed.values()), "device-hours", source)
    if len(reached.reached) < reached.runs:
        quantity.note = reached.label
    return quantity


def build_headline(results) -> Headline:
    """The headline's numbers from a results directory."""
    measurements = results.measurements
    preset = cost_preset(measurements)
    cost = measurements[
        measurements["kind"].isin(["flops", "inference"]) & (measurements["preset"] == preset)
    ]
    ablation = runs.run_table(results.ablation)
    grouped = runs.groups(ablation)
    group_runs = grouped[0][1] if grouped else ablation
    methods = methods_of(cost, group_runs)
    reference = reference_label(methods)
    cells = {m: {} for m in methods["method"]}
    cost_part, legend, devices = cost_cells(measurements, methods, preset)
    add_cost_ratios(cost_part, reference)
    exponents, legend["time_exponent"], devices["scaling"] = exponent_cells(results, methods)
    training, training_legend, context = training_cells(results, methods, group_runs, reference)
    legend.update(training_legend)
    for method in cells:
        cells[method] = {
            **cost_part[method],
            "time_exponent": exponents[method],
            **training[method],
        }
    context.update(cost_preset=preset, devices=devices)
    return Headline(methods, cells, legend, reference, context)
