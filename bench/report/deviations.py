"""How the measured model differs from VisTR / Deformable VisTR, and what the data and
pretraining are — every line built from the preset's fields and the results, never from prose
that could go stale.

Per preset in the results (models.presets.get_preset), each model setting that VisTR also fixes
(bench.report.paper.VISTR) is listed as a deviation ("here X; VisTR: Y") or, in one line, as the
same. Two differences hold for every preset and come from the code: the mask head (models/heads.py:
a per-frame FPN over the preset's mask strides with a dynamic dot product, where VisTR fuses the
frames' mask features with 3D convolutions) and the instance score (models/postprocess.py's
PostProcess default). The data lines come from the training records (data set, iterations,
evaluations, validation videos) and the pretraining summaries (pretrained/*.json).
"""

import importlib
import inspect

from bench.report import runs
from bench.report.cells import number, plain
from bench.report.paper import VISTR
from bench.report.provenance import preset_key

FIELDS = [  # preset field, what it is
    ("backbone", "backbone"),
    ("backbone_norm", "backbone normalisation"),
    ("strides", "transformer feature strides"),
    ("num_frames", "frames per clip"),
    ("short_side", "input short side (pixels)"),
    ("d_model", "d_model"),
    ("n_heads", "attention heads"),
    ("enc_layers", "encoder layers"),
    ("dec_layers", "decoder layers"),
    ("dim_feedforward", "FFN width"),
    ("n_instances", "instance queries per frame"),
    ("query_embed", "query embedding"),
    ("focal_loss", "focal class loss"),
    ("no_object_weight", "no-object class weight"),
    ("loss_bbox", "L1 box loss weight"),
    ("loss_giou", "GIoU loss weight"),
    ("loss_mask", "mask loss weight"),
    ("loss_dice", "dice loss weight"),
]


def shown(value) -> str:
    if isinstance(value, tuple | list):
        return ", ".join(plain(v) for v in value)
    return plain(value)


def first_sentence(module: str, paragraph: int = 0) -> str:
    """The first sentence of a paragraph of a module's docstring (what the code says it does)."""
    doc = inspect.getdoc(importlib.import_module(module)) or ""
    parts = [p for p in doc.split("\n\n") if p.strip()]
    text = " ".join(parts[min(paragraph, len(parts) - 1)].split()) if parts else ""
    return text.split(". ")[0].rstrip(".") + "." if text else ""


def preset_lines(name: str) -> list[str]:
    """The deviations of one preset, then the settings it shares with VisTR, then the head."""
    from models.postprocess import PostProcess
    from models.presets import get_preset

    preset = get_preset(name)
    lines, same = [], []
    for field, what in FIELDS:
        value, vistr = getattr(preset, field), VISTR[field]
        if shown(value) == shown(vistr):
            same.append(f"{what} {shown(value)}")
        else:
            lines.append(f"{what}: {shown(value)} (VisTR: {shown(vistr)})")
    lines.append(
        f"mask head: per-frame FPN over backbone strides {shown(preset.mask_strides)} with "
        f"{preset.mask_dim}-channel pixel embeddings, each query's mask its embedding's dot "
        f"product with its frame's pixel embedding (models/heads.py); VisTR: {VISTR['mask_head']}"
    )
    scoring = inspect.signature(PostProcess).parameters["mask_scoring"].default
    if scoring:
        lines.append(
            "instance score: the class probability × the mask quality (mean mask probability "
            f"over its predicted pixels; models/postprocess.py); VisTR: {VISTR['scoring']}"
        )
    if same:
        lines.append("as VisTR: " + ", ".join(same))
    return lines


def data_lines(results) -> list[str]:
    """What the runs trained on and started from, from their records and the pretraining."""
    table = runs.run_table(results.training)
    lines = []
    for (kind, data), group in table.groupby(["kind", "data"], sort=True):
        planned = sorted({int(i) for i in group["planned_iterations"].dropna()})
        videos = sorted({int(v) for v in group["val_videos"].dropna()})
        seeds = sorted({int(s) for s in group["seed"].dropna()})
        line = (
            f"{kind}: data {data}, {', '.join(map(str, planned)) or '?'} iterations per run, "
            f"{', '.join(map(str, videos)) or '?'} validation videos per evaluation, seeds "
            f"{', '.join(map(str, seeds))}"
        )
        if data == "synthetic":
            line += f" — {first_sentence('bench.data.synthetic', 1)}"
        lines.append(line)
    flags = table["pretrained_backbone"].dropna().astype(bool) if not table.empty else []
    if len(flags):
        started = f"{int(sum(flags))} of {len(flags)} runs start from a shared pretrained backbone"
        if results.pretraining.empty:
            lines.append(started + " (its summary, pretrained/*.json, is not in the results)")
        else:
            done = "; ".join(
                f"{plain(row.iterations)} iterations at batch {plain(row.batch_size)}, "
                f"{number(row.seconds / 3600)} device-h"
                for row in results.pretraining.itertuples()
            )
            lines.append(
                f"{started}: {first_sentence('bench.pretrain').rstrip('.').lower()} ({done}), "
                "not counted in the runs' device-hours, as VisTR's ImageNet/COCO pretraining is "
                "not in its GPU-hours"
            )
    return lines


def presets_in(results) -> list[str]:
    from models.presets import PRESETS

    named = set(results.measurements["preset"]) | set(results.training["preset"])
    return sorted((p for p in named if p in PRESETS), key=preset_key)


def deviation_sections(results) -> list[tuple[str, list[str]]]:
    """(heading, lines) per preset in the results, then the data and pretraining."""
    sections = [(f"{name} preset", preset_lines(name)) for name in presets_in(results)]
    data = data_lines(results)
    if data:
        sections.append(("data and pretraining", data))
    return sections
