"""Clip dataset and transforms: item shapes and dtypes, frame repetition and windows, flips that
move masks and boxes together, boxes that match masks, and collation with a padding mask."""

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_api

from bench.data.dataset import YTVISClipDataset, clip_windows, collate_clips, masks_to_boxes
from bench.data.transforms import (
    Compose,
    RandomHorizontalFlip,
    ResizeShortSide,
    build_transforms,
    resized_shape,
)

SIZES = {1: (20, 30, 3), 2: (16, 24, 7)}  # video id: height, width, length


def rle(mask):
    encoded = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": encoded["size"], "counts": encoded["counts"].decode()}


def track(rng, height, width, length, visible):
    """Random blob masks in the visible frames; null elsewhere."""
    segs, masks = [], np.zeros((length, height, width), bool)
    for t in range(length):
        if t in visible:
            y, x = rng.integers(0, height - 6), rng.integers(0, width - 8)
            masks[t, y : y + rng.integers(2, 6), x : x + rng.integers(2, 8)] = True
            masks[t] |= rng.random((height, width)) < 0.03
            segs.append(rle(masks[t]))
        else:
            segs.append(None)
    return segs, masks


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two videos on disk (PNG frames, so pixels can be compared exactly) and their masks."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    videos, frames = [], {}
    for video_id, (h, w, length) in SIZES.items():
        names = []
        for t in range(length):
            frame = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            name = f"v{video_id}/{t:03d}.png"
            (root / f"v{video_id}").mkdir(exist_ok=True)
            Image.fromarray(frame).save(root / name)
            names.append(name)
            frames[video_id, t] = frame
        videos.append(
            {"id": video_id, "height": h, "width": w, "length": length, "file_names": names}
        )
    specs = [  # annotation id, video, category, crowd, visible frames
        (1, 1, 5, 0, {0, 1, 2}),
        (2, 1, 9, 1, {0, 1}),
        (3, 2, 9, 0, {2, 3, 4, 5, 6}),
        (4, 2, 5, 0, {0}),
    ]
    annotations, masks = [], {}
    for ann_id, video_id, cat_id, crowd, visible in specs:
        h, w, length = SIZES[video_id]
        segs, masks[ann_id] = track(rng, h, w, length, visible)
        annotations.append(
            {"id": ann_id, "video_id": video_id, "category_id": cat_id, "iscrowd": crowd,
             "segmentations": segs}
        )  # fmt: skip
    data = {
        "videos": videos,
        "categories": [{"id": 9, "name": "nine"}, {"id": 5, "name": "five"}],
        "annotations": annotations,
    }
    return root, data, frames, masks


def test_item_shapes_and_dtypes(tiny):
    root, data, _, _ = tiny
    torch.manual_seed(0)
    dataset = YTVISClipDataset(root, data, 4, build_transforms(True, 10, 40), train=True)
    assert len(dataset) == 2 and dataset.cat_ids == [5, 9]
    clip, target = dataset[1]  # video 2: 16 x 24 -> short side 10 -> 10 x 15
    assert clip.shape == (4, 3, 10, 15) and clip.dtype == torch.float32
    n = len(target["labels"])
    assert target["labels"].dtype == torch.int64 and set(target["labels"].tolist()) <= {0, 1}
    assert target["boxes"].shape == (n, 4, 4) and target["boxes"].dtype == torch.float32
    assert ((target["boxes"] >= 0) & (target["boxes"] <= 1)).all()
    assert target["masks"].shape == (n, 4, 10, 15) and target["masks"].dtype == torch.bool
    assert target["valid"].shape == (n, 4) and target["valid"].dtype == torch.bool
    assert target["frame_indices"].dtype == torch.int64 and target["frame_indices"].shape == (4,)
    assert target["orig_size"].tolist() == [16, 24] and target["size"].tolist() == [10, 15]
    assert target["video_id"] == 2
    assert abs(float(clip.mean())) < 1.0  # normalised, not raw [0, 1]


def test_pixels_masks_and_labels_match_the_files(tiny):
    root, data, frames, masks = tiny
    dataset = YTVISClipDataset(root, data, 3, transforms=None, train=False)
    for index, (video_id, window) in enumerate(dataset.windows):
        clip, target = dataset[index]
        assert target["frame_indices"].tolist() == window
        expected = np.stack([frames[video_id, t] for t in window]).transpose(0, 3, 1, 2) / 255
        np.testing.assert_allclose(clip.numpy(), expected, atol=1e-6)
        for k, ann_id in enumerate(target["ann_ids"].tolist()):
            np.testing.assert_array_equal(target["masks"][k].numpy(), masks[ann_id][window])
            cat_id = next(a["category_id"] for a in data["annotations"] if a["id"] == ann_id)
            assert dataset.cat_ids[target["labels"][k]] == cat_id
        visible_anns = [
            a["id"] for a in data["annotations"]
            if a["video_id"] == video_id and masks[a["id"]][window].any()
        ]  # fmt: skip
        assert target["ann_ids"].tolist() == visible_anns  # eval keeps crowd, drops invisible


def test_crowd_dropped_in_training(tiny):
    root, data, _, _ = tiny
    _, target = YTVISClipDataset(root, data, 3, train=True)[0]
    assert target["ann_ids"].tolist() == [1] and not target["iscrowd"].any()
    _, target = YTVISClipDataset(root, data, 3, train=False)[0]
    assert target["ann_ids"].tolist() == [1, 2] and target["iscrowd"].tolist() == [False, True]


def test_short_video_repeats_frames_cyclically(tiny):
    root, data, _, masks = tiny
    for train in (True, False):
        clip, target = YTVISClipDataset(root, data, 8, train=train)[0]  # video 1 has 3 frames
        assert target["frame_indices"].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
        torch.testing.assert_close(clip[3:6], clip[0:3])
        np.testing.assert_array_equal(
            target["masks"][0].numpy(), masks[1][[0, 1, 2, 0, 1, 2, 0, 1]]
        )


