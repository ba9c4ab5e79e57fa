"""Which FLOP counters are independent of which, per operator family.

fvcore and torch's FlopCounterMode see convolutions, linear layers and explicit matmuls and count
their arithmetic themselves, so there they check each other and the backends' analytic formulas.
For the operators the suite gives a formula to — bench.measure.flops.FVCORE_HANDLES for fvcore
(SDPA, the STDeformAttn op, and any backend's op that adds one) and flop_counter_formulas for
FlopCounterMode — both counters apply the suite's own formula to the operator's shapes, the same
arithmetic the backend's mac_breakdown states, so there the three counts agree by construction
and are one count, not three. The rows for those operators come from FVCORE_HANDLES itself, so a
handle added for a new backend shows up here.
"""

import inspect

import pandas as pd

from bench.report.table import Column, Table

OWN = "counts it itself"
FAMILIES = [  # family, fvcore, FlopCounterMode, analytic, independent?
    ("convolutions (backbone, mask head)", OWN, OWN, "no formula", "yes: fvcore and FlopCounterMode"),
    ("linear layers (projections, FFN, heads)", OWN, OWN,
     "projections and FFN of the encoder layer", "yes: all three"),
    ("explicit matmuls (matmul, bmm, einsum; e.g. full (math)'s QKᵀ and AV)", OWN, OWN,
     "the backend's attention formula", "yes: all three"),
]  # fmt: skip
OTHERS = (
    "elementwise, normalisation, softmax, interpolation",
    "its formulas for norms and upsampling; others uncounted (listed below)",
    "not counted",
    "norms at 5 MACs per element (encoder layer)",
    "no: approximations, small (uncounted share below)",
)


def formula_name(handle) -> str:
    """The formula a handle applies: the first suite function it calls, by name."""
    source = inspect.getsource(handle)
    called = [name for name in ("stdeform_macs", "sdpa_macs") if name in source]
    return called[0] if called else handle.__name__


def counters_table() -> Table:
    """One row per operator family: what each counter does with it, and whether they are
    independent there."""
    from bench.measure.flops import FVCORE_HANDLES

    rows = [list(family) for family in FAMILIES]
    for operator, handle in FVCORE_HANDLES.items():
        formula = f"the suite's {formula_name(handle)} (bench/measure/flops.py)"
        rows.append(
            [
                operator,
                formula,
                f"{formula} where torch has none (flop_counter_formulas)",
                "the backend's mac_breakdown: the same arithmetic",
                "no: one formula, three times",
            ]
        )
    rows.append(list(OTHERS))
    columns = [Column("operator family"), Column("fvcore"), Column("FlopCounterMode")]
    columns += [Column("analytic"), Column("independent?")]
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    return Table.from_frame(
        "flop-counters",
        "FLOP counters: where they are independent",
        frame,
        columns,
        notes=[
            "Where all three apply the suite's formula, their agreement checks the bookkeeping "
            "(shapes, layer counts), not the formula; where fvcore and FlopCounterMode count "
            "the arithmetic themselves, they check the formulas."
        ],
        short="counter independence",
    )
