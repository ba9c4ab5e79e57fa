"""YouTube-VIS evaluation: video AP and AR with the semantics of the official YTVOSeval.

    metrics = evaluate("instances_val.json", "results.json")   # {"AP": 0.41, "AP50": ..., ...}

What it computes, as youtubevos/cocoapi does:
- video IoU between tracks (see bench.evaluation.video_iou), within each (video, category);
- detections of a (video, category) sorted by score (stable) and cut to the largest maxDets (100);
- instance area: the mean of a track's non-null, non-zero per-frame areas (ground truth: its
  `areas` field, or the mask areas where the field is absent; detections: mask areas);
- area ranges all / small [0, 128²] / medium [128², 256²] / large [256², 1e10];
- a ground truth is ignored when it is crowd or outside the area range (an `ignore` field has no
  effect: COCOeval and YTVOSeval overwrite it with iscrowd); crowd tracks can absorb any number of
  detections, which are then ignored; unmatched detections outside the area range are ignored;
- greedy matching per IoU threshold .50:.05:.95, 101-point interpolated precision, AR = recall
  at maxDets 1 / 10 / 100, each averaged over categories that have ground truth (-1 if none).

Unlike the official code, both files are validated first (bench.data.ytvis, bench.data.results):
compressed RLE counts that do not decode to exactly H*W pixels (on which pycocotools' iou loops
forever), a video id or category id that is not in the ground truth, a track whose frame count
differs from its video's length, or a mask whose size differs from its video's raises
YTVISFormatError (a ValueError) naming the file, the result or annotation, and the frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from bench.data.results import check_results, load_results
from bench.data.ytvis import YTVIS, YTVISFormatError, load_ytvis
from bench.evaluation.video_iou import track_areas, video_ious

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETS = (1, 10, 100)
AREA_RANGES = {
    "all": (0.0, 1e10),
    "small": (0.0, 128.0**2),
    "medium": (128.0**2, 256.0**2),
    "large": (256.0**2, 1e10),
}
# (key, average precision?, IoU threshold or None for .50:.95, area range, maxDets)
SUMMARY = (
    ("AP", True, None, "all", 100),
    ("AP50", True, 0.5, "all", 100),
    ("AP75", True, 0.75, "all", 100),
    ("APs", True, None, "small", 100),
    ("APm", True, None, "medium", 100),
    ("APl", True, None, "large", 100),
    ("AR1", False, None, "all", 1),
    ("AR10", False, None, "all", 10),
    ("AR100", False, None, "all", 100),
    ("ARs", False, None, "small", 100),
    ("ARm", False, None, "medium", 100),
    ("ARl", False, None, "large", 100),
)


@dataclass
class Cell:
    """Ground truth and detections of one (video, category); detections sorted by score."""

    ious: np.ndarray  # (D, G) video IoU
    gt_crowd: np.ndarray  # (G,) bool
    gt_area: np.ndarray  # (G,) float, mean non-zero frame area
    dt_score: np.ndarray  # (D,) float, descending
    dt_area: np.ndarray  # (D,) float


def mean_area(areas: list) -> float:
    """Mean of the non-null, non-zero per-frame areas; 0 when there are none."""
    kept = [a for a in areas if a]
    return float(np.mean(kept)) if kept else 0.0


def check_against_gt(results: list[dict], ytvis: YTVIS) -> None:
    """Raise YTVISFormatError for results that do not fit the ground truth's videos / categories."""
    for i, result in enumerate(results):
        where = f"result {i} (video_id {result['video_id']})"
        video = ytvis.videos.get(result["video_id"])
        if video is None:
            raise YTVISFormatError(f"{where}: field 'video_id' is not a video of {ytvis.source}")
        if result["category_id"] not in ytvis.categories:
            raise YTVISFormatError(
                f"{where}: field 'category_id' is {result['category_id']}, "
                f"not a category of {ytvis.source}"
            )
        if len(result["segmentations"]) != video["length"]:
            raise YTVISFormatError(
                f"{where}: field 'segmentations' has {len(result['segmentations'])} frames, "
                f"expected {video['length']} (the video's length)"
            )
        for t, rle in enumerate(result["segmentations"]):
            if rle is not None and list(rle["size"]) != [video["height"], video["width"]]:
                raise YTVISFormatError(
                    f"{where}: 'segmentations[{t}].size' is {list(rle['size'])}, expected "
                    f"[{video['height']}, {video['width']}] (the video's height, width)"
                )