def test_training_window_is_random_and_consecutive(tiny):
    root, data, _, _ = tiny
    dataset = YTVISClipDataset(root, data, 4, train=True)
    torch.manual_seed(0)
    starts = set()
    for _ in range(40):
        indices = dataset.sample_frames(2)  # 7 frames
        assert indices == list(range(indices[0], indices[0] + 4))
        starts.add(indices[0])
    assert starts == {0, 1, 2, 3}


def test_evaluation_windows_cover_long_videos(tiny):
    root, data, _, _ = tiny
    dataset = YTVISClipDataset(root, data, 4, train=False)
    assert dataset.windows == [(1, [0, 1, 2, 0]), (2, [0, 1, 2, 3]), (2, [3, 4, 5, 6])]
    assert len(dataset) == 3
    for length in range(1, 30):
        for num_frames in (1, 3, 5, 8):
            windows = clip_windows(length, num_frames)
            assert all(len(w) == num_frames for w in windows)
            assert set().union(*map(set, windows)) == set(range(length))
            assert len(windows) == max(1, -(-length // num_frames))


def test_flip_moves_frames_masks_and_boxes_together(tiny):
    root, data, _, _ = tiny
    plain = YTVISClipDataset(root, data, 4, transforms=None, train=False)
    flipped = YTVISClipDataset(root, data, 4, Compose([RandomHorizontalFlip(p=1.0)]), train=False)
    for index in range(len(plain)):
        clip, target = plain[index]
        clip_f, target_f = flipped[index]
        torch.testing.assert_close(clip_f, clip.flip(-1))
        assert torch.equal(target_f["masks"], target["masks"].flip(-1))
        boxes, boxes_f = target["boxes"], target_f["boxes"]
        valid = target["valid"]
        assert torch.equal(target_f["valid"], valid)
        torch.testing.assert_close(boxes_f[..., 0][valid], 1 - boxes[..., 0][valid])
        torch.testing.assert_close(boxes_f[..., 1:], boxes[..., 1:])
        assert (boxes_f[~valid] == 0).all()
    # the transform flips boxes it is given too, leaving zero (invalid) boxes at zero
    masks = torch.zeros(1, 2, 4, 6, dtype=torch.bool)
    boxes = torch.tensor([[[0.25, 0.5, 0.5, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    _, out = RandomHorizontalFlip(1.0)(torch.rand(2, 3, 4, 6), {"masks": masks, "boxes": boxes})
    torch.testing.assert_close(out["boxes"], torch.tensor([[[0.75, 0.5, 0.5, 1.0], [0.0] * 4]]))


def test_boxes_match_masks(tiny):
    root, data, _, _ = tiny
    torch.manual_seed(1)
    dataset = YTVISClipDataset(root, data, 4, build_transforms(True, 13, 100), train=False)
    for index in range(len(dataset)):
        _, target = dataset[index]
        height, width = target["size"].tolist()
        for k, t in np.ndindex(*target["valid"].shape):
            box = target["boxes"][k, t]
            ys, xs = np.nonzero(target["masks"][k, t].numpy())
            assert bool(target["valid"][k, t]) == (len(xs) > 0)
            if len(xs) == 0:
                assert (box == 0).all()
                continue
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            expected = [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width,
                        (y1 - y0) / height]  # fmt: skip
            np.testing.assert_allclose(box.numpy(), expected, atol=1e-6)
    assert masks_to_boxes(torch.zeros(2, 3, 5, 5, dtype=torch.bool)).abs().sum() == 0


def test_resize_keeps_aspect_caps_long_side_and_uses_nearest_for_masks():
    assert resized_shape(20, 30, 10, None) == (10, 15)
    assert resized_shape(20, 30, 20, 24) == (16, 24)
    assert resized_shape(30, 20, 300, 1000) == (450, 300)
    rng = np.random.default_rng(2)
    small = torch.from_numpy(rng.random((2, 3, 10, 15)) < 0.5)  # (n, T, H, W)
    big = small.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)  # 2x2 blocks
    clip = torch.rand(3, 3, 20, 30)
    resized, target = ResizeShortSide(10)(clip, {"masks": big})
    assert resized.shape == (3, 3, 10, 15) and target["size"].tolist() == [10, 15]
    assert torch.equal(target["masks"], small)
    _, target = ResizeShortSide(10)(clip, {"masks": torch.zeros(0, 3, 20, 30, dtype=torch.bool)})
    assert target["masks"].shape == (0, 3, 10, 15)


def test_collate_pads_bottom_right_with_a_padding_mask():
    a = (torch.rand(2, 3, 5, 7), {"video_id": 1})
    b = (torch.rand(2, 3, 6, 4), {"video_id": 2})
    clips, padding, targets = collate_clips([a, b])
    assert clips.shape == (2, 2, 3, 6, 7) and padding.shape == (2, 6, 7)
    assert padding.dtype == torch.bool
    torch.testing.assert_close(clips[0, :, :, :5, :7], a[0])
    torch.testing.assert_close(clips[1, :, :, :6, :4], b[0])
    assert (clips[0, :, :, 5:] == 0).all() and (clips[1, :, :, :, 4:] == 0).all()
    assert not padding[0, :5, :7].any() and padding[0, 5:].all()
    assert not padding[1, :6, :4].any() and padding[1, :, 4:].all()
    assert [t["video_id"] for t in targets] == [1, 2]
    with pytest.raises(ValueError, match="frame counts"):
        collate_clips([a, (torch.rand(3, 3, 5, 7), {})])
