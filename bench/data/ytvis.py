"""YouTube-VIS annotation files (2019 and 2021): load, validate, decode masks, read frames.

A file holds `videos` (id, width, height, length, file_names), `categories` (id, name) and, except
for test splits, `annotations`: one per instance track, with per-frame lists `segmentations`,
`bboxes` and `areas` (null where the instance is not visible). A segmentation entry is compressed
RLE (counts a string), uncompressed RLE (counts a list of ints), a polygon list, or null.
`info` and `licenses` are optional and kept as they are.

A data set on disk is laid out as YouTube-VIS publishes it; `layout(root)` names its pieces:

    ROOT/train/JPEGImages/<video>/<frame>.jpg      (a video's file_names are relative to JPEGImages)
    ROOT/val/JPEGImages/...
    ROOT/annotations/instances_train.json, ROOT/annotations/instances_val.json

    ytvis = load_ytvis("annotations/instances_val.json")
    ann = ytvis.anns_by_video[video_id][0]
    masks, present = ytvis.decode_masks(ann)        # (T, H, W) bool, (T,) bool
    frame = ytvis.read_frame(image_root, video_id, 0)   # (H, W, 3) uint8

Every problem found in a file raises `YTVISFormatError` (a ValueError) whose message names the
file, the video / annotation / category id and the field, with what was expected and what was found;
a file that is not JSON is one too. A compressed RLE's counts must decode to exactly height*width
pixels (pycocotools reads past its buffers, or loops forever in `iou`, on counts that do not).
The `areas` and `bboxes` lists may be absent (they are not needed to decode masks); when present
they must have one entry per frame. `iscrowd` defaults to 0.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_api

VIDEO_KEYS = ("id", "width", "height", "length", "file_names")
ANNOTATION_KEYS = ("id", "video_id", "category_id", "segmentations")
CATEGORY_KEYS = ("id", "name")


SPLITS = ("train", "val")


class YTVISFormatError(ValueError):
    """A YouTube-VIS file (annotations or results) does not follow the format."""


def layout(root: str | os.PathLike, check: bool = False) -> dict[str, Path]:
    """The paths of a data set in the YouTube-VIS layout (module docstring): keys root,
    train_images, train_annotations, val_images, val_annotations.

    With check, FileNotFoundError names the first piece that is missing (or of the wrong kind)."""
    root = Path(root)
    paths = {"root": root}
    for split in SPLITS:
        paths[f"{split}_images"] = root / split / "JPEGImages"
        paths[f"{split}_annotations"] = root / "annotations" / f"instances_{split}.json"
    if check:
        if not root.is_dir():
            raise FileNotFoundError(f"data directory {root} does not exist (or is not a folder)")
        for key, path in list(paths.items())[1:]:
            is_kind = path.is_dir() if key.endswith("_images") else path.is_file()
            if not is_kind:
                kind = "folder" if key.endswith("_images") else "file"
                raise FileNotFoundError(
                    f"data directory {root}: {key} {path} is not a {kind}; expected the YouTube-VIS "
                    "layout DIR/{train,val}/JPEGImages, DIR/annotations/instances_{train,val}.json"
                )
    return paths


def read_json(path: str | os.PathLike) -> Any:
    """The parsed content of a JSON file; YTVISFormatError names a file that is not JSON."""
    with open(path, "rb") as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise YTVISFormatError(f"{path}: not a JSON file ({error})") from None


def compressed_counts(counts: str | bytes) -> list[int]:
    """Run lengths of a compressed RLE counts string, decoded as pycocotools' rleFrString does
    (6-bit groups offset by '0', 5 value bits and a continuation bit, the last group's high bit the
    sign; runs from the fourth on are stored relative to the run two before). ValueError for a
    string that is not one. pycocotools has no call that returns the runs without trusting them."""
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    value = shift = 0
    for position, byte in enumerate(data):
        c = byte - 48
        if not 0 <= c < 64:
            raise ValueError(f"character {chr(byte)!r} at {position} is outside '0'..'o'")
        value |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:  # more groups follow
            continue
        if c & 0x10:  # negative
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise ValueError(f"run {len(runs)} is {value}, expected >= 0")
        runs.append(value)
        value = shift = 0
    if shift:
        raise ValueError("it ends inside a number")
    return runs


MAX_GROUPS = 7  # 6-bit groups of one run: 35 value bits, more than any mask needs
_LAST_GROUP = np.array([(v & 15) - (v & 16) for v in range(256)], np.int64)  # sign-extended


def counts_totals(strings: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel totals (N,) int64 of compressed RLE counts strings, and valid (N,) bool: False for a
    string that compressed_counts rejects, or with a run of more than MAX_GROUPS groups (where
    pycocotools' shifts overflow). One vectorised pass over all strings together; the totals of
    invalid strings are meaningless."""
    n = len(strings)
    lengths = np.fromiter(map(len, strings), np.int64, n)
    bounds = np.zeros(n + 1, np.int64)  # character offsets of the strings
    np.cumsum(lengths, out=bounds[1:])
    c = np.frombuffer(b"".join(strings), np.uint8) - np.uint8(48)  # (C,); wraps below '0'
    valid = np.ones(n, bool)

    def invalidate(chars: np.ndarray) -> None:  # the strings holding these characters
        valid[np.searchsorted(bounds, chars, side="right") - 1] = False

    invalidate(np.flatnonzero(c > 63))
    more = c >= 32  # the continuation bit
    last = bounds[1:][lengths > 0] - 1
    invalidate(last[more[last]])  # ends inside a number
    more[last] = False  # runs never span strings
    ends = np.flatnonzero(~more)  # (R,) last character of each run
    x = _LAST_GROUP[c[ends]]  # (R,) run values (deltas), built from the last group down
    multi = np.flatnonzero(ends > 0)
    multi = multi[more[ends[multi] - 1]]  # runs with another group before their last
    k = 1
    while len(multi):
        if k == MAX_GROUPS:
            invalidate(ends[multi])
            break
        x[multi] = (x[multi] << 5) | (c[ends[multi] - k] & 31)
        k += 1
        multi = multi[ends[multi] >= k]
        multi = multi[more[ends[multi] - k]]
    first = np.searchsorted(ends, bounds[:-1])  # (N,) first run of each string
    per_string = np.searchsorted(ends, bounds[1:]) - first
    # Run j > 2 of a string is stored relative to run j - 2. With y the cumulative sums of x taken
    # every other run (y[i] - y[i - 2] = x[i]), run i = f + j of a string whose first run is f is
    # y[i] - y[f - 1] for odd j, y[i] - y[f] for even j >= 2, and x[f] for j = 0.
    y = np.zeros(len(x) + 3, np.int64)  # y[i + 2] for run i; a spare last entry
    np.cumsum(x[0::2], out=y[2:-1:2])
    np.cumsum(x[1::2], out=y[3:-1:2])
    base = np.empty((n, 2), np.int64)  # per string, by the parity of the run's global index
    base[np.arange(n), first & 1] = y[first + 2]  # even j
    base[np.arange(n), 1 - (first & 1)] = y[first + 1]  # odd j
    runs = y[2:-1]
    runs[0::2] -= np.repeat(base[:, 0], per_string)[0::2]
    runs[1::2] -= np.repeat(base[:, 1], per_string)[1::2]
    has_runs = per_string > 0
    runs[first[has_runs]] = x[first[has_runs]]
    invalidate(ends[runs < 0])
    totals = np.zeros(n, np.int64)
    if has_runs.any():
        totals[has_runs] = np.add.reduceat(runs, first[has_runs])
    return totals, valid


