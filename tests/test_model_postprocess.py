"""Postprocess to YouTube-VIS results and long-video inference (clip linking)."""

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_api
from torch import nn

from bench.data.results import check_results
from models import build_model
from models.postprocess import InferenceRunner, PostProcess, Tracks, clip_frame_indices

CATEGORY_IDS = [3, 7, 9]  # the dataset's category id of class 0, 1, 2


def decode(segmentations, size):
    """(T, H, W) bool from a track's RLE list (None -> empty)."""
    return np.stack(
        [
            np.zeros(size, dtype=bool) if s is None else mask_api.decode(s).astype(bool)
            for s in segmentations
        ]
    )


def test_postprocess_gives_valid_results():
    B, T, n, C, stride = 2, 3, 4, 3, 4
    logits = torch.full((B, T, n, C + 1), -5.0)
    logits[..., C] = 5.0
    logits[0, :, 1, 2] = 8.0  # video 0, query 1: class 2
    logits[1, :, 0, 0] = 8.0  # video 1, query 0: class 0
    masks = torch.full((B, n, T, 8, 8), -10.0)
    masks[0, 1, :, 1:3, 2:4] = 10.0
    masks[1, 0, :2, 4:6, 0:2] = 10.0  # absent in the last frame
    masks[0, 2, :, 5:7, 5:7] = 10.0  # a mask with a no-object class: low score
    outputs = {"pred_logits": logits, "pred_boxes": torch.rand(B, T, n, 4), "pred_masks": masks}
    targets = [
        {"video_id": 11, "size": torch.tensor([32, 32]), "orig_size": torch.tensor([64, 64])},
        {"video_id": 12, "size": torch.tensor([24, 20]), "orig_size": torch.tensor([48, 40])},
    ]
    post = PostProcess(mask_stride=stride, category_ids=CATEGORY_IDS)
    results = check_results(post(outputs, targets))
    assert len(results) == 3  # queries whose mask is empty in every frame are no detection
    for r in results:
        assert r["video_id"] in (11, 12)
        assert 0.0 <= r["score"] <= 1.0
        assert r["category_id"] in CATEGORY_IDS
        assert len(r["segmentations"]) == T
    best = {r["video_id"]: r for r in sorted(results, key=lambda r: r["score"])}  # highest last
    assert best[11]["category_id"] == 9 and best[11]["score"] > 0.9
    assert best[12]["category_id"] == 3 and best[12]["score"] > 0.9
    video0 = decode(best[11]["segmentations"], (64, 64))
    expected = np.zeros((T, 64, 64), dtype=bool)
    expected[:, 8:24, 16:32] = True  # logits rows 1:3 (x stride 4 x 2 to the original size)
    assert (video0 == expected).mean() > 0.99
    assert best[12]["segmentations"][T - 1] is None
    video1 = decode(best[12]["segmentations"], (48, 40))
    assert video1[0, 32:48, 0:16].mean() > 0.9 and video1[0].sum() < 1.2 * 16 * 16

    capped = PostProcess(mask_stride=stride, max_detections=1, category_ids=CATEGORY_IDS)
    results = capped(outputs, targets)
    assert [r["category_id"] for r in results] == [9, 3]
    default = PostProcess(mask_stride=stride)(outputs, targets[:1] + targets[1:])
    assert {r["category_id"] for r in default} <= {1, 2, 3}  # label + 1 without category_ids


