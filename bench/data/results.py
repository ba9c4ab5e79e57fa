"""YouTube-VIS results: the list a model's predictions are written as, and read back from.

One entry per predicted instance track:

    {"video_id": int, "category_id": int, "score": float,
     "segmentations": [RLE or None, ...]}      # one entry per frame of the video

Each RLE is compressed, `{"size": [H, W], "counts": str}`, H and W positive and the counts decoding
to exactly H*W pixels; None (JSON null) marks a frame where the instance is absent (the evaluator
treats it like an empty mask). Errors are YTVISFormatError naming the file (when read from one),
the result's index and video id, and the frame. `check_results` validates a
list on its own; whether ids and frame counts fit a ground-truth file is the evaluator's check.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from bench.data.ytvis import YTVISFormatError, check_counts, is_int, is_number, read_json

RESULT_KEYS = ("video_id", "category_id", "score", "segmentations")


def _check_entry(entry: Any, i: int, source: str, pending: list) -> dict:
    where = f"{source}: result {i}"
    if not isinstance(entry, dict):
        raise YTVISFormatError(f"{where} is a {type(entry).__name__}, expected an object")
    for key in RESULT_KEYS:
        if key not in entry:
            raise YTVISFormatError(f"{where}: missing key '{key}'")
    where = f"{where} (video_id {entry['video_id']!r})"
    for key in ("video_id", "category_id"):
        if not is_int(entry[key]):
            raise YTVISFormatError(f"{where}: field '{key}' is {entry[key]!r}, expected int")
    score = entry["score"]
    if not (is_number(score) and math.isfinite(score)):
        raise YTVISFormatError(f"{where}: field 'score' is {score!r}, expected a finite number")
    segs = entry["segmentations"]
    if not (isinstance(segs, list) and segs):
        raise YTVISFormatError(f"{where}: field 'segmentations' is not a non-empty list")
    sizes = set()
    checked = []
    for t, seg in enumerate(segs):
        if seg is None:
            checked.append(None)
            continue
        counts = seg.get("counts") if isinstance(seg, dict) else None
        size = seg.get("size") if isinstance(seg, dict) else None
        if not (
            isinstance(counts, (str, bytes))
            and isinstance(size, (list, tuple))
            and len(size) == 2
            and all(map(is_int, size))
        ):
            raise YTVISFormatError(
                f"{where}: 'segmentations[{t}]' is not null or a compressed RLE "
                "{'size': [H, W], 'counts': str}"
            )
        if min(size) < 1:
            raise YTVISFormatError(
                f"{where}: 'segmentations[{t}].size' is {list(size)}, expected positive [H, W]"
            )
        pending.append((counts, int(size[0]), int(size[1]), f"{where}: 'segmentations[{t}]'"))
        sizes.add((int(size[0]), int(size[1])))
        counts = counts.decode("ascii") if isinstance(counts, bytes) else counts
        checked.append({"size": [int(size[0]), int(size[1])], "counts": counts})
    if len(sizes) > 1:
        raise YTVISFormatError(f"{where}: 'segmentations' mix mask sizes {sorted(sizes)}")
    return {
        "video_id": int(entry["video_id"]),
        "category_id": int(entry["category_id"]),
        "score": float(score),
        "segmentations": checked,
    }


def check_results(results: Any, source: str = "<results>") -> list[dict]:
    """Validate a results list; return it with plain Python types (counts as str)."""
    if not isinstance(results, list):
        raise YTVISFormatError(f"{source}: results are a {type(results).__name__}, expected a list")
    pending: list = []  # compressed counts, checked in one batch
    checked = [_check_entry(entry, i, source, pending) for i, entry in enumerate(results)]
    check_counts(pending)
    return checked


def save_results(results: list[dict], path: str | os.PathLike) -> None:
    """Validate and write a results list as JSON."""
    checked = check_results(results)
    with open(path, "w") as f:
        json.dump(checked, f)


def load_results(path: str | os.PathLike) -> list[dict]:
    """Read and validate a results JSON file."""
    return check_results(read_json(path), str(path))
