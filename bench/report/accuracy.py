"""Accuracy per data set: one table per (preset, data) group of the ablation's runs.

Per method: its learning rate, the seeds that finished, AP/AP50/AP75 mean ± 95% Student t
interval over seeds (bench.stats.mean_interval), how many seeds reached the target AP
("reached in n of m", bench.stats.Censored), iterations to the target and device-hours to it
both ways (bench.report.devicehours): (a) the runs' wall clock × devices, (b) from the step times
of each device that has them. Runs cut by the wall-clock cap and failed runs are left out of
every number and listed in the notes.
"""

import pandas as pd

from bench.report import devicehours, runs
from bench.report.cells import estimate, number, percent
from bench.report.methods import methods_of, reference_label
from bench.report.provenance import env_ids, measured_in, short_device
from bench.report.table import Column, Table
from bench.stats import METHOD, mean_interval

AP_METRICS = ("AP", "AP50", "AP75")


def reached_cell(group: pd.DataFrame) -> str:
    if runs.usable(group).empty:
        return "— (" + (group["state"].iloc[-1] if not group.empty else "not run") + ")"
    if group["target_AP"].dropna().empty:
        return "— (no target)"
    return runs.censored(group, "iterations_to_target").label.removeprefix("reached in ")


def to_target_cell(group: pd.DataFrame, column: str) -> str:
    """Mean ± interval over the seeds that reached the target."""
    reached = runs.censored(group, column)
    if not reached.runs:
        return "— (" + (group["state"].iloc[-1] if not group.empty else "not run") + ")"
    reason = "no target" if group["target_AP"].dropna().empty else "not reached"
    return estimate(reached.interval, number, reason, count=False)


def group_table(results, key: tuple, group: pd.DataFrame, steps: pd.DataFrame) -> Table:
    preset, data = key
    devices = devicehours.step_devices(results.measurements, preset)
    for device in devices:
        group = group.assign(**{f"b:{device}": devicehours.hours_to_target(group, steps, device)})
    training_devices = ", ".join(sorted({short_device(d) for d in group["device_name"]}))
    columns = [Column("method"), Column("lr", numeric=True), Column("seeds ok", numeric=True)]
    columns += [Column(f"{m} (%)", "final AP", numeric=True) for m in AP_METRICS]
    columns += [Column("reached", "to target", numeric=True)]
    columns += [Column("iterations", "to target", numeric=True)]
    columns += [Column(f"(a) {training_devices}", "device-h to target", numeric=True)]
    columns += [
        Column(f"(b) {short_device(d)}", "device-h to target", numeric=True) for d in devices
    ]
    methods = methods_of(group)
    reference = reference_label(methods)
    rows, kinds = [], []
    for method in methods["method"]:
        mine = group[group["method"] == method]
        rates = ", ".join(f"{lr:.3g}" for lr in sorted(set(mine["lr"].dropna())))
        cells = [method, rates or "?", f"{len(runs.usable(mine))} of {len(mine)}"]
        for metric in AP_METRICS:
            ap = mean_interval([100 * v for v in runs.per_seed(mine, metric).values()])
            reason = mine["state"].iloc[-1] if runs.usable(mine).empty else "no value"
            cells.append(estimate(ap, lambda v: f"{v:.1f}", reason, count=False))
        cells.append(reached_cell(mine))
        cells.append(to_target_cell(mine, "iterations_to_target"))
        cells.append(to_target_cell(mine, "device_hours_to_target"))
        for device in devices:
            timed = devicehours.step_of(steps, method, preset, device) is not None
            cells.append(to_target_cell(mine, f"b:{device}") if timed else "— (no step time)")
        rows.append(cells)
        kinds.append("baseline" if method == reference else "measured")
    frame = pd.DataFrame(rows, columns=[f"{c.group}/{c.name}" for c in columns])
    return Table.from_frame(
        f"accuracy-{preset}-{data}",
        f"Accuracy: {preset} preset, {data} data",
        frame,
        columns,
        kinds,
        notes=notes(results, group, steps, devices),
        short=f"accuracy ({preset}, {data})",
        env_ids=env_ids(results.ablation[results.ablation["run"].isin(group["run"])]),
    )


def notes(results, group: pd.DataFrame, steps: pd.DataFrame, devices: list[str]) -> list[str]:
    used = results.ablation[results.ablation["run"].isin(group["run"])]
    targets = ", ".join(percent(t) for t in sorted(set(group["target_AP"].dropna())))
    lines = [measured_in(env_ids(used), results.environments)]
    lines.append(
        f"Final validation AP (YouTube-VIS AP, %), mean ± {METHOD} (n: seeds ok). Target AP: "
        f"{targets or 'none recorded'} %; “reached”: seeds that reached it of those that "
        "finished; iterations and device-hours to target: mean ± interval over the seeds that "
        "reached it (n: reached). "
        "lr: the rate the configuration trained at (each backend's own, from its sweep)."
    )
    lines.append(
        "Device-hours (a): the runs' wall clock × devices, evaluation included, on the machine "
        "they trained on. (b): iterations to target × the training-step time + evaluations × "
        "validation videos × the evaluation time per video, both timed in isolation on the named "
        "device (cost table) — it assumes the run's batch equals the timed step's and its "
        "validation videos the timed video's length."
    )
    if not devices:
        lines.append(
            "No training-step times at this preset, so no device-hours (b): python -m "
            f"bench.measure --metrics step --step-presets {group['preset'].iloc[0]} measures them."
        )
    left_out = runs.excluded(group)
    if left_out:
        lines.append(
            "Left out of every number (“budget”: cut by the wall-clock safety cap before its last "
            "iteration; otherwise the run failed): " + ", ".join(left_out) + "."
        )
    return lines


def accuracy_tables(results) -> list[Table]:
    """One table per (preset, data) group of ablation runs, most runs first."""
    table = runs.run_table(results.ablation)
    if table.empty:
        return [
            Table(
                "accuracy",
                "Accuracy",
                [Column("method")],
                [],
                empty="No ablation runs (ablation.jsonl): python -m bench.ablate produces them.",
            )
        ]
    steps = devicehours.step_times(results.measurements)
    return [group_table(results, key, group, steps) for key, group in runs.groups(table)]