def build_cells(ytvis: YTVIS, results: list[dict]) -> dict[tuple[int, int], Cell]:
    """Cells for every (video, category) with ground truth or detections."""
    dts_by_video: dict[int, list[dict]] = {}
    for result in results:
        dts_by_video.setdefault(result["video_id"], []).append(result)
    cells = {}
    for video_id in sorted(ytvis.videos):
        length = ytvis.videos[video_id]["length"]
        gts = ytvis.anns_by_video[video_id]
        dts = []
        for cat_id in ytvis.categories:  # per category: by score (stable), top MAX_DETS[-1]
            cat_dts = [d for d in dts_by_video.get(video_id, []) if d["category_id"] == cat_id]
            order = np.argsort([-d["score"] for d in cat_dts], kind="stable")
            dts += [cat_dts[i] for i in order[: MAX_DETS[-1]]]
        if not gts and not dts:
            continue
        gt_tracks = [ytvis.rles(ann) for ann in gts]
        dt_tracks = [d["segmentations"] for d in dts]
        ious = video_ious(dt_tracks, gt_tracks, length)  # (D, G)
        gt_frame_areas = track_areas(gt_tracks, length)
        gt_area = np.array(
            [
                mean_area(ann["areas"] if "areas" in ann else list(frame_areas))
                for ann, frame_areas in zip(gts, gt_frame_areas, strict=True)
            ]
        )
        dt_area = np.array([mean_area(list(a)) for a in track_areas(dt_tracks, length)])
        gt_cat = np.array([ann["category_id"] for ann in gts])
        dt_cat = np.array([d["category_id"] for d in dts])
        for cat_id in sorted(set(gt_cat.tolist()) | set(dt_cat.tolist())):
            g = np.flatnonzero(gt_cat == cat_id)
            d = np.flatnonzero(dt_cat == cat_id)
            cells[video_id, cat_id] = Cell(
                ious=ious[np.ix_(d, g)],
                gt_crowd=np.array([bool(gts[j].get("iscrowd", 0)) for j in g], dtype=bool),
                gt_area=gt_area[g],
                dt_score=np.array([dts[i]["score"] for i in d], dtype=np.float64),
                dt_area=dt_area[d],
            )
    return cells


def _last_argmax(values: np.ndarray) -> np.ndarray:
    """Per row of values (T, G): index of the last maximum, or -1 where the maximum is < 0."""
    last = values.shape[1] - 1 - np.argmax(values[:, ::-1], axis=1)
    return np.where(values[np.arange(len(values)), last] >= 0, last, -1)


def match_detections(cell: Cell, area_range: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """COCO's greedy matching in one cell for one area range, at every IoU threshold at once.

    Detections, best score first, take the free ground truth of highest IoU >= threshold (ties:
    the later one), non-ignored ground truth before ignored; crowd ground truth is never used up.
    Returns matched (T, D) bool, ignored (T, D) bool and the number of non-ignored ground truths.
    """
    lo, hi = area_range
    gt_ignore = cell.gt_crowd | (cell.gt_area < lo) | (cell.gt_area > hi)  # (G,)
    num_thresholds, (num_dt, num_gt) = len(IOU_THRESHOLDS), cell.ious.shape
    matched = np.zeros((num_thresholds, num_dt), dtype=bool)
    ignored = np.zeros((num_thresholds, num_dt), dtype=bool)
    if num_dt and num_gt:
        thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]  # (T, 1)
        taken = np.zeros((num_thresholds, num_gt), dtype=bool)
        for d in np.flatnonzero(cell.ious.max(axis=1) >= thresholds.min()):
            usable = (~taken | cell.gt_crowd) & (cell.ious[d] >= thresholds)  # (T, G)
            best = _last_argmax(np.where(usable & ~gt_ignore, cell.ious[d], -1.0))
            fallback = _last_argmax(np.where(usable & gt_ignore, cell.ious[d], -1.0))
            gt = np.where(best >= 0, best, fallback)  # (T,)
            hit = np.flatnonzero(gt >= 0)
            matched[hit, d] = True
            ignored[hit, d] = gt_ignore[gt[hit]]
            taken[hit, gt[hit]] = True
    outside = (cell.dt_area < lo) | (cell.dt_area > hi)  # (D,)
    ignored |= ~matched & outside[None, :]
    return matched, ignored, int((~gt_ignore).sum())