def check_counts(items: Sequence[tuple[str | bytes, int, int, str]]) -> None:
    """Raise YTVISFormatError for the first (counts, height, width, where) whose compressed counts
    do not decode to height*width pixels (or are no compressed RLE string), in one batch."""
    strings = []
    for counts, *_ in items:
        try:
            strings.append(counts.encode("ascii") if isinstance(counts, str) else bytes(counts))
        except UnicodeEncodeError:
            strings.append(b"\x00")  # not ASCII: invalid, named below
    totals, valid = counts_totals(strings)
    expected = np.array([height * width for _, height, width, _ in items], dtype=np.int64)
    bad = np.flatnonzero(~valid | (totals != expected))
    if not len(bad):
        return
    counts, height, width, where = items[bad[0]]
    try:
        total = sum(compressed_counts(counts))
        if not valid[bad[0]]:
            raise ValueError(f"a run has more than {MAX_GROUPS} groups")
    except ValueError as error:  # also UnicodeEncodeError: not ASCII
        raise YTVISFormatError(
            f"{where}.counts {_short(counts)} is not a compressed RLE string: {error}"
        ) from None
    raise YTVISFormatError(
        f"{where}.counts {_short(counts)} decode to {total} pixels, expected {height * width} "
        f"(height*width of {height}x{width})"
    )


