"""Where the results were measured: the distinct environments of the records, numbered E1, E2, ...

Two records share an environment when every env field but the date agrees (device, device name
and count, threads, versions, host, commit); each environment keeps its first and last date.
"""

import json

import pandas as pd

from bench.report.table import Column, Table

IDENTITY = ("device", "device_name", "device_count", "threads", "torch", "cuda", "python", "host")
IDENTITY += ("commit",)
COLUMNS = ["env_id", "env_key", *IDENTITY, "first_date", "last_date"]


def environment_key(env: dict) -> str:
    """The identity of an environment: its fields except the date, as a canonical string."""
    return json.dumps({field: env.get(field) for field in IDENTITY}, sort_keys=True, default=str)


def environment_catalog(envs: list[dict]) -> pd.DataFrame:
    """One row per distinct environment, in order of first appearance, with its date range."""
    if not envs:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(
        [{**{f: env.get(f) for f in IDENTITY}, "date": env.get("date")} for env in envs]
    )
    frame["env_key"] = [environment_key(env) for env in envs]
    frame["date"] = frame["date"].fillna("").astype(str)
    dated = frame.groupby("env_key", sort=False).agg(
        first_date=("date", lambda d: min((x for x in d if x), default="")),
        last_date=("date", lambda d: max((x for x in d if x), default="")),
    )
    catalog = frame.drop_duplicates("env_key").drop(columns="date").join(dated, on="env_key")
    catalog.insert(0, "env_id", [f"E{i}" for i in range(1, len(catalog) + 1)])
    return catalog.reset_index(drop=True)[COLUMNS]


def describe(env: pd.Series) -> str:
    """One line: device name × count, threads, torch (CUDA), commit, dates."""
    cuda = env.get("cuda")
    versions = f"torch {env['torch']}" + ("" if pd.isna(cuda) or not cuda else f", CUDA {cuda}")
    dates = env["first_date"] or "date unknown"
    if env["last_date"] and env["last_date"] != env["first_date"]:
        dates += f" – {env['last_date']}"
    return (
        f"{env['env_id']}: {env['device_name']} × {env['device_count']} ({env['device']}), "
        f"{env['threads']} threads, {versions}, Python {env['python']}, host {env['host']}, "
        f"commit {env['commit']}, {dates}"
    )


def environments_table(environments: pd.DataFrame, used_by: dict[str, list[str]]) -> Table:
    """One row per environment, with the tables that use it."""
    columns = [Column(name) for name in ("id", "device", "device name", "count", "threads")]
    columns += [Column(name) for name in ("torch", "CUDA", "Python", "host", "commit", "dates")]
    columns += [Column("used by")]
    rows = []
    for _, env in environments.iterrows():
        dates = env["first_date"] or "unknown"
        if env["last_date"] and env["last_date"] != env["first_date"]:
            dates += f" – {env['last_date']}"
        fields = ("device", "device_name", "device_count", "threads", "torch", "cuda", "python")
        cells = [env["env_id"], *("none" if pd.isna(env[f]) else str(env[f]) for f in fields)]
        cells += [str(env["host"]), str(env["commit"]), dates]
        cells.append(", ".join(used_by.get(env["env_id"], [])) or "no table")
        rows.append(cells)
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        "environments",
        "Environment",
        frame,
        columns,
        notes=["Records share an environment when every env field but the date agrees."],
        env_ids=environments["env_id"].tolist(),
        empty="No records, so no environment.",
    )
