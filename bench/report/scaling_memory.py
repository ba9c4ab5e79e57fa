"""Memory against tokens: peak ≈ a + b·S + c·S², per encoder spec and device.

The quadratic term tells which implementations materialise the attention matrix: one fp32 S×S
matrix per head costs 4 · heads bytes per token², so c / (4 · heads) counts the S×S matrices
alive at the peak — about 2 for full attention computed explicitly (impl math: the scores and
their softmax), about 0 for SDPA where it does not materialise them (a fused or memory-efficient
kernel), and 0 for mechanisms linear in S. b is what every token costs (activations of the
projections and the FFN), a the constant. R² and the point count qualify every fit
(bench.report.noise).
"""

import pandas as pd

from bench.report.cells import missing, number
from bench.report.noise import MARK, MIN_POINTS, MIN_R2
from bench.report.provenance import env_ids, measured_in, short_device
from bench.report.scaling import scaling_records, sweeps
from bench.report.table import Column, Table

FP32 = 4  # bytes


def matrices(c: float, heads) -> str:
    """c as the number of fp32 S×S matrices of all heads it pays for."""
    try:
        per_matrix = FP32 * int(heads)
    except (TypeError, ValueError):
        return missing("heads unknown")
    count = c / per_matrix
    return "0.00" if abs(count) < 0.005 else f"{count:.2f}"


def memory_table(results) -> Table:
    columns = [Column("method"), Column("device")]
    columns += [Column("a (MiB)", "peak ≈ a + b·S + c·S²", numeric=True)]
    columns += [Column("b (B/token)", "peak ≈ a + b·S + c·S²", numeric=True)]
    columns += [Column("c (B/token²)", "peak ≈ a + b·S + c·S²", numeric=True)]
    columns += [Column("R²", numeric=True), Column("points", numeric=True)]
    columns += [Column("S×S fp32 matrices (c / 4·heads)", numeric=True)]
    rows = []
    for sweep in sweeps(results):
        cells = [sweep.method, short_device(sweep.device_name)]
        fit = sweep.memory_fit()
        if fit is None:
            cells += [missing("fewer than 3 points")] * 4 + [str(len(sweep.ok("peak_memory")))]
            cells.append(missing("no fit"))
        else:
            noisy = fit.r2 < MIN_R2 or fit.points < MIN_POINTS
            cells += [number(fit.constant / 2**20), number(fit.linear), f"{fit.quadratic:.3g}"]
            cells += [f"{fit.r2:.3f}" + (f" {MARK}" if noisy else ""), str(fit.points)]
            cells.append(matrices(fit.quadratic, sweep.layer["n_heads"]))
        rows.append(cells)
    frame = pd.DataFrame(rows, columns=[f"{c.group}/{c.name}" for c in columns])
    records = scaling_records(results)
    how = ", ".join(sorted(set(records["measured_by"].dropna()))) or "the harness"
    notes = [
        measured_in(env_ids(records), results.environments),
        f"Peak memory of one encoder layer's forward ({how}) in bytes against tokens S, least "
        "squares over every usable point of both sweeps. One fp32 S×S matrix per head costs "
        "4 · heads bytes per token²: full attention computed explicitly (math) keeps about two "
        "(the scores and their softmax), SDPA materialises none where its kernel is fused or "
        "memory-efficient (c ≈ 0), and mechanisms linear in S have none.",
        f"{MARK}: R² < {MIN_R2} or fewer than {MIN_POINTS} points.",
    ]
    return Table.from_frame(
        "scaling-memory",
        "Scaling: memory against tokens",
        frame,
        columns,
        notes=notes,
        short="memory scaling",
        env_ids=env_ids(records),
        empty="No scaling sweeps recorded (python -m bench.measure --metrics scaling).",
    )
