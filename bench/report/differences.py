"""Paired AP differences: each method against dense attention, and each option value against the
next one of its family (K against the next K, bench.report.ablation.families).

A difference is the mean over seeds of B's final AP minus A's, over the seeds both finished
(seed s: same data order and initial shared weights), with its 95% Student t interval
(bench.stats.paired_difference) and verdict: "not distinguishable at this scale" when the
interval contains 0.
"""

import pandas as pd

from bench.report import runs
from bench.report.ablation import ap_by_seed, families
from bench.report.cells import difference
from bench.report.methods import methods_of, reference_label
from bench.report.table import Column, Table
from bench.stats import METHOD, paired_difference, verdict


def pairs(group: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(A, B, why) in order: every method against the reference, then the families' steps."""
    methods = methods_of(group)["method"].tolist()
    reference = reference_label(methods_of(group))
    found = []
    if reference is not None:
        found += [(reference, m, "against dense") for m in methods if m != reference]
    for family in families(group):
        steps = zip(family.members, family.members[1:], strict=False)
        found += [(a, b, f"{family.option} {va} → {vb}") for (va, a), (vb, b) in steps]
    return found


def differences_table(results) -> Table:
    table = runs.run_table(results.ablation)
    grouped = runs.groups(table)
    columns = [Column("B − A"), Column("comparison"), Column("Δ AP (points)", numeric=True)]
    columns += [Column("seeds", numeric=True), Column("verdict")]
    rows = []
    if grouped:
        (preset, data), group = grouped[0]
        for a, b, why in pairs(group):
            interval = paired_difference(ap_by_seed(group, a), ap_by_seed(group, b))
            rows.append(
                [
                    f"{b} − {a}",
                    why,
                    difference(interval, lambda v: f"{v:.1f}"),
                    str(interval.n if interval else 0),
                    verdict(interval) if interval else "— (no paired seeds)",
                ]
            )
        title = f"Paired differences in AP: {preset} preset, {data} data"
    else:
        title = "Paired differences in AP"
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        "differences",
        title,
        frame,
        columns,
        notes=[
            f"Δ AP: B's final AP minus A's, mean over the seeds both finished, ± the half-width "
            f"of its {METHOD}; seeds: how many pairs."
        ],
        short="paired differences",
        empty="No ablation runs to compare (python -m bench.ablate produces them).",
    )
