"""What the Deformable VisTR poster and VisTR report, kept apart from everything measured here.

- ``METHODS`` and ``K_ABLATION``: the poster's figures (ResNet-50, YouTube-VIS 2019), shown only in
  their own table, rows marked "reported" (``reported_table``); never averaged with, sorted among
  or plotted as measured results.
- ``FORMULATIONS``: which measured configurations are the poster's formulation, for the
  ablation tables.
- ``VISTR``: VisTR's model settings (Wang et al., CVPR 2021, with ResNet-50), against which the
  deviations section compares a preset.
"""

import pandas as pd

from bench.report.methods import complexity
from bench.report.table import Column, Table

SOURCE = "Deformable VisTR poster; ResNet-50, YouTube-VIS 2019"
SETTING = "ResNet-50, YouTube-VIS 2019"

# Poster tables 4 and 5: training time (GPU-hours, total), epochs (total), FPS (GPU), AP (%).
METHODS = [
    {"method": "VisTR", "backend": "full", "gpu_hours": 1000, "epochs": "~500", "fps": 30.0,
     "AP": 35.6},
    {"method": "Deformable VisTR", "backend": "stdeform", "gpu_hours": 120, "epochs": "50",
     "fps": 33.0, "AP": 34.6},
]  # fmt: skip

# Poster table 6: ablation over K (sampling points per query).
K_ABLATION = [{"K": 16, "AP": 33.8}, {"K": 32, "AP": 34.6}]
K_OPTION = ("stdeform", "n_points")  # the option the poster calls K

# Measured configurations that are the poster's formulation, or another axis of it: a backend,
# the options that select it, and what to call it in the ablation tables.
FORMULATIONS = [
    ("stdeform", {"mode": "frames"}, "the poster's formulation (official Deformable VisTR)"),
    ("stdeform", {"mode": "3d"}, "second axis: K free (Δx, Δy, Δt) points"),
    ("stdeform", {"mode": "frame"}, "control: the query's own frame only (2D)"),
]

# VisTR with ResNet-50 on YouTube-VIS (the paper preset reproduces it; models/presets.py).
VISTR = {
    "backbone": "resnet50",
    "backbone_norm": "frozen",
    "strides": (32,),
    "num_frames": 36,
    "short_side": 300,
    "d_model": 384,
    "n_heads": 8,
    "enc_layers": 6,
    "dec_layers": 6,
    "dim_feedforward": 2048,
    "n_instances": 10,
    "query_embed": "per_query",
    "focal_loss": False,
    "no_object_weight": 0.1,
    "loss_bbox": 5.0,
    "loss_giou": 2.0,
    "loss_mask": 1.0,
    "loss_dice": 1.0,
    "mask_head": "3D convolutions fusing the frames' mask features",
    "scoring": "class probability alone",
}


def formulation(backend: str, options: dict) -> str:
    """What the poster calls a measured configuration, or "" when it is none of its forms."""
    for name, selects, text in FORMULATIONS:
        if backend == name and all(options.get(k) == v for k, v in selects.items()):
            return text
    return ""


def dense_over_deformable() -> float:
    """The poster's training-time ratio, VisTR / Deformable VisTR GPU-hours (≈ 8.3)."""
    return METHODS[0]["gpu_hours"] / METHODS[1]["gpu_hours"]


def reported_table() -> Table:
    """The poster's figures in a table of their own, every row marked reported."""
    columns = [
        Column("method"),
        Column("complexity"),
        Column("training (GPU-h, total)", numeric=True),
    ]
    columns += [Column("epochs", numeric=True), Column("FPS (GPU)", numeric=True)]
    columns += [Column("AP (%)", numeric=True)]
    rows = [
        [
            e["method"],
            complexity(e["backend"]),
            f"{e['gpu_hours']}",
            e["epochs"],
            f"{e['fps']:.1f}",
            f"{e['AP']:.1f}",
        ]
        for e in METHODS
    ]
    rows += [
        [f"Deformable VisTR, K = {e['K']}", complexity("stdeform"), "—", "—", "—", f"{e['AP']:.1f}"]
        for e in K_ABLATION
    ]
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    notes = [
        f"Figures published in the poster ({SOURCE}), not measured here and never mixed into "
        "the measured tables; — : the poster gives none. Training time and epochs are totals; "
        f"VisTR / Deformable VisTR = {dense_over_deformable():.1f}× GPU-hours, the ratio the "
        "convergence study measures its own version of.",
        "Complexity: the suite's backends' own statements (attention.registry).",
    ]
    return Table.from_frame(
        "reported",
        f"Reported in the poster: {SETTING}",
        frame,
        columns,
        ["reported"] * len(rows),
        notes=notes,
        short="reported in the poster",
    )