def _short(counts: str | bytes, limit: int = 24) -> str:
    text = repr(counts)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_segmentation(
    seg: Any, height: int, width: int, where: str, pending: list | None = None
) -> None:
    """Raise YTVISFormatError unless `seg` is null, an RLE (either kind) of size (height, width)
    whose counts cover height*width pixels, or a polygon list. `where` names the entry, e.g.
    "file: annotation id 3: 'segmentations[2]'". With `pending`, compressed counts are appended
    to it as check_counts' items instead of being checked here (to check a file's in one batch)."""
    if seg is None:
        return
    if isinstance(seg, dict):
        if "size" not in seg or "counts" not in seg:
            raise YTVISFormatError(f"{where} is an RLE without 'size' and 'counts': {sorted(seg)}")
        size = seg["size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(map(is_int, size))):
            raise YTVISFormatError(f"{where}.size is {size!r}, expected [height, width]")
        if list(size) != [height, width]:
            raise YTVISFormatError(
                f"{where}.size is {list(size)}, expected [{height}, {width}] (the video's size)"
            )
        counts = seg["counts"]
        if isinstance(counts, list):
            if not all(is_int(c) and c >= 0 for c in counts):
                raise YTVISFormatError(f"{where}.counts: uncompressed RLE needs non-negative ints")
            if sum(counts) != height * width:
                raise YTVISFormatError(
                    f"{where}.counts sum to {sum(counts)}, expected {height * width} (height*width)"
                )
        elif isinstance(counts, (str, bytes)):
            item = (counts, height, width, where)
            if pending is None:
                check_counts([item])
            else:
                pending.append(item)
        else:
            raise YTVISFormatError(
                f"{where}.counts is a {type(counts).__name__}, expected a string or a list of ints"
            )
        return
    if isinstance(seg, list):
        if not seg:
            raise YTVISFormatError(f"{where} is an empty polygon list, expected null or polygons")
        for k, polygon in enumerate(seg):
            if not (isinstance(polygon, list) and all(map(is_number, polygon))):
                raise YTVISFormatError(f"{where}[{k}] is not a list of numbers (a polygon)")
            if len(polygon) < 6 or len(polygon) % 2:
                raise YTVISFormatError(
                    f"{where}[{k}] has {len(polygon)} coordinates, expected an even number >= 6"
                )
        return
    raise YTVISFormatError(
        f"{where} is a {type(seg).__name__}, expected null, an RLE dict or a polygon list"
    )


def segmentation_to_rle(seg: Any, height: int, width: int) -> dict | None:
    """Compressed RLE (counts as bytes, pycocotools' form) of one checked segmentation entry."""
    if seg is None:
        return None
    if isinstance(seg, list):  # polygons: one RLE per part, merged into one mask
        return mask_api.merge(mask_api.frPyObjects(seg, height, width))
    if isinstance(seg["counts"], list):  # uncompressed RLE
        return mask_api.frPyObjects(seg, height, width)
    counts = seg["counts"]
    return {
        "size": list(seg["size"]),
        "counts": counts.encode() if isinstance(counts, str) else counts,
    }


AREA_CHUNK = 255  # pycocotools 2.0.11 under numpy 2: area() of more than 255 RLEs overflows


def rle_areas(rles: Sequence[dict]) -> np.ndarray:
    """Pixel counts (N,) int64 of compressed RLEs (pycocotools' area, in safe chunks)."""
    areas = [mask_api.area(list(rles[i : i + AREA_CHUNK])) for i in range(0, len(rles), AREA_CHUNK)]
    return np.concatenate([np.zeros(0, np.int64)] + [np.asarray(a, np.int64) for a in areas])


@dataclass
class YTVIS:
    """A loaded, validated YouTube-VIS file. Videos and annotations are the file's own dicts."""

    source: str  # the file path, or "<dict>"
    videos: dict[int, dict]  # video id -> video, in file order
    categories: dict[int, dict]  # category id -> category, in file order
    annotations: dict[int, dict] = field(default_factory=dict)  # annotation id -> annotation
    anns_by_video: dict[int, list[dict]] = field(default_factory=dict)  # in file order
    info: Any = None
    licenses: Any = None

    @property
    def video_ids(self) -> list[int]:
        return list(self.videos)

    def rles(self, ann: dict) -> list[dict | None]:
        """Per-frame compressed RLE (None where null) of an annotation."""
        video = self.videos[ann["video_id"]]
        h, w = video["height"], video["width"]
        return [segmentation_to_rle(seg, h, w) for seg in ann["segmentations"]]

    def decode_masks(
        self, ann: dict, frames: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Masks (T, H, W) bool and present (T,) bool (False where the entry is null; its mask is
        all False) of an annotation, for all frames or the given frame indices."""
        video = self.videos[ann["video_id"]]
        h, w = video["height"], video["width"]
        frames = range(video["length"]) if frames is None else frames
        masks = np.zeros((len(frames), h, w), dtype=bool)
        rles = [segmentation_to_rle(ann["segmentations"][t], h, w) for t in frames]
        present = np.array([rle is not None for rle in rles], dtype=bool)
        if present.any():  # one decode call for all frames: (H, W, N) -> (N, H, W)
            decoded = mask_api.decode([rle for rle in rles if rle is not None])
            masks[present] = decoded.transpose(2, 0, 1).astype(bool)
        return masks, present

    def frame_path(self, image_root: str | os.PathLike, video_id: int, t: int) -> Path:
        return Path(image_root) / self.videos[video_id]["file_names"][t]

    def read_frame(self, image_root: str | os.PathLike, video_id: int, t: int) -> np.ndarray:
        """Frame t of a video as (H, W, 3) uint8. FileNotFoundError names a missing file;
        YTVISFormatError a frame whose size differs from the video's."""
        path = self.frame_path(image_root, video_id, t)
        if not path.is_file():
            raise FileNotFoundError(f"frame file {path} (video id {video_id}, frame {t}) not found")
        with Image.open(path) as image:
            frame = np.asarray(image.convert("RGB"))
        video = self.videos[video_id]
        if frame.shape[:2] != (video["height"], video["width"]):
            raise YTVISFormatError(
                f"frame file {path} (video id {video_id}, frame {t}) is {frame.shape[0]}x"
                f"{frame.shape[1]}, expected {video['height']}x{video['width']} (height x width)"
            )
        return frame


def _require(obj: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise YTVISFormatError(f"{where} is a {type(obj).__name__}, expected an object")
    for key in keys:
        if key not in obj:
            raise YTVISFormatError(f"{where}: missing key '{key}'")


def _index_by_id(items: Any, kind: str, keys: Sequence[str], source: str) -> dict[int, dict]:
    if not isinstance(items, list):
        raise YTVISFormatError(f"{source}: '{kind}s' is a {type(items).__name__}, expected a list")
    by_id: dict[int, dict] = {}
    for i, item in enumerate(items):
        _require(item, ("id",), f"{source}: {kind}s[{i}]")
        item_id = item["id"]
        where = f"{source}: {kind} id {item_id}"
        if not is_int(item_id):
            raise YTVISFormatError(
                f"{source}: {kind}s[{i}]: field 'id' is {item_id!r}, expected int"
            )
        _require(item, keys, where)
        if item_id in by_id:
            raise YTVISFormatError(f"{where}: duplicated id (field 'id')")
        by_id[item_id] = item
    return by_id


def _check_video(video: dict, where: str) -> None:
    for key in ("width", "height"):
        if not (is_int(video[key]) and video[key] > 0):
            raise YTVISFormatError(f"{where}: field '{key}' is {video[key]!r}, expected int > 0")
    length, names = video["length"], video["file_names"]
    if not (is_int(length) and length > 0):
        raise YTVISFormatError(f"{where}: field 'length' is {length!r}, expected int > 0")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise YTVISFormatError(f"{where}: field 'file_names' is not a list of strings")
    if len(names) != length:
        raise YTVISFormatError(
            f"{where}: field 'file_names' has {len(names)} entries, expected {length} ('length')"
        )


def _check_annotation(ann: dict, videos: dict, categories: dict, where: str, pending: list) -> None:
    if ann["video_id"] not in videos:
        raise YTVISFormatError(f"{where}: field 'video_id' is {ann['video_id']!r}, not a video id")
    if ann["category_id"] not in categories:
        raise YTVISFormatError(
            f"{where}: field 'category_id' is {ann['category_id']!r}, not a category id"
        )
    if ann.get("iscrowd", 0) not in (0, 1):
        raise YTVISFormatError(f"{where}: field 'iscrowd' is {ann['iscrowd']!r}, expected 0 or 1")
    video = videos[ann["video_id"]]
    length = video["length"]
    for key in ("segmentations", "bboxes", "areas"):
        if key not in ann:
            continue
        if not isinstance(ann[key], list):
            raise YTVISFormatError(f"{where}: field '{key}' is not a list")
        if len(ann[key]) != length:
            raise YTVISFormatError(
                f"{where}: field '{key}' has {len(ann[key])} entries, expected {length} "
                f"(the length of video id {video['id']})"
            )
    for t, seg in enumerate(ann["segmentations"]):
        check_segmentation(
            seg, video["height"], video["width"], f"{where}: 'segmentations[{t}]'", pending
        )
    for t, box in enumerate(ann.get("bboxes", [])):
        if box is not None and not (
            isinstance(box, list) and len(box) == 4 and all(map(is_number, box))
        ):
            raise YTVISFormatError(f"{where}: 'bboxes[{t}]' is {box!r}, expected null or [x,y,w,h]")
    for t, area in enumerate(ann.get("areas", [])):
        if area is not None and not (is_number(area) and area >= 0):
            raise YTVISFormatError(f"{where}: 'areas[{t}]' is {area!r}, expected null or >= 0")


def load_ytvis(path_or_dict: str | os.PathLike | dict) -> YTVIS:
    """Load and validate a YouTube-VIS annotation file (a path, or the parsed dict)."""
    if isinstance(path_or_dict, dict):
        source, data = "<dict>", path_or_dict
    else:
        source = str(path_or_dict)
        data = read_json(path_or_dict)
    if not isinstance(data, dict):
        raise YTVISFormatError(
            f"{source}: top level is a {type(data).__name__}, expected an object"
        )
    _require(data, ("videos",), source)
    videos = _index_by_id(data["videos"], "video", VIDEO_KEYS, source)
    for video_id, video in videos.items():
        _check_video(video, f"{source}: video id {video_id}")
    categories = _index_by_id(data.get("categories", []), "category", CATEGORY_KEYS, source)
    annotations = _index_by_id(data.get("annotations", []), "annotation", ANNOTATION_KEYS, source)
    anns_by_video: dict[int, list[dict]] = {video_id: [] for video_id in videos}
    pending: list = []  # compressed counts, checked in one batch
    for ann_id, ann in annotations.items():
        _check_annotation(ann, videos, categories, f"{source}: annotation id {ann_id}", pending)
        anns_by_video[ann["video_id"]].append(ann)
    check_counts(pending)
    return YTVIS(
        source=source,
        videos=videos,
        categories=categories,
        annotations=annotations,
        anns_by_video=anns_by_video,
        info=data.get("info"),
        licenses=data.get("licenses"),
    )
