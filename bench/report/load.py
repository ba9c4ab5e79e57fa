"""Read a results directory into tidy tables: one row per record, case fields as columns.

The directory holds measurements.jsonl (bench.measure), ablation.jsonl (bench.ablate),
lr_sweep.jsonl and study.jsonl (bench.study), runs/<run>/log.jsonl (bench.train's evaluations)
and pretrained/*.json (bench.pretrain's summaries). Any of them may be absent. When a case was
measured more than once (a rerun after an error), its latest record wins.

Every row names its method as tables show it (bench.method.method_label of the record's backend,
options and decoder) and the device it ran on by name (the env's device_name). ``digest`` is a
hash of the files read, so that a report can name the results it was rendered from without
naming where they lie.
"""

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import pandas as pd

from bench.method import method_label
from bench.report.cells import failure_reason
from bench.report.environments import environment_catalog, environment_key
from bench.store import ResultsStore

MEASUREMENTS = "measurements.jsonl"
TRAINING = ("ablation.jsonl", "lr_sweep.jsonl", "study.jsonl")  # kinds ablation, lr_sweep, study
RUN_LOGS = "runs/*/log.jsonl"
PRETRAINING = "pretrained/*.json"
SAME_MEASUREMENT = ["case_id", "metric", "component", "counter"]
METRICS = ("AP", "AP50", "AP75", "AR1", "AR10")
COLUMNS = [  # present in every tidy table, even when no record has them
    *("case_id", "kind", "preset", "backend", "options", "decoder", "method", "device"),
    *("device_name", "input", "metric", "value", "unit", "status", "reason", "message"),
    *("component", "counter", "unsupported", "measured_by", "sweep", "T", "H", "W", "tokens"),
    *("d_model", "n_heads", "dim_feedforward", "median_s", "iqr_s", "repeats", "batch_size"),
    *("frames", "backbone", "data", "seed", "run", "lr", "iterations", "eval_every"),
    *("budget_minutes", "pretrained_backbone", "target_AP", "run_status", "op_impl"),
    *("env_device", "env_key", "case"),
]
GROUPING = ["preset", "device", "device_name", "backbone", "data", "env_device"]
UNSET = "none"
RENAMED_EXTRAS = {"method": "measured_by"}  # memory records' "method" is how it was measured
FALLBACK = " [op ran as reference]"


@dataclasses.dataclass
class Results:
    """Everything a report is rendered from."""

    directory: Path
    measurements: pd.DataFrame  # kinds flops, inference, step, scaling
    training: pd.DataFrame  # kinds ablation, lr_sweep, study: one row per run and metric
    logs: pd.DataFrame  # one row per periodic evaluation of a training run
    environments: pd.DataFrame  # env_id, the env fields, first/last date
    pretraining: pd.DataFrame  # one row per pretrained backbone: iterations, seconds, batch_size
    digest: str  # sha256 (first 12 hex digits) of the files read

    def of_kind(self, kind: str) -> pd.DataFrame:
        """Training records of one kind: "ablation", "lr_sweep" or "study"."""
        return self.training[self.training["kind"] == kind]

    @property
    def ablation(self) -> pd.DataFrame:
        return self.of_kind("ablation")


def fell_back(case: dict, op_impl) -> bool:
    """A stdeform side asked for the compiled op (impl "op") but the op ran its pure-PyTorch
    reference there (bench.measure's ``op_impl`` field): a different implementation, so a method
    of its own, never mixed with the kernel's measurements."""
    if op_impl != "reference":
        return False
    sides = [{"backend": case.get("backend"), "options": case.get("options") or {}}]
    sides.append(case.get("decoder") or {})
    return any(
        side.get("backend") == "stdeform" and (side.get("options") or {}).get("impl", "op") == "op"
        for side in sides
    )


def tidy_row(record: dict) -> dict:
    """A record flattened: its extra fields, its case's fields, the method label and env key."""
    case = record.get("case") or {}
    extras = {
        RENAMED_EXTRAS.get(key, key): value
        for key, value in record.items()
        if key not in ("case", "env")
    }
    env = record.get("env") or {}
    options = dict(case.get("options") or {})
    decoder = case.get("decoder") or None
    method = method_label(case.get("backend"), options, decoder)
    if fell_back(case, record.get("op_impl")):
        method += FALLBACK
    return {
        **extras,
        **{key: value for key, value in case.items() if key not in ("options", "input", "decoder")},
        "options": options,
        "decoder": decoder,
        "input": case.get("input") or {},
        "case": case,
        "method": method,
        "device_name": env.get("device_name"),
        "env": env,
        "env_device": env.get("device"),
        "env_key": environment_key(env),
    }


def tidy(records: list[dict]) -> pd.DataFrame:
    """Records as a table with a ``failure`` column (None when the value is usable)."""
    if not records:
        return pd.DataFrame(columns=[*COLUMNS, "failure", "env_id"])
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


LOG_COLUMNS = ["run", "iteration", "epoch", "wall_s", "device_hours", "device_name", "n_devices"]
LOG_COLUMNS += ["eval_s", *METRICS]


def read_logs(directory: Path) -> pd.DataFrame:
    """All runs' evaluation logs, one row per line, with ``evaluation`` (1, 2, ...) per run."""
    rows = []
    for path in sorted(directory.glob(RUN_LOGS)):
        for count, line in enumerate(ResultsStore(path).records(), start=1):
            metrics = line.get("metrics") or {}
            row = {name: line.get(name) for name in LOG_COLUMNS if name not in METRICS}
            row["run"] = row["run"] or path.parent.name
            rows.append({**row, "evaluation": count, **{m: metrics.get(m) for m in METRICS}})
    return pd.DataFrame(rows, columns=[*LOG_COLUMNS, "evaluation"])


def read_pretraining(directory: Path) -> pd.DataFrame:
    """The shared backbone pretrainings (bench.pretrain's JSON summaries)."""
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


def digest(directory: Path) -> str:
    """sha256 over the results files' relative paths and bytes, in sorted order."""
    paths = [directory / MEASUREMENTS, *(directory / name for name in TRAINING)]
    paths += sorted(directory.glob(RUN_LOGS)) + sorted(directory.glob(PRETRAINING))
    hasher = hashlib.sha256()
    for path in sorted(p for p in paths if p.is_file()):
        hasher.update(str(path.relative_to(directory)).encode() + b"\0")
        hasher.update(path.read_bytes() + b"\0")
    return hasher.hexdigest()[:12]


def load_results(directory: str | Path) -> Results:
    """Read a results directory; missing files give empty tables."""
    directory = Path(directory)
    measurements = ResultsStore(directory / MEASUREMENTS).records()
    training = [r for name in TRAINING for r in ResultsStore(directory / name).records()]
    environments = environment_catalog([r.get("env") or {} for r in measurements + training])
    ids = dict(zip(environments["env_key"], environments["env_id"], strict=True))
    frames = [tidy(measurements), tidy(training)]
    for frame in frames:
        frame["env_id"] = frame["env_key"].map(ids)
    return Results(
        directory,
        *frames,
        read_logs(directory),
        environments,
        read_pretraining(directory),
        digest(directory),
    )
