"""Hybrids: the encoder's and the decoder's attention chosen apart, as a grid.

When the ablation has hybrid runs (a decoder other than the one the encoder implies), the specs
they combine span a grid: rows the encoder's attention, columns the decoder's; each cell the
configuration's AP mean ± 95% interval over seeds and its paired difference to dense attention
(the full (sdpa) × full (sdpa) cell). For full × deformable this is the 2×2 that separates what
the encoder's and the decoder's attention each contribute.
"""

import pandas as pd

from bench.method import implied_decoder, spec_label
from bench.report import runs
from bench.report.ablation import ap_by_seed
from bench.report.cells import difference, estimate
from bench.report.methods import reference_label
from bench.report.table import Column, Table
from bench.stats import METHOD, mean_interval, paired_difference, verdict

MISSING = (
    "No hybrid runs: python -m bench.ablate --hybrids full/stdeform:mode=frames "
    "stdeform:mode=frames/full trains the encoder × decoder grid."
)


def sides(backend, options, decoder) -> tuple[str, str]:
    """(encoder label, decoder label) of a method; an implied decoder is resolved through the
    registry (the encoder's own spec, or dense for an encoder-only backend)."""
    encoder = spec_label(backend, options)
    if decoder:
        return encoder, spec_label(decoder.get("backend"), decoder.get("options"))
    try:
        from attention.registry import parse_backend

        return encoder, implied_decoder(
            parse_backend({"backend": backend, "options": options})
        ).label
    except (ValueError, KeyError, TypeError):  # not registered here: assume the same spec
        return encoder, encoder


def hybrids_table(results) -> Table | None:
    """The grid, or None when the ablation has no hybrid."""
    table = runs.run_table(results.ablation)
    grouped = runs.groups(table)
    if not grouped:
        return None
    (preset, data), group = grouped[0]
    methods = group.drop_duplicates("method")
    hybrids = methods[methods["decoder"].notna()]
    if hybrids.empty:
        return None
    cells = {}
    for row in methods.itertuples():
        cells[sides(row.backend, row.options, row.decoder)] = row.method
    specs = []
    for row in hybrids.itertuples():
        specs += [s for s in sides(row.backend, row.options, row.decoder) if s not in specs]
    reference = reference_label(methods)
    dense = ap_by_seed(group, reference) if reference else {}
    columns = [Column("encoder ↓ · decoder →")]
    columns += [Column(spec, "decoder", numeric=True) for spec in specs]
    rows, kinds = [], []
    for encoder in specs:
        line = [encoder]
        for decoder in specs:
            method = cells.get((encoder, decoder))
            if method is None:
                line.append("— (not run)")
                continue
            aps = ap_by_seed(group, method)
            text = estimate(mean_interval(aps.values()), lambda v: f"{v:.1f}")
            if method != reference and dense:
                interval = paired_difference(dense, aps)
                text += f"\nΔ vs dense {difference(interval, lambda v: f'{v:.1f}')}"
                text += f"\n{verdict(interval) if interval else 'no paired seeds'}"
            line.append(text)
        rows.append(line)
        kinds.append("measured")
    frame = pd.DataFrame(rows, columns=[f"{c.group}/{c.name}" for c in columns])
    return Table.from_frame(
        "hybrids",
        f"Hybrids: encoder × decoder attention, {preset} preset, {data} data",
        frame,
        columns,
        kinds,
        notes=[
            f"Final validation AP (%), mean ± {METHOD}; Δ vs dense: the paired difference to "
            "the full (sdpa) encoder and decoder, with its verdict."
        ],
        short="hybrids",
    )
