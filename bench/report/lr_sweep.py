"""The learning-rate sweep (bench.study lr): per configuration and rate, AP over seeds.

Each configuration's chosen rate is the one with the highest mean final AP over seeds, as
bench.study.choose_lr picks it (marked "chosen"); the rate the ablation trained the configuration
at is marked too, so a sweep and an ablation that disagree show it.
"""

import pandas as pd

from bench.report import runs
from bench.report.cells import estimate
from bench.report.methods import methods_of
from bench.report.table import Column, Table
from bench.stats import METHOD, mean_interval

MISSING = "No learning-rate sweep (lr_sweep.jsonl): python -m bench.study lr produces it."


def lr_table(results) -> Table:
    sweep = runs.run_table(results.of_kind("lr_sweep"))
    ablation = runs.run_table(results.ablation)
    columns = [
        Column("configuration"),
        Column("lr", numeric=True),
        Column("seeds ok", numeric=True),
    ]
    columns += [Column("AP (%)", numeric=True), Column("choice")]
    rows = []
    for method in methods_of(sweep)["method"]:
        mine = sweep[sweep["method"] == method]
        means = {}
        for lr, at_rate in mine.groupby("lr", sort=True):
            means[lr] = mean_interval([100 * v for v in runs.per_seed(at_rate, "AP").values()])
        known = {lr: m.value for lr, m in means.items() if m is not None}
        chosen = max(known, key=known.get) if known else None
        trained = set(ablation.loc[ablation["method"] == method, "lr"].dropna())
        for lr, interval in means.items():
            at_rate = mine[mine["lr"] == lr]
            marks = ["chosen"] if lr == chosen else []
            marks += ["the ablation's"] if lr in trained else []
            rows.append(
                [
                    method,
                    f"{lr:.3g}",
                    f"{len(runs.usable(at_rate))} of {len(at_rate)}",
                    estimate(interval, lambda v: f"{v:.1f}"),
                    ", ".join(marks) or "not chosen",
                ]
            )
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        "lr-sweep",
        "Learning-rate sweep",
        frame,
        columns,
        notes=[
            f"Final validation AP, mean ± {METHOD}. chosen: the rate with the highest mean AP "
            "(bench.study.choose_lr); the ablation's: the rate the ablation trained this "
            "configuration at."
        ],
        short="learning-rate sweep",
        empty=MISSING,
    )
