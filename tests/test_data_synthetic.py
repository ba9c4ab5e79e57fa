"""Synthetic generator: deterministic bytes, shape classes, exact visible masks, null entries for
entering / leaving / hidden instances, and files that the reader accepts."""

import itertools
import json

import numpy as np
import pytest
from pycocotools import mask as mask_api

from bench.data.synthetic import (
    SHAPES,
    Difficulty,
    Track,
    ensure_synthetic,
    generate_synthetic,
    instance_annotation,
    make_background,
    rasterise,
    render_video,
    sample_tracks,
    video_rngs,
)
from bench.data.ytvis import load_ytvis

SIZE = (48, 64)  # H, W: not square, to catch swapped axes
SMALL = dict(videos=5, frames=6, size=SIZE, val_videos=2)


def read_tree(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthetic")
    runs = {
        "a": generate_synthetic(base / "a", seed=3, blur=True, texture=True, **SMALL),
        "again": generate_synthetic(base / "again", seed=3, blur=True, texture=True, **SMALL),
        "other": generate_synthetic(base / "other", seed=4, blur=True, texture=True, **SMALL),
        "plain": generate_synthetic(base / "plain", seed=3, **SMALL),
    }
    return runs


def test_same_seed_same_bytes_other_seed_other_bytes(generated):
    first = read_tree(generated["a"]["root"])
    assert len([p for p in first if p.suffix == ".jpg"]) == (5 + 2) * 6
    assert first == read_tree(generated["again"]["root"])
    other = read_tree(generated["other"]["root"])
    assert first.keys() == other.keys()
    differing = [p for p in first if p.suffix == ".jpg" and first[p] != other[p]]
    assert len(differing) == (5 + 2) * 6
    train = load_ytvis(generated["a"]["train_annotations"])
    val = load_ytvis(generated["a"]["val_annotations"])
    assert train.annotations and val.annotations
    first_frames = {first[p] for p in first if p.name == "00000.jpg"}
    assert len(first_frames) == 5 + 2  # val videos are not copies of train videos


def test_video_bytes_do_not_depend_on_worker_count(tmp_path):
    args = dict(videos=16, frames=2, size=(24, 24), seed=9, val_videos=1)
    serial = generate_synthetic(tmp_path / "serial", workers=1, **args)
    pooled = generate_synthetic(tmp_path / "pooled", workers=2, **args)
    assert read_tree(serial["root"]) == read_tree(pooled["root"])


def test_at_least_five_distinct_shape_classes(generated):
    categories = load_ytvis(generated["a"]["train_annotations"]).categories
    assert len(categories) == len(SHAPES) >= 5
    assert len({c["name"] for c in categories.values()}) == len(categories)
    # every class occurs, and colour is independent of the class
    seen_shapes, colours_per_shape = set(), {}
    for index in range(40):
        rng, _ = video_rngs(0, "train", index)
        for track in sample_tracks(rng, Difficulty(), 8, 64, 64, np.array([128, 128, 128])):
            seen_shapes.add(track.shape)
            colours_per_shape.setdefault(track.shape, set()).add(track.colour)
    assert seen_shapes == set(range(len(SHAPES)))
    assert all(len(colours) > 1 for colours in colours_per_shape.values())
    # silhouettes at the same pose differ clearly between any two classes
    masks = [
        rasterise(Track(k, (0, 0, 0), 20.0, 0, 0, 0, 0.3, 0, (32, 32), (0, 0), (0, 64, 0, 64)),
                  0, 64, 64)
        for k in range(len(SHAPES))
    ]  # fmt: skip
    for a, b in itertools.combinations(masks, 2):
        assert (a & b).sum() / (a | b).sum() < 0.9


@pytest.mark.parametrize("index", range(6))
def test_visible_masks_are_exact(index):
    height, width, frames = 40, 56, 6
    shape_rng, background_rng = video_rngs(11, "train", index)
    background = make_background(background_rng, height, width, texture=True)
    difficulty = Difficulty(min_instances=3, max_instances=4, size_range=(0.4, 0.6))
    tracks = sample_tracks(shape_rng, difficulty, frames, height, width, background.mean((0, 1)))
    images, visible = render_video(tracks, background, frames)
    assert images.shape == (frames, height, width, 3) and visible.shape[1:] == (
        frames,
        height,
        width,
    )
    for t in range(frames):
        assert visible[:, t].sum(axis=0).max() <= 1  # disjoint
        silhouettes = np.stack([rasterise(track, t, height, width) for track in tracks])
        np.testing.assert_array_equal(visible[:, t].any(0), silhouettes.any(0))
        for i, track in enumerate(tracks):
            above = silhouettes[i + 1 :].any(0)
            np.testing.assert_array_equal(visible[i, t], silhouettes[i] & ~above)
            assert (images[t][visible[i, t]] == track.colour).all()
        uncovered = ~visible[:, t].any(0)
        np.testing.assert_array_equal(images[t][uncovered], background[uncovered])


def test_annotations_match_a_rerender(generated):
    ytvis = load_ytvis(generated["plain"]["train_annotations"])
    height, width = SIZE
    for index, video_id in enumerate(ytvis.video_ids):
        shape_rng, background_rng = video_rngs(3, "train", index)
        background = make_background(background_rng, height, width, texture=False)
        tracks = sample_tracks(shape_rng, Difficulty(), 6, height, width, background.mean((0, 1)))
        _, visible = render_video(tracks, background, 6)
        kept = [(track, masks) for track, masks in zip(tracks, visible, strict=True) if masks.any()]
        anns = ytvis.anns_by_video[video_id]
        assert len(anns) == len(kept)
        for ann, (track, expected) in zip(anns, kept, strict=True):
            masks, present = ytvis.decode_masks(ann)
            assert ann["category_id"] == track.shape + 1
            np.testing.assert_array_equal(masks, expected)
            np.testing.assert_array_equal(present, expected.any(axis=(1, 2)))
            for t in range(6):
                if present[t]:
                    assert ann["areas"][t] == expected[t].sum()
                    ys, xs = np.nonzero(expected[t])
                    assert ann["bboxes"][t] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
                else:
                    assert ann["areas"][t] is None and ann["bboxes"][t] is None


def test_entering_and_leaving_instances_get_nulls(tmp_path):
    paths = generate_synthetic(
        tmp_path, videos=6, frames=10, size=(32, 32), seed=5, val_videos=1,
        difficulty=Difficulty(enter_leave=1.0),
    )  # fmt: skip
    anns = list(load_ytvis(paths["train_annotations"]).annotations.values())
    leading = [a for a in anns if a["segmentations"][0] is None]
    trailing = [a for a in anns if a["segmentations"][-1] is None]
    assert leading and trailing
    assert all(a["segmentations"][0] is None or a["segmentations"][-1] is None for a in anns)
    for ann in anns:  # nulls are contiguous at one end: the instance is outside, then inside
        present = [s is not None for s in ann["segmentations"]]
        assert present == sorted(present) or present == sorted(present, reverse=True)


def test_hidden_instance_gets_null_only_while_hidden():
    height = width = 32
    bounds = (0.0, 32.0, 0.0, 32.0)
    # a circle (radius 4 * 0.85) slides right at 3 px / frame from under a static square of
    # circumradius 10 (x from 10 - 7.07 to 10 + 7.07) drawn above it: its right edge is at 13.4,
    # 16.4 (hidden), then 19.4, ... (partly visible)
    below = Track(0, (255, 0, 0), 4.0, 0, 0, 0, 0, 0, (10.0, 16.0), (3.0, 0.0), bounds)
    above = Track(1, (0, 0, 255), 10.0, 0, 0, 0, 0, 0, (10.0, 16.0), (0.0, 0.0), bounds)
    background = np.zeros((height, width, 3), np.uint8)
    _, visible = render_video([below, above], background, 6)
    annotation = instance_annotation(visible[0])
    present = [s is not None for s in annotation["segmentations"]]
    assert present == [False, False, True, True, True, True]
    assert annotation["areas"][0] is None and annotation["areas"][-1] > 0
    np.testing.assert_array_equal(
        mask_api.decode(annotation["segmentations"][2]).astype(bool), visible[0, 2]
    )
    # hidden in every frame: no annotation at all
    assert instance_annotation(np.zeros((3, 8, 8), bool)) is None


def test_ensure_synthetic_reuses_or_regenerates(tmp_path):
    args = dict(videos=2, frames=3, size=(16, 16), seed=1, val_videos=1)
    paths = ensure_synthetic(tmp_path, **args)
    stamp = paths["manifest"].stat().st_mtime_ns
    assert ensure_synthetic(tmp_path, **args) == paths
    assert paths["manifest"].stat().st_mtime_ns == stamp  # nothing rewritten
    ensure_synthetic(tmp_path, **{**args, "videos": 3})
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["complete"] and manifest["args"]["videos"] == 3
    assert len(load_ytvis(paths["train_annotations"]).videos) == 3
    foreign = tmp_path / "foreign"
    (foreign / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="did not write"):
        generate_synthetic(foreign, **args)
