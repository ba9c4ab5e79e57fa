"""Device-hours to the target AP, two ways (docs/design.md section 8).

(a) wall clock × devices, evaluation included, as each run recorded it (device_hours_to_target);
(b) the headline: iterations_to_target × step_time + evaluations_to_target × val_videos ×
    eval_video_time, with the training-step and evaluation-pass times measured in isolation
    (bench.measure's step case) for the same method and preset on a device. (b) belongs to that
    device, so every device with step measurements gives its own device-hours from the same runs,
    without retraining.

(b) takes the run's iterations at the timed step's batch size and its evaluations at the timed
video's length (the step case's ``eval_frames``); the notes say so.
"""

import math

import pandas as pd

from bench.report.noise import spread
from bench.report.provenance import ordered_devices

STEP_COLUMNS = ["method", "preset", "device_name", "step_time", "step_spread", "eval_video_time"]
STEP_COLUMNS += ["eval_spread", "batch_size", "frames"]


def step_times(measurements: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, preset, device name) with a usable step and evaluation time."""
    step = measurements[(measurements["kind"] == "step") & measurements["failure"].isna()]
    rows = []
    for (method, preset, device), records in step.groupby(
        ["method", "preset", "device_name"], sort=False
    ):
        by_metric = records.set_index("metric")
        if not {"step_time", "eval_video_time"} <= set(by_metric.index):
            continue
        train, evaluation = by_metric.loc["step_time"], by_metric.loc["eval_video_time"]
        rows.append(
            {
                "method": method,
                "preset": preset,
                "device_name": device,
                "step_time": float(train["value"]),
                "step_spread": spread(train["iqr_s"], train["value"]),
                "eval_video_time": float(evaluation["value"]),
                "eval_spread": spread(evaluation["iqr_s"], evaluation["value"]),
                "batch_size": train["batch_size"],
                "frames": evaluation["frames"],
            }
        )
    return pd.DataFrame(rows, columns=STEP_COLUMNS)


def step_devices(measurements: pd.DataFrame, preset: str | None = None) -> list[str]:
    """Devices with step measurements (of ``preset``), accelerators first."""
    step = measurements[(measurements["kind"] == "step") & measurements["failure"].isna()]
    if preset is not None:
        step = step[step["preset"] == preset]
    return ordered_devices(step)


def hours(iterations, evaluations, val_videos, step: pd.Series | None) -> float | None:
    """(b) for a count of iterations and evaluations, or None when a term is unknown."""
    values = (iterations, evaluations, val_videos)
    if step is None or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    seconds = iterations * step["step_time"] + evaluations * val_videos * step["eval_video_time"]
    return seconds / 3600


def step_of(steps: pd.DataFrame, method: str, preset: str, device: str) -> pd.Series | None:
    """The step row of a method and preset on a device, or None."""
    found = steps[
        (steps["method"] == method) & (steps["preset"] == preset) & (steps["device_name"] == device)
    ]
    return None if found.empty else found.iloc[0]


def hours_to_target(runs: pd.DataFrame, steps: pd.DataFrame, device: str) -> pd.Series:
    """(b) to the target per run (NaN where the run did not reach it or no step was timed)."""
    values = []
    for run in runs.itertuples():
        step = step_of(steps, run.method, run.preset, device)
        value = hours(run.iterations_to_target, run.evaluations_to_target, run.val_videos, step)
        values.append(math.nan if value is None else value)
    return pd.Series(values, index=runs.index, dtype=float)
