"""Video IoU between instance tracks, as the official YouTube-VIS evaluation defines it.

    IoU(d, g) = sum_t |d_t & g_t| / sum_t |d_t | g_t|

where a frame with a null entry on one side adds the other side's area to the union and nothing to
the intersection, and a frame null on both sides adds nothing (a null entry acts as an empty mask).
A pair whose union is 0 has IoU 0. Crowd ground truth uses the same formula (the official code does
not apply COCO's crowd IoU).

Per frame, one pycocotools `iou` call on the RLEs gives every pair's IoU i/u with i and u exact
integers; since u = a_d + a_g - i, the intersection is i = iou * (a_d + a_g) / (1 + iou), recovered
exactly by rounding (the double-precision error is far below 0.5 for any image size). Sums of
integer areas then give the video IoU without decoding a single mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_api

from bench.data.ytvis import rle_areas

Track = Sequence[dict | None]  # per-frame compressed RLE, None where null


def track_areas(tracks: Sequence[Track], length: int) -> np.ndarray:
    """Per-frame areas (N, T) int64 of tracks; 0 where null."""
    areas = np.zeros((len(tracks), length), dtype=np.int64)
    where = [
        (n, t) for n, track in enumerate(tracks) for t, rle in enumerate(track) if rle is not None
    ]
    if where:
        rles = [tracks[n][t] for n, t in where]
        rows, cols = np.array(where).T
        areas[rows, cols] = rle_areas(rles)
    return areas


def frame_intersections(
    dt_rles: list[dict], gt_rles: list[dict], dt_areas: np.ndarray, gt_areas: np.ndarray
) -> np.ndarray:
    """Intersection areas (D, G) int64 of two lists of same-size RLEs with areas (D,), (G,)."""
    ious = np.asarray(mask_api.iou(dt_rles, gt_rles, [0] * len(gt_rles)), dtype=np.float64)
    sums = dt_areas[:, None] + gt_areas[None, :]
    return np.rint(ious * sums / (1.0 + ious)).astype(np.int64)


def video_ious(dt_tracks: Sequence[Track], gt_tracks: Sequence[Track], length: int) -> np.ndarray:
    """Video IoU matrix (D, G) float64 between detection and ground-truth tracks of one video."""
    dt_areas, gt_areas = track_areas(dt_tracks, length), track_areas(gt_tracks, length)  # (D|G, T)
    inter = np.zeros((len(dt_tracks), len(gt_tracks)), dtype=np.int64)
    if len(dt_tracks) and len(gt_tracks):
        for t in range(length):
            d_idx = [n for n, track in enumerate(dt_tracks) if track[t] is not None]
            g_idx = [n for n, track in enumerate(gt_tracks) if track[t] is not None]
            if d_idx and g_idx:
                inter[np.ix_(d_idx, g_idx)] += frame_intersections(
                    [dt_tracks[n][t] for n in d_idx],
                    [gt_tracks[n][t] for n in g_idx],
                    dt_areas[d_idx, t],
                    gt_areas[g_idx, t],
                )
    union = dt_areas.sum(1)[:, None] + gt_areas.sum(1)[None, :] - inter  # (D, G)
    return np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
