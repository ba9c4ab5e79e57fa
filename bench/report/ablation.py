"""Ablations over a backend's options: K, and any other option that varies among its methods.

Among the ablation's single-backend methods (no hybrid decoder), a *family* is a set of methods
of one backend that differ in exactly one option — e.g. stdeform frames at K = 16 and 32
(option n_points), or stdeform 3d and frames at K = 16 (option mode). One table per (backend,
option): per family and value, AP mean ± 95% interval over seeds, and the paired difference to
the family's previous value (bench.stats.paired_difference: the seeds both finished) with its
verdict. Nothing here names a backend's options: window sizes or neighbourhood kernels get their
tables the same way K does. Rows that are the poster's formulation say so (bench.report.paper).
"""

import dataclasses
import json

import pandas as pd

from bench.report import paper, runs
from bench.report.cells import difference, estimate
from bench.report.methods import value_key
from bench.report.table import Column, Table
from bench.stats import METHOD, mean_interval, paired_difference, verdict


@dataclasses.dataclass
class Family:
    """Methods of one backend that differ only in ``option``: (value, method label) in order."""

    backend: str
    option: str
    fixed: dict  # the other options, shared by the family
    members: list[tuple[object, str]]

    @property
    def setting(self) -> str:
        shown = [f"{k}={v}" for k, v in self.fixed.items() if v is not None]
        return ", ".join(shown) or "defaults"


def families(trained: pd.DataFrame) -> list[Family]:
    """Every family among the single-backend methods of ``trained`` (run table or records)."""
    pure = trained[trained["decoder"].isna()] if not trained.empty else trained
    if pure.empty:
        return []
    methods = pure.drop_duplicates("method")
    found = []
    for backend, group in methods.groupby("backend", sort=True):
        options = [dict(o) for o in group["options"]]
        names = sorted({name for o in options for name in o})
        for option in names:
            grouped: dict[str, list] = {}
            for opts, method in zip(options, group["method"], strict=True):
                fixed = {k: v for k, v in sorted(opts.items()) if k != option}
                grouped.setdefault(json.dumps(fixed, default=str), []).append(
                    (opts.get(option), method)
                )
            for fixed, members in grouped.items():
                if len({json.dumps(v) for v, _ in members}) < 2:
                    continue
                members.sort(key=lambda m: value_key(m[0]))
                found.append(Family(backend, option, json.loads(fixed), members))
    return found


def option_title(backend: str, option: str) -> str:
    return f"K ({backend} {option})" if (backend, option) == paper.K_OPTION else option


def ap_by_seed(group: pd.DataFrame, method: str) -> dict[int, float]:
    return {s: 100 * v for s, v in runs.per_seed(group[group["method"] == method], "AP").items()}


def family_rows(family: Family, group: pd.DataFrame) -> list[list[str]]:
    rows, previous = [], None
    for value, method in family.members:
        mine = group[group["method"] == method]
        aps = ap_by_seed(group, method)
        reason = mine["state"].iloc[-1] if runs.usable(mine).empty and not mine.empty else "not run"
        cells = [family.setting, str(value), method]
        cells.append(estimate(mean_interval(aps.values()), lambda v: f"{v:.1f}", reason))
        if previous is None:
            cells += ["— (first value)", "— (first value)"]
        else:
            interval = paired_difference(previous[1], aps)
            if interval is None:
                cells += ["— (no paired seeds)"] * 2
            else:
                shown = difference(interval, lambda v: f"{v:.1f}")
                cells += [f"{shown} vs {previous[0]}", verdict(interval)]
        options = {**family.fixed, family.option: value}
        cells.append(paper.formulation(family.backend, options) or "not in the poster")
        rows.append(cells)
        previous = (value, aps)
    return rows


def option_tables(results) -> list[Table]:
    """One table per (backend, option) that varies in the ablation's main (preset, data) group."""
    table = runs.run_table(results.ablation)
    grouped = runs.groups(table)
    if not grouped:
        return []
    (preset, data), group = grouped[0]
    by_option: dict[tuple, list[Family]] = {}
    for family in families(group):
        by_option.setdefault((family.backend, family.option), []).append(family)
    tables = []
    for (backend, option), found in by_option.items():
        title = option_title(backend, option)
        numeric = all(isinstance(v, int | float) for f in found for v, _ in f.members)
        columns = [Column("setting"), Column(title, numeric=numeric), Column("method")]
        columns += [Column("AP (%)", numeric=True), Column("Δ AP (points), paired", numeric=True)]
        columns += [Column("verdict"), Column("formulation")]
        rows = [row for family in found for row in family_rows(family, group)]
        frame = pd.DataFrame(rows, columns=[c.name for c in columns])
        tables.append(
            Table.from_frame(
                f"ablation-{backend}-{option}".replace("_", "-"),
                f"Ablation over {title}: {preset} preset, {data} data",
                frame,
                columns,
                notes=[
                    f"AP: final validation AP, mean ± {METHOD}. Δ AP: the mean over seeds of "
                    "this value's AP minus the previous value's, paired by seed (same data "
                    "order and initial weights), with its interval; “not distinguishable at "
                    "this scale” when the interval contains 0.",
                    "Runs cut by the wall-clock cap or failed are left out (accuracy table).",
                ],
                short=f"ablation over {option}",
            )
        )
    return tables