def test_scores_weigh_the_class_by_mask_quality():
    # two instances of one video with the same class probability; query 0's mask is sure
    # (probability ~1 inside), query 1's hesitant (0.6 inside, 0.4 elsewhere: below the threshold)
    T, n, C = 2, 2, 3
    logits = torch.full((1, T, n, C + 1), -9.0)
    logits[..., 1] = 2.0
    logits[..., C] = 1.0  # class 1 probability e^2 / (e^2 + e + 2 e^-9) for both
    masks = torch.full((1, n, T, 4, 4), -9.0)
    masks[0, 0, :, :2, :2] = 9.0
    masks[0, 1, :, 2:, 2:] = torch.logit(torch.tensor(0.6))
    masks[0, 1, :, :2, :2] = torch.logit(torch.tensor(0.4))
    outputs = {"pred_logits": logits, "pred_masks": masks}
    target = [{"video_id": 1, "size": (16, 16), "orig_size": (16, 16)}]
    class_prob = logits.softmax(-1)[0, 0, 0, 1].item()

    scored = PostProcess(mask_stride=4)(outputs, target)
    assert len(scored) == 2
    sure, hesitant = scored  # best first
    assert sure["score"] == pytest.approx(class_prob * torch.sigmoid(torch.tensor(9.0)).item())
    assert hesitant["score"] == pytest.approx(class_prob * 0.6, rel=1e-5)
    hesitant_masks = decode(hesitant["segmentations"], (16, 16))
    assert hesitant_masks[:, 10:, 10:].all() and not hesitant_masks[:, :6, :6].any()

    plain = PostProcess(mask_stride=4, mask_scoring=False)(outputs, target)
    assert [r["score"] for r in plain] == pytest.approx([class_prob, class_prob])


def test_focal_postprocess_uses_sigmoid_without_no_object():
    post = PostProcess(mask_stride=4, focal_loss=True)
    logits = torch.tensor([[[0.0, 2.0, 50.0]]])  # (T=1, n=1, C+1=3): no-object column ignored
    probs = post.class_probs(logits)
    torch.testing.assert_close(probs, torch.tensor([[[0.5, torch.sigmoid(torch.tensor(2.0))]]]))


def test_clip_frame_indices():
    assert clip_frame_indices(8, 4, 2) == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    assert clip_frame_indices(9, 4, 2)[-1] == [5, 6, 7, 8]
    assert clip_frame_indices(3, 4, 2) == [[0, 1, 2, 0]]
    assert clip_frame_indices(4, 4, 2) == [[0, 1, 2, 3]]


# A video of 8 frames, 32 x 32, three instances; frame channel 0 holds the instance id (0 = none).
# Shapes are unions of 4 x 4 blocks, so that masks at stride 4 are exact.
T, N, C, STRIDE, F_, SIZE = 4, 4, 3, 4, 8, 32
CLASSES = {1: 0, 2: 1, 3: 2}  # instance id -> class


