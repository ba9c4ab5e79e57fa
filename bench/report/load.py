"""Read a results directory into tidy tables: one row per record, case fields as columns.

The directory holds measurements.jsonl and ablation.jsonl (bench.store records) and
runs/<run>/log.jsonl (periodic evaluations of each training run). Any of them may be absent.
When a case was measured more than once (a rerun after an error), its latest record wins.
"""

import dataclasses
import json
import warnings
from pathlib import Path

import pandas as pd

from bench.report.cells import failure_reason
from bench.report.environments import environment_catalog, environment_key
from bench.report.methods import method_label
from bench.store import ResultsStore

MEASUREMENTS = "measurements.jsonl"
ABLATION = "ablation.jsonl"
RUN_LOGS = "runs/*/log.jsonl"
PRETRAINING = "pretrained/*.json"  # bench.pretrain's summaries (iterations, seconds, ...)
SAME_MEASUREMENT = ["case_id", "metric", "component", "counter"]
METRICS = ("AP", "AP50", "AP75", "AR1", "AR10")
COLUMNS = [  # present in every tidy table, even when no record has them
    *("case_id", "kind", "preset", "backend", "options", "method", "device", "input", "metric"),
    *("value", "unit", "status", "reason", "message", "component", "counter", "unsupported"),
    *("measured_by", "sweep", "T", "H", "W", "tokens", "d_model", "backbone", "data", "seed"),
    *("run", "budget_minutes", "target_AP", "env_device", "env_key"),
]
GROUPING = ["preset", "device", "backbone", "data", "env_device"]  # columns tables group by
UNSET = "none"
RENAMED_EXTRAS = {"method": "measured_by"}  # memory records' "method" is how it was measured


@dataclasses.dataclass
class Results:
    """Everything a report is rendered from."""

    directory: Path
    measurements: pd.DataFrame  # kinds flops, fps, memory, scaling
    ablation: pd.DataFrame  # kind ablation: one row per run and metric
    logs: pd.DataFrame  # one row per periodic evaluation of a training run
    environments: pd.DataFrame  # env_id, the env fields, first/last date
    pretraining: pd.DataFrame  # one row per pretrained backbone: iterations, seconds, batch_size


def tidy_row(record: dict) -> dict:
    """A record flattened: its extra fields, its case's fields, the method label and env key.

    A stdeform measurement that ran the pure-PyTorch reference instead of a compiled kernel
    (``op_impl``) becomes a method of its own ("... op=reference"), never mixed with the kernel's.
    """
    case = record.get("case") or {}
    options = dict(case.get("options") or {})
    if record.get("op_impl") == "reference":
        options["op"] = "reference"
    extras = {
        RENAMED_EXTRAS.get(key, key): value
        for key, value in record.items()
        if key not in ("case", "env")
    }
    env = record.get("env") or {}
    return {
        **extras,
        **{key: value for key, value in case.items() if key not in ("options", "input")},
        "options": options,
        "input": case.get("input") or {},
        "method": method_label(case.get("backend"), options),
        "env": env,
        "env_device": env.get("device"),
        "env_key": environment_key(env),
    }


def tidy(records: list[dict]) -> pd.DataFrame:
    """Records as a table with a ``failure`` column (None when the value is usable)."""
    if not records:
        return pd.DataFrame(columns=[*COLUMNS, "failure"])
    frame = pd.DataFrame([tidy_row(r) for r in records])
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    frame = frame.drop_duplicates(SAME_MEASUREMENT, keep="last").reset_index(drop=True)
    frame[GROUPING] = frame[GROUPING].fillna(UNSET)  # so that == selects them like any value
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")  # a non-number is no value
    frame["failure"] = [
        failure_reason(status, value, reason)
        for status, value, reason in zip(
            frame["status"], frame["value"], frame["reason"], strict=True
        )
    ]
    return frame


def read_logs(directory: Path) -> pd.DataFrame:
    """All runs' evaluation logs: run, iteration, epoch, device_hours, device_name, AP, ..."""
    rows = []
    for path in sorted(directory.glob(RUN_LOGS)):
        for line in ResultsStore(path).records():
            metrics = line.get("metrics") or {}
            rows.append(
                {
                    "run": line.get("run") or path.parent.name,
                    "iteration": line.get("iteration"),
                    "epoch": line.get("epoch"),
                    "device_hours": line.get("device_hours"),
                    "device_name": line.get("device_name"),
                    "n_devices": line.get("n_devices"),
                    **{name: metrics.get(name) for name in METRICS},
                }
            )
    columns = ["run", "iteration", "epoch", "device_hours", "device_name", "n_devices", *METRICS]
    return pd.DataFrame(rows, columns=columns)


def read_pretraining(directory: Path) -> pd.DataFrame:
    """The shared backbone pretrainings of the ablation (bench.pretrain's JSON summaries)."""
    rows = []
    for path in sorted(directory.glob(PRETRAINING)):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            warnings.warn(
                f"{path}: unreadable pretraining summary ({error}); skipped", stacklevel=2
            )
            continue
        rows.append(
            {field: summary.get(field) for field in ("iterations", "seconds", "batch_size")}
        )
    return pd.DataFrame(rows, columns=["iterations", "seconds", "batch_size"])


def load_results(directory: str | Path) -> Results:
    """Read a results directory; missing files give empty tables."""
    directory = Path(directory)
    measurements = ResultsStore(directory / MEASUREMENTS).records()
    ablation = ResultsStore(directory / ABLATION).records()
    environments = environment_catalog([r.get("env") or {} for r in measurements + ablation])
    ids = dict(zip(environments["env_key"], environments["env_id"], strict=True))
    frames = [tidy(measurements), tidy(ablation)]
    for frame in frames:
        frame["env_id"] = frame["env_key"].map(ids)
    return Results(
        directory, *frames, read_logs(directory), environments, read_pretraining(directory)
    )
