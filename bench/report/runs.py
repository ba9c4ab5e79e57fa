"""Training runs as one row each: identity, state, final metrics, convergence and cost.

bench.ablate and bench.study write one record per (run, metric); ``run_table`` pivots them. A
run's ``state`` is

- "ok": its records are "ok" and its run_status is "ok" (every planned iteration ran): usable;
- "budget": the wall-clock safety cap cut it (run_status "budget"): excluded from every mean
  and comparison, and listed;
- the failure status ("error: ...", "OOM", "timeout"): it never finished; listed.

Runs of one configuration (same kind, preset, data, method and learning rate) differ only by seed
and are compared with other configurations seed by seed (bench.stats).
"""

import pandas as pd

from bench.report.load import METRICS
from bench.stats import Censored, mean_interval

TO_TARGET = ["iterations_to_target", "evaluations_to_target", "epochs_to_target"]
TO_TARGET += ["device_hours_to_target"]
COSTS = ["iterations", "evaluations", "val_videos", "device_hours", "eval_seconds", "epochs"]
COSTS += ["peak_memory"]
IDENTITY = ["run", "kind", "method", "backend", "options", "decoder", "preset", "backbone"]
IDENTITY += ["data", "seed", "lr", "budget_minutes", "pretrained_backbone", "device_name"]
IDENTITY += ["env_id"]
GROUP = ["kind", "preset", "data", "method", "lr"]


def run_table(training: pd.DataFrame) -> pd.DataFrame:
    """One row per run: IDENTITY, planned_iterations, state, failure, target_AP, the metrics."""
    columns = [*IDENTITY, "planned_iterations", "state", "failure", "target_AP", "reason"]
    columns += [*METRICS, *TO_TARGET, *COSTS]
    rows = []
    for _, records in training.groupby("run", sort=False, dropna=True):
        first = records.iloc[-1]
        row = {name: first.get(name) for name in IDENTITY}
        row["planned_iterations"] = first.get("iterations")
        failures = records["failure"].dropna()
        statuses = [s for s in records["status"] if s != "ok"]
        run_status = first.get("run_status")
        if statuses:
            row["state"] = statuses[-1]
        elif isinstance(run_status, str) and run_status != "ok":
            row["state"] = run_status
        else:
            row["state"] = "ok"
        row["failure"] = failures.iloc[-1] if not failures.empty else None
        targets = records["target_AP"].dropna()
        row["target_AP"] = float(targets.iloc[-1]) if not targets.empty else None
        reasons = records.loc[records["metric"].isin(TO_TARGET), "reason"].dropna()
        row["reason"] = reasons.iloc[-1] if not reasons.empty else None
        values = records[records["failure"].isna()].set_index("metric")["value"]
        for metric in (*METRICS, *TO_TARGET, *COSTS):
            row[metric] = float(values[metric]) if metric in values.index else None
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def usable(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["state"] == "ok"]


def per_seed(runs: pd.DataFrame, column: str) -> dict[int, float]:
    """Seed -> value of the usable runs that have one."""
    ok = usable(runs).dropna(subset=[column])
    return {int(seed): float(value) for seed, value in zip(ok["seed"], ok[column], strict=True)}


def mean_of(runs: pd.DataFrame, column: str):
    """Mean ± 95% t interval over the usable runs' values of ``column`` (None without any)."""
    return mean_interval(per_seed(runs, column).values())


def censored(runs: pd.DataFrame, column: str) -> Censored:
    """The usable runs' values of a to-target column: those that reached, out of all usable."""
    ok = usable(runs)
    return Censored(tuple(float(v) for v in ok[column].dropna()), len(ok))


def excluded(runs: pd.DataFrame) -> list[str]:
    """The runs left out of means: "run (budget)", "run (error: ...)"."""
    return [f"{r.run} ({r.state})" for r in runs.itertuples() if r.state != "ok"]


def groups(runs: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """(preset, data) groups of runs, the one with most usable runs first."""
    if runs.empty:
        return []
    found = []
    for key, group in runs.groupby(["preset", "data"], sort=True, dropna=False):
        found.append((key, group))
    return sorted(found, key=lambda item: -len(usable(item[1])))
