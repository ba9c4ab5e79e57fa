"""Time against tokens: fitted exponents per encoder spec and device, beside the analytic ones.

One row per (encoder spec, device) of the scaling sweeps (bench.report.scaling): the log-log
exponent of one encoder layer's median time over the T sweep, the H×W sweep, all points and the
upper half; the analytic exponent of the layer's MACs over the same upper-half points; the upper
half's R² and its points' largest spread. A noisy fit (bench.report.noise) is marked, never
printed as if clean.
"""

import pandas as pd

from bench.report.cells import exponent, missing, plain
from bench.report.noise import FIT_RULE, MARK, NOISY_SPREAD
from bench.report.provenance import env_ids, measured_in, short_device
from bench.report.scaling import SELECTIONS, UPPER_HALF, TimeFit, scaling_records, sweeps
from bench.report.table import Column, Table


def fit_cell(fit: TimeFit) -> str:
    """The exponent, marked when noisy, with the failed points it left out."""
    excluded = ", ".join(f"{n} {status}" for status, n in sorted(fit.excluded.items()))
    if fit.fit is None:
        why = f"{fit.usable} usable point{'s' if fit.usable != 1 else ''}, a fit needs 2"
        return missing(f"{why}; {excluded} excluded" if excluded else why)
    text = exponent(fit.fit.slope) + (f" {MARK}" if fit.problems else "")
    return f"{text} ({excluded} excluded)" if excluded else text


def exponents_table(results) -> Table:
    columns = [Column("method"), Column("device")]
    columns += [Column(name, "time ∝ tokens^b", numeric=True) for _, name in SELECTIONS]
    columns += [Column("analytic", "upper half", numeric=True)]
    columns += [
        Column("R²", "upper half", numeric=True),
        Column("spread", "upper half", numeric=True),
    ]
    columns += [Column("points ok / measured", numeric=True)]
    rows = []
    for sweep in sweeps(results):
        cells = [sweep.method, short_device(sweep.device_name)]
        fits = {selection: sweep.time_fit(selection) for selection, _ in SELECTIONS}
        cells += [fit_cell(fits[selection]) for selection, _ in SELECTIONS]
        analytic = sweep.analytic_slope(UPPER_HALF)
        cells.append(exponent(analytic) if isinstance(analytic, float) else missing(analytic))
        upper = fits[UPPER_HALF]
        if upper.fit is None:
            cells += [missing("no fit"), missing("no fit")]
        else:
            cells.append(f"{upper.fit.r2:.3f}")
            noisy = f" {MARK}" if upper.spread is not None and upper.spread > NOISY_SPREAD else ""
            cells.append(
                f"{upper.spread:.2f}{noisy}" if upper.spread is not None else missing("no repeats")
            )
        points = sweep.metric("time")
        cells.append(f"{len(sweep.ok('time'))} / {len(points)}")
        rows.append(cells)
    frame = pd.DataFrame(rows, columns=[f"{c.group}/{c.name}" for c in columns])
    records = scaling_records(results)
    layers = sorted({f"d {plain(r.d_model)}, {plain(r.n_heads)} heads, FFN {plain(r.dim_feedforward)}"
                     for r in records.drop_duplicates("method").itertuples()})  # fmt: skip
    notes = [
        measured_in(env_ids(records), results.environments),
        f"One encoder layer ({'; '.join(layers) or '?'}) forward, median time of the timed "
        "repeats, against tokens = T·H·W; b by least squares on log-log axes. Upper half: the "
        "points at or above the median of the grid's token counts, where the attention "
        "dominates; below it the projections and FFN pull a quadratic mechanism's exponent "
        "down. Analytic: the exponent of the layer's MACs by formula (backend + FFN + norms) "
        "over the same points — what a kernel of constant efficiency would show. Spread: the "
        "largest IQR / median of the upper-half points' timing repeats.",
        FIT_RULE + ".",
    ]
    return Table.from_frame(
        "scaling-time",
        "Scaling: time against tokens",
        frame,
        columns,
        notes=notes,
        short="time scaling",
        env_ids=env_ids(records),
        empty="No scaling sweeps recorded (python -m bench.measure --metrics scaling).",
    )
