"""The convergence study (bench.study convergence): how long each configuration takes to the target.

Per configuration: its final AP over seeds, whether its curves flattened by the plateau rule
(bench.convergence.plateaued: less than 0.5 AP points gained over the last 20% of iterations),
how many seeds reached the study's target and the device-hours (b) to it on each device with
step times (bench.report.devicehours). Then the measured ratio dense / other of device-hours (b)
to the target, paired by seed (bench.stats.ratio_interval) over the seeds where both reached —
the suite's version of the poster's ≈8× — or, for a configuration that never reached the target,
its plateau AP and the iterations it ran.
"""

import pandas as pd

from bench.convergence import PLATEAU_GAIN, PLATEAU_WINDOW, plateau_gain, plateaued
from bench.report import devicehours, paper, runs
from bench.report.ablation import ap_by_seed
from bench.report.cells import estimate, number, ratio
from bench.report.methods import methods_of, reference_label
from bench.report.provenance import short_device
from bench.report.quantity import signed_points
from bench.report.table import Column, Table
from bench.stats import METHOD, mean_interval, paired_difference, ratio_interval, verdict

MISSING = (
    "No convergence study (study.jsonl): python -m bench.study convergence produces it, with "
    "its runs' logs in runs/study-*/."
)


def log_lines(results, run: str) -> list[dict]:
    """A run's evaluations in bench.convergence's shape: iteration and metrics {AP}."""
    logs = results.logs[results.logs["run"] == run].sort_values("iteration")
    return [
        {"iteration": i, "metrics": {"AP": ap}}
        for i, ap in zip(logs["iteration"], logs["AP"], strict=True)
    ]


def with_hours(study: pd.DataFrame, steps: pd.DataFrame, devices: list[str]) -> pd.DataFrame:
    for device in devices:
        study = study.assign(**{f"b:{device}": devicehours.hours_to_target(study, steps, device)})
    return study


def configuration_table(results, study: pd.DataFrame, devices: list[str]) -> Table:
    columns = [Column("configuration"), Column("seeds ok", numeric=True)]
    columns += [Column("final AP (%)", numeric=True), Column("flattened", numeric=True)]
    columns += [Column("reached", numeric=True), Column("iterations to target", numeric=True)]
    columns += [Column(short_device(d), "device-h (b) to target", numeric=True) for d in devices]
    rows = []
    for method in methods_of(study)["method"]:
        mine = study[study["method"] == method]
        ok = runs.usable(mine)
        lines = [log_lines(results, run) for run in ok["run"]]
        flat = sum(plateaued(line) for line in lines if line)
        reached = runs.censored(mine, "iterations_to_target")
        cells = [method, f"{len(ok)} of {len(mine)}"]
        aps = [100 * v for v in runs.per_seed(mine, "AP").values()]
        cells.append(estimate(mean_interval(aps), lambda v: f"{v:.1f}", "no finished run"))
        cells.append(f"{flat} of {len(lines)}" if lines else "— (no logs)")
        cells.append(reached.label.removeprefix("reached in "))
        cells.append(estimate(reached.interval, number, "not reached"))
        for device in devices:
            cells.append(
                estimate(runs.censored(mine, f"b:{device}").interval, number, "not reached")
            )
        rows.append(cells)
    frame = pd.DataFrame(rows, columns=[f"{c.group}/{c.name}" for c in columns])
    targets = ", ".join(f"{100 * t:.1f}" for t in sorted(set(study["target_AP"].dropna())))
    return Table.from_frame(
        "study",
        "Convergence study: to the target and to the plateau",
        frame,
        columns,
        notes=[
            f"Target AP {targets or '?'} %: 90% of the lowest configuration's mean final AP, "
            "so that every configuration can reach it (bench.study). flattened: runs that gained "
            f"less than {100 * PLATEAU_GAIN:.1f} AP points over their last "
            f"{PLATEAU_WINDOW:.0%} of iterations (bench.convergence.plateaued). Means ± {METHOD}; "
            "to target: over the seeds that reached it.",
        ],
        short="convergence study",
    )


def ratio_rows(results, study, devices) -> list[list[str]]:
    """dense / other per configuration and device, or the plateau of one that never reached."""
    reference = reference_label(methods_of(study))
    rows = []
    if reference is None:
        return rows
    dense = study[study["method"] == reference]
    for method in methods_of(study)["method"]:
        if method == reference:
            continue
        other = study[study["method"] == method]
        finished = sorted(set(runs.per_seed(dense, "AP")) & set(runs.per_seed(other, "AP")))
        label = f"{reference} / {method}"
        for device in devices:
            a, b = runs.per_seed(dense, f"b:{device}"), runs.per_seed(other, f"b:{device}")
            seeds = sorted(set(a) & set(b))
            both = f"{len(seeds)} of {len(finished)}"
            never = [name for name, part in ((reference, dense), (method, other))
                     if not runs.usable(part)["iterations_to_target"].notna().any()]  # fmt: skip
            if never:
                part = dense if never[0] == reference else other
                text = f"{never[0]} never reached it: {plateau_text(results, part)}"
                rows.append([label, short_device(device), "— (never reached)", both, text])
                continue
            interval = (
                ratio_interval([a[s] for s in seeds], [b[s] for s in seeds]) if seeds else None
            )
            verdict = ratio_verdict(interval) if interval else "no seed where both reached"
            if interval is not None and len(seeds) < len(finished):
                verdict += " (censored seeds left out)"
            rows.append([label, short_device(device), ratio(interval), both, verdict])
    return rows