def accumulate(
    cells: dict[tuple[int, int], Cell], cat_ids: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Precision (T, R, K, A, M) and recall (T, K, A, M); -1 where a category has no ground truth."""
    shape = (len(IOU_THRESHOLDS), len(cat_ids), len(AREA_RANGES), len(MAX_DETS))
    precision = -np.ones((shape[0], len(RECALL_THRESHOLDS), *shape[1:]))
    recall = -np.ones(shape)
    cells_by_cat: dict[int, list[Cell]] = {}
    for (_, cat_id), cell in sorted(cells.items()):  # videos in ascending id order
        cells_by_cat.setdefault(cat_id, []).append(cell)
    for k, cat_id in enumerate(cat_ids):
        cat_cells = cells_by_cat.get(cat_id, [])
        for a, area_range in enumerate(AREA_RANGES.values()):
            evals = [(cell, *match_detections(cell, area_range)) for cell in cat_cells]
            num_gt = sum(e[3] for e in evals)
            if num_gt == 0:
                continue
            for m, max_dets in enumerate(MAX_DETS):
                scores = np.concatenate([[]] + [c.dt_score[:max_dets] for c, *_ in evals])
                order = np.argsort(-scores, kind="stable")
                matched = np.concatenate(
                    [np.zeros((len(IOU_THRESHOLDS), 0), bool)]
                    + [mt[:, :max_dets] for _, mt, _, _ in evals],
                    axis=1,
                )[:, order]
                ignored = np.concatenate(
                    [np.zeros((len(IOU_THRESHOLDS), 0), bool)]
                    + [ig[:, :max_dets] for _, _, ig, _ in evals],
                    axis=1,
                )[:, order]
                tp = np.cumsum(matched & ~ignored, axis=1, dtype=np.float64)  # (T, D)
                fp = np.cumsum(~matched & ~ignored, axis=1, dtype=np.float64)
                precision[:, :, k, a, m], recall[:, k, a, m] = _interpolate(tp, fp, num_gt)
    return precision, recall


def _interpolate(tp: np.ndarray, fp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """101-point interpolated precision (T, R) and final recall (T,) from cumulative tp, fp (T, D)."""
    num_dt = tp.shape[1]
    if num_dt == 0:
        return np.zeros((len(tp), len(RECALL_THRESHOLDS))), np.zeros(len(tp))
    rc = tp / num_gt
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
    q = np.zeros((len(tp), len(RECALL_THRESHOLDS)))
    for t in range(len(tp)):
        inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
        inside = inds < num_dt
        q[t, inside] = pr[t, inds[inside]]
    return q, rc[:, -1]


def summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """The twelve summary numbers of COCO's summarize(), keyed AP, AP50, ..., ARl."""
    areas, max_dets = list(AREA_RANGES), list(MAX_DETS)
    stats = {}
    for key, is_ap, iou, area, dets in SUMMARY:
        values = precision if is_ap else recall  # (T, [R,] K, A, M)
        if iou is not None:
            values = values[np.flatnonzero(np.isclose(IOU_THRESHOLDS, iou))]
        values = values[..., areas.index(area), max_dets.index(dets)]
        defined = values[values > -1]
        stats[key] = float(defined.mean()) if defined.size else -1.0
    return stats


def summary_lines(stats: dict[str, float]) -> list[str]:
    """The summary in COCO's printed layout, one line per metric."""
    lines = []
    for key, is_ap, iou, area, dets in SUMMARY:
        title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
        iou_text = "0.50:0.95" if iou is None else f"{iou:0.2f}"
        lines.append(
            f" {title:<18} {kind} @[ IoU={iou_text:<9} | area={area:>6s} | maxDets={dets:>3d} ]"
            f" = {stats[key]:0.3f}"
        )
    return lines


def evaluate(
    gt: str | os.PathLike | dict | YTVIS, results: str | os.PathLike | list[dict]
) -> dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100 (and ARs, ARm, ARl) of results (a path or
    a results list) against a ground-truth file (a path, its dict, or a loaded YTVIS)."""
    ytvis = gt if isinstance(gt, YTVIS) else load_ytvis(gt)
    if isinstance(results, (str, os.PathLike)):
        results = load_results(results)
    else:
        results = check_results(results)
    check_against_gt(results, ytvis)
    cells = build_cells(ytvis, results)
    precision, recall = accumulate(cells, sorted(ytvis.categories))
    return summarize(precision, recall)
