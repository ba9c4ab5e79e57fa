"""The data a command trains and evaluates on, from the text of its `--data` option.

    resolve_data("synthetic")                          # the suite's default synthetic set
    resolve_data("synthetic:videos=20,frames=6")       # a synthetic spec; omitted fields default
    resolve_data("/data/youtube_vis_2019")             # a directory in the YouTube-VIS layout

A synthetic spec's set lives in ROOT/synthetic-<spec name> (bench.data.synthetic.default_folder;
ROOT is "data" by default) and is generated there when absent, reused when complete, and never
deleted or overwritten (see bench.data.synthetic.ensure_synthetic). The result maps root,
train_images, train_annotations, val_images and val_annotations (bench.data.ytvis.layout) to
paths; a synthetic set adds its manifest.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.data.ytvis import layout

SYNTHETIC = "synthetic"
PRETRAIN_SEED_OFFSET = 1000  # the pretraining set of a synthetic spec draws from seed + this


def resolve_data(text: str, root: str | os.PathLike = "data") -> dict[str, Path]:
    """The paths of the data named by text (module docstring). A synthetic spec that does not
    parse raises bench.data.synthetic.SpecError (a ValueError) naming the field; a directory
    that does not hold the YouTube-VIS layout raises FileNotFoundError naming the missing piece."""
    name, colon, spec_text = text.partition(":")
    if name == SYNTHETIC:
        from bench.data import synthetic  # here: `python -m bench.data.synthetic` runs it fresh

        spec = synthetic.SyntheticSpec.parse(spec_text) if colon else synthetic.DEFAULT_SPEC
        return synthetic.ensure_synthetic(spec, synthetic.default_folder(spec, root))
    if not Path(text).exists():
        raise FileNotFoundError(
            f"data {text!r} is neither 'synthetic', 'synthetic:FIELD=VALUE,...' nor an existing "
            "directory"
        )
    return layout(text, check=True)


def pretraining_data(text: str) -> tuple[str, bool]:
    """The --data text of the set a shared backbone pretrains on, and whether it is disjoint from
    the training and validation videos of ``text``: for a synthetic spec, the same spec drawn
    from seed + PRETRAIN_SEED_OFFSET (other video streams, one validation video); a directory
    pretrains on its own training split (not disjoint: give pretrained weights for real data)."""
    name, colon, spec_text = text.partition(":")
    if name != SYNTHETIC:
        return text, False
    from dataclasses import replace

    from bench.data import synthetic

    spec = synthetic.SyntheticSpec.parse(spec_text) if colon else synthetic.DEFAULT_SPEC
    other = replace(spec, seed=spec.seed + PRETRAIN_SEED_OFFSET, val_videos=1)
    return f"{SYNTHETIC}:{other}", True