def ratio_verdict(interval) -> str:
    """bench.stats.verdict of dense / other against 1, in words."""
    words = {"higher": "dense needs more", "lower": "dense needs fewer"}
    text = verdict(interval, null=1.0)
    return words.get(text, text)


def plateau_text(results, runs_of: pd.DataFrame) -> str:
    ok = runs.usable(runs_of)
    gains = [plateau_gain(log_lines(results, run)) for run in ok["run"]]
    final = mean_interval([100 * v for v in ok["AP"].dropna()])
    iterations = ", ".join(str(int(i)) for i in ok["iterations"].dropna())
    gained = mean_interval([100 * g for g in gains if g is not None])
    return (
        f"plateau AP {estimate(final, lambda v: f'{v:.1f}')} after {iterations} iterations; "
        f"gained {estimate(gained, lambda v: f'{v:.1f}')} points over the last "
        f"{PLATEAU_WINDOW:.0%}"
    )


def ratio_table(results, study, devices) -> Table:
    columns = [Column("ratio"), Column("device"), Column("device-h (b) to target", numeric=True)]
    columns += [Column("seeds where both reached", numeric=True), Column("verdict")]
    rows = ratio_rows(results, study, devices)
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        "study-ratio",
        "Convergence study: dense over the others, device-hours (b) to the target",
        frame,
        columns,
        notes=[
            "Geometric-mean ratio of device-hours (b) to the target, dense / other, paired by "
            f"seed over the seeds where both reached it, with its {METHOD} on the log scale. The "
            f"poster reports {paper.dense_over_deformable():.1f}× (VisTR / Deformable VisTR "
            "GPU-hours, a different setting; reported table).",
        ],
        short="study ratio",
        empty="No dense configuration or no step times in the study, so no ratio.",
    )


def study_with_hours(results) -> tuple[pd.DataFrame, list[str]]:
    """The study's runs with device-hours (b) to target per step device; empty without a study."""
    study = runs.run_table(results.of_kind("study"))
    if study.empty:
        return study, []
    preset = study["preset"].iloc[0]
    steps = devicehours.step_times(results.measurements)
    devices = devicehours.step_devices(results.measurements, preset)
    return with_hours(study, steps, devices), devices


def final_ap_text(study: pd.DataFrame, reference: str, other: str) -> str:
    """ "final AP: dense 45.6 ± 9.0, other 47.6 ± 1.0; other − dense: +2.0 ± 1.3 points, n.d."."""
    dense, mine = ap_by_seed(study, reference), ap_by_seed(study, other)
    shown = [estimate(mean_interval(v.values()), lambda x: f"{x:.1f}") for v in (dense, mine)]
    difference = paired_difference(dense, mine)
    finals = f"final AP: {reference} {shown[0]}, {other} {shown[1]}"
    if difference is None:
        return finals
    return (
        f"{finals}; {other} − {reference}: "
        f"{signed_points(difference)} points, {verdict(difference)}"
    )


def study_sentence(results) -> str | None:
    """The study's answer to the poster's ratio, for the report's opening: the first device's
    ratio (or the plateau of a configuration that never reached) and the final APs."""
    study, devices = study_with_hours(results)
    rows = ratio_rows(results, study, devices) if devices else []
    if not rows:
        return None
    label, device, shown, both, verdict_text = rows[0]
    reference, other = label.split(" / ", 1)
    iterations = ", ".join(sorted({str(int(i)) for i in study["iterations"].dropna()}))
    targets = ", ".join(f"{100 * t:.1f}" for t in sorted(set(study["target_AP"].dropna())))
    measured = (
        verdict_text if shown.startswith("—")
        else f"{shown} ({verdict_text}; seeds where both reached: {both})"
    )  # fmt: skip
    return (
        f"Convergence study ({iterations} iterations per run), device-hours (b) to the target AP "
        f"{targets} % on {device}, {label}: {measured}; {final_ap_text(study, reference, other)}. "
        f"The poster reports {paper.dense_over_deformable():.1f}× "
        "(GPU-hours, a different setting)."
    )


def study_tables(results) -> list[Table]:
    study, devices = study_with_hours(results)
    if study.empty:
        return []
    return [configuration_table(results, study, devices), ratio_table(results, study, devices)]
