"""The proof that the model learns: the quick model overfits two synthetic videos.

Two videos of T frames from bench.data.synthetic (128 x 128, 1-4 shapes), read back through
bench.data.dataset, trained on as one batch for a fixed number of steps; then the postprocess'
results must reach a mean video mask IoU >= 0.9 against the ground truth, where each ground-truth
instance is paired (Hungarian on IoU) with one of the video's top-scoring predicted tracks and a
pair of the wrong category counts as IoU 0. About a minute per backend on 2 CPU cores.
"""

import dataclasses

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_api
from scipy.optimize import linear_sum_assignment

from bench.data.dataset import YTVISClipDataset, collate_clips
from bench.data.synthetic import generate_synthetic
from bench.data.transforms import build_transforms
from bench.engine import build_optimizer
from models import build_model
from models.presets import QUICK

STEPS = 120
LR = 1e-3  # higher than the preset's: memorising two clips


def video_iou(segmentations, gt: np.ndarray) -> float:
    """Σ_t |p ∩ g| / Σ_t |p ∪ g| of a predicted track (RLE list) and a mask stack (T, H, W)."""
    pred = np.stack(
        [
            np.zeros(gt.shape[1:], bool) if s is None else mask_api.decode(s) > 0
            for s in segmentations
        ]
    )
    union = (pred | gt).sum()
    return float((pred & gt).sum() / union) if union else 0.0


def mean_iou(results, targets, cat_ids) -> float:
    ious = []
    for target in targets:
        gt = target["masks"].numpy()  # (n, T, H, W)
        preds = [r for r in results if r["video_id"] == target["video_id"]]
        preds = sorted(preds, key=lambda r: -r["score"])[: len(gt)]
        iou = np.zeros((len(gt), len(preds)))
        for i, label in enumerate(target["labels"].tolist()):
            for j, r in enumerate(preds):
                if r["category_id"] == cat_ids[label]:
                    iou[i, j] = video_iou(r["segmentations"], gt[i])
        rows, cols = linear_sum_assignment(-iou)
        matched = np.zeros(len(gt))
        matched[rows] = iou[rows, cols]
        ious += matched.tolist()
    return float(np.mean(ious))


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    size = (QUICK.short_side, QUICK.short_side)
    return generate_synthetic(out, videos=2, frames=QUICK.num_frames, size=size, seed=1, workers=1)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["stdeform", "full"])
def test_quick_model_overfits_two_videos(backend, two_videos):
    torch.manual_seed(0)
    model, criterion, post = build_model("quick", backend)
    preset = model.preset
    dataset = YTVISClipDataset(
        two_videos["train_images"],
        two_videos["train_annotations"],
        preset.num_frames,
        build_transforms(train=False, short_side=preset.short_side, max_size=preset.max_size),
        train=False,
    )
    assert len(dataset) == 2
    post.category_ids = dataset.cat_ids
    clips, padding_mask, targets = collate_clips([dataset[0], dataset[1]])
    optimizer = build_optimizer(model, dataclasses.replace(preset, lr=LR, lr_backbone=LR))
    torch.set_flush_denormal(True)  # denormal gradients can make CPU convolutions 10x slower
    try:
        for _ in range(STEPS):
            losses = criterion(model(clips, padding_mask), targets)
            loss = sum(criterion.weight_dict[k] * v for k, v in losses.items())
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), preset.clip_max_norm)
            optimizer.step()
    finally:
        torch.set_flush_denormal(False)
    model.eval()
    with torch.no_grad():
        results = post(model(clips, padding_mask), targets)
    iou = mean_iou(results, targets, dataset.cat_ids)
    print(f"{backend}: mean mask IoU {iou:.3f} after {STEPS} steps")
    assert iou >= 0.9, f"{backend}: mean mask IoU {iou:.3f} after {STEPS} steps"