def id_map(frame: int) -> torch.Tensor:
    ids = torch.zeros(SIZE, SIZE)
    down = 4 * (frame // 2)
    ids[down : down + 8, 0:8] = 1  # instance 1: every frame, moving down
    if frame >= 2:
        ids[16:24, 4 * frame - 8 : 4 * frame] = 2  # instance 2 enters at frame 2, moves right
    if frame >= 6:
        ids[24:32, 24:32] = 3  # instance 3: only in the last two frames (the last clip's end)
    return ids


class StubModel(nn.Module):
    """Outputs that follow the instance ids in the frames, in a different query slot every call."""

    num_frames, n_instances = T, N

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, clips, padding_mask):
        ids = clips[0, :, 0]  # (T, H, W)
        perm = torch.roll(torch.arange(N), self.calls)  # slot -> instance id - 1
        self.calls += 1
        logits = torch.full((1, T, N, C + 1), -9.0)
        logits[..., C] = 9.0
        masks = torch.full((1, N, T, SIZE // STRIDE, SIZE // STRIDE), -9.0)
        for slot, index in enumerate(perm.tolist()):
            instance = index + 1
            present = (ids == instance).float()  # (T, H, W)
            if instance not in CLASSES or present.sum() == 0:
                continue
            logits[0, :, slot, C] = -9.0
            logits[0, :, slot, CLASSES[instance]] = 9.0
            small = torch.nn.functional.avg_pool2d(present, STRIDE)
            masks[0, slot] = torch.where(small > 0.5, 9.0, -9.0)
        return {"pred_logits": logits, "pred_masks": masks}


def test_long_video_links_instances_across_clips():
    frames = torch.zeros(F_, 3, SIZE, SIZE)
    for f in range(F_):
        frames[f, 0] = id_map(f)
    runner = InferenceRunner(StubModel(), PostProcess(STRIDE, category_ids=CATEGORY_IDS), stride=2)
    assert runner.num_frames == T
    results = check_results(runner.run_video(frames, (SIZE, SIZE), video_id=5))
    confident = [r for r in results if r["score"] > 0.5]
    assert len(confident) == len(results) == 3  # one track per instance, none split or merged
    by_category = {r["category_id"]: r for r in confident}
    assert set(by_category) == {3, 7, 9}
    for instance, label in CLASSES.items():
        track = by_category[CATEGORY_IDS[label]]
        assert track["video_id"] == 5 and len(track["segmentations"]) == F_
        masks = decode(track["segmentations"], (SIZE, SIZE))
        for f in range(F_):
            expected = (id_map(f) == instance).numpy()
            # bilinear upsampling rounds the outer corners of a shape off by one pixel each
            assert (masks[f] != expected).sum() <= 4, (instance, f)
            assert (track["segmentations"][f] is None) == (not expected.any())


def test_link_threshold_decides_whether_a_poor_overlap_continues_a_track():
    # one track predicted on frames 0-1 (a 4 x 4 block at logits resolution 8 x 8); the next
    # clip (frames 1-2) has a query overlapping it on frame 1 with IoU 1/3 and one elsewhere
    tracks = Tracks.empty(3, 8, 8, C)
    old = torch.zeros(2, 8, 8)
    old[:, 0:4, 0:4] = 1.0
    tracks.start(1)
    tracks.add(0, torch.tensor([0, 1]), old, torch.ones(C) / C)
    new = torch.zeros(2, 2, 8, 8)  # (n, T, h, w) probabilities of the next clip
    new[0, :, 2:6, 0:4] = 1.0  # shifted down by half: 8 of 16 + 16 - 8 pixels
    new[1, :, 6:8, 6:8] = 1.0
    frames = torch.tensor([1, 2])
    runner = InferenceRunner(StubModel(), PostProcess(STRIDE))  # default threshold 0.1
    assert runner.link(tracks, frames, new) == [0, None]  # IoU 1/3 links; the other starts anew
    strict = InferenceRunner(StubModel(), PostProcess(STRIDE), link_threshold=0.5)
    assert strict.link(tracks, frames, new) == [None, None]  # IoU 1/3 < 0.5: a new track
    always = InferenceRunner(StubModel(), PostProcess(STRIDE), link_threshold=0.0)
    assert always.link(tracks, frames, new) == [0, None]  # one track: one pair only


def test_short_video_is_looped_and_cropped_back():
    frames = torch.zeros(3, 3, SIZE, SIZE)
    for f in range(3):
        frames[f, 0] = id_map(f)
    runner = InferenceRunner(StubModel(), PostProcess(STRIDE, category_ids=CATEGORY_IDS))
    results = runner.run_video(frames, (SIZE, SIZE), video_id=1)
    confident = [r for r in results if r["score"] > 0.5]
    assert {r["category_id"] for r in confident} == {3, 7}
    for r in results:
        assert len(r["segmentations"]) == 3


def test_runner_with_the_real_model():
    torch.manual_seed(0)
    model, _, post = build_model(
        "quick", "stdeform:n_points=2", num_frames=3, d_model=24, enc_layers=1, dec_layers=1,
        dim_feedforward=32, n_instances=2, mask_dim=16, num_classes=3,
        category_ids=CATEGORY_IDS,
    )  # fmt: skip
    model.eval()
    frames = torch.randn(7, 3, 40, 48)
    runner = InferenceRunner(model, post, stride=1)
    results = check_results(runner.run_video(frames, (80, 96), video_id=4))
    assert results
    for r in results:
        assert r["video_id"] == 4 and 0 <= r["score"] <= 1 and r["category_id"] in CATEGORY_IDS
        assert len(r["segmentations"]) == 7
        assert all(s is None or s["size"] == [80, 96] for s in r["segmentations"])
    with pytest.raises(ValueError, match="frames must be"):
        runner.run_video(frames[0], (80, 96))
    with pytest.raises(ValueError, match="stride"):
        InferenceRunner(model, post, stride=4)
