"""YouTube-VIS reader: every segmentation kind decodes to the hand-made mask, test splits load,
and each format error names the id and the field."""

import copy
import json
import re

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_api

from bench.data.ytvis import (
    MAX_GROUPS,
    YTVISFormatError,
    compressed_counts,
    counts_totals,
    load_ytvis,
)


def uncompressed_rle(mask: np.ndarray) -> dict:
    """Uncompressed RLE written by hand: column-major runs, starting with a run of zeros."""
    flat = mask.T.reshape(-1).astype(int)
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


# video 1 is 6 x 5 (H x W), 4 frames
MASK_A = np.zeros((6, 5), bool)
MASK_A[0:3, 0:2] = True
MASK_A[5, 4] = True
MASK_B = np.zeros((6, 5), bool)
MASK_B[2:6, 3] = True
MASK_B[1, 1] = True
POLYGON = [[1, 1, 4, 1, 4, 3, 1, 3]]  # rectangle x 1..4, y 1..3 -> pixels x 1..3, y 1..2
MASK_C = np.zeros((6, 5), bool)
MASK_C[1:3, 1:4] = True


def make_dataset() -> dict:
    return {
        "info": {"description": "test", "year": 2021},
        "licenses": [{"id": 1, "name": "none"}],
        "videos": [
            {
                "id": 1,
                "width": 5,
                "height": 6,
                "length": 4,
                "file_names": [f"v1/{t:05d}.jpg" for t in range(4)],
            },
            {"id": 2, "width": 4, "height": 4, "length": 2, "file_names": ["v2/a.jpg", "v2/b.jpg"]},
        ],  # fmt: skip
        "categories": [{"id": 3, "name": "three"}, {"id": 7, "name": "seven"}],
        "annotations": [
            {
                "id": 10,
                "video_id": 1,
                "category_id": 7,
                "iscrowd": 0,
                "segmentations": [compressed_rle(MASK_A), uncompressed_rle(MASK_B), POLYGON, None],
                "bboxes": [[0, 0, 5, 6], [1, 1, 3, 5], [1, 1, 3, 2], None],
                "areas": [int(MASK_A.sum()), int(MASK_B.sum()), 6, None],
            },
            {
                "id": 11,
                "video_id": 2,
                "category_id": 3,
                "iscrowd": 1,
                "segmentations": [None, compressed_rle(np.eye(4, dtype=bool))],
                "bboxes": [None, [0, 0, 4, 4]],
                "areas": [None, 4],
            },
        ],  # fmt: skip
    }


def test_decodes_every_segmentation_kind():
    ytvis = load_ytvis(make_dataset())
    masks, present = ytvis.decode_masks(ytvis.annotations[10])
    assert masks.shape == (4, 6, 5) and masks.dtype == bool
    np.testing.assert_array_equal(masks[0], MASK_A)
    np.testing.assert_array_equal(masks[1], MASK_B)
    np.testing.assert_array_equal(masks[2], MASK_C)
    assert not masks[3].any()
    np.testing.assert_array_equal(present, [True, True, True, False])
    sub, sub_present = ytvis.decode_masks(ytvis.annotations[10], frames=[2, 3, 2])
    np.testing.assert_array_equal(sub, masks[[2, 3, 2]])
    np.testing.assert_array_equal(sub_present, [True, False, True])


def test_random_masks_decode_identically_from_both_rle_kinds():
    rng = np.random.default_rng(0)
    data = make_dataset()
    truth = rng.random((4, 6, 5)) < 0.4
    truth[3] = False
    segs = [compressed_rle(truth[0]), uncompressed_rle(truth[1]), uncompressed_rle(truth[2]), None]
    data["annotations"][0]["segmentations"] = segs
    ytvis = load_ytvis(data)
    masks, present = ytvis.decode_masks(ytvis.annotations[10])
    np.testing.assert_array_equal(masks, truth)
    np.testing.assert_array_equal(present, [True, True, True, False])
    rles = ytvis.rles(ytvis.annotations[10])
    assert rles[3] is None
    np.testing.assert_array_equal(mask_api.area(rles[:3]), truth[:3].sum(axis=(1, 2)))


def test_index_and_optional_fields(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(make_dataset()))
    ytvis = load_ytvis(path)
    assert ytvis.source == str(path)
    assert ytvis.video_ids == [1, 2]
    assert list(ytvis.categories) == [3, 7]
    assert [a["id"] for a in ytvis.anns_by_video[1]] == [10]
    assert ytvis.info["year"] == 2021 and ytvis.licenses[0]["name"] == "none"


def test_test_split_without_annotations_loads():
    data = make_dataset()
    del data["annotations"], data["info"], data["licenses"]
    ytvis = load_ytvis(data)
    assert ytvis.annotations == {}
    assert ytvis.anns_by_video == {1: [], 2: []}
    assert ytvis.info is None


def _set(path, value):
    def mutate(data):
        *parents, last = path
        node = data
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _delete(path):
    def mutate(data):
        *parents, last = path
        node = data
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


def _append_copy(kind, index):
    def mutate(data):
        data[kind].append(copy.deepcopy(data[kind][index]))

    return mutate


BAD_FILES = {
    "top level without videos": (_delete(["videos"]), r"missing key 'videos'"),
    "video missing height": (_delete(["videos", 1, "height"]), r"video id 2: missing key 'height'"),
    "video width not int": (_set(["videos", 0, "width"], "5"), r"video id 1: field 'width'"),
    "file_names vs length": (
        _set(["videos", 0, "length"], 3),
        r"video id 1: field 'file_names' has 4 entries, expected 3",
    ),
    "duplicated video id": (_append_copy("videos", 0), r"video id 1: duplicated id"),
    "duplicated annotation id": (_append_copy("annotations", 1), r"annotation id 11: duplicated"),
    "duplicated category id": (_append_copy("categories", 1), r"category id 7: duplicated id"),
    "annotation missing segmentations": (
        _delete(["annotations", 0, "segmentations"]),
        r"annotation id 10: missing key 'segmentations'",
    ),
    "category missing name": (_delete(["categories", 0, "name"]), r"category id 3: missing key"),
    "segmentations length": (
        _set(["annotations", 0, "segmentations"], [None, None, None]),
        r"annotation id 10: field 'segmentations' has 3 entries, expected 4",
    ),
    "bboxes length": (
        _set(["annotations", 1, "bboxes"], [None]),
        r"annotation id 11: field 'bboxes' has 1 entries, expected 2",
    ),
    "areas length": (
        _set(["annotations", 1, "areas"], [None, 1, 2]),
        r"annotation id 11: field 'areas' has 3 entries, expected 2",
    ),
    "unknown video id": (
        _set(["annotations", 0, "video_id"], 99),
        r"annotation id 10: field 'video_id' is 99",
    ),
    "unknown category id": (
        _set(["annotations", 1, "category_id"], 4),
        r"annotation id 11: field 'category_id' is 4",
    ),
    "rle size differs from video": (
        _set(["annotations", 0, "segmentations", 0, "size"], [5, 6]),
        r"annotation id 10: 'segmentations\[0\]'.size is \[5, 6\], expected \[6, 5\]",
    ),
    "uncompressed counts sum": (
        _set(["annotations", 0, "segmentations", 1, "counts"], [3, 4]),
        r"annotation id 10: 'segmentations\[1\]'.counts sum to 7, expected 30",
    ),
    "compressed counts short": (  # MASK_A's counts without the last run: 29 of 30 pixels
        _set(
            ["annotations", 0, "segmentations", 0, "counts"], compressed_rle(MASK_A)["counts"][:-1]
        ),
        r"annotation id 10: 'segmentations\[0\]'.counts '.*' decode to 29 pixels, expected 30",
    ),
    "compressed counts long": (  # a 5 x 4 mask's counts in a 4 x 4 video
        _set(
            ["annotations", 1, "segmentations", 1, "counts"],
            compressed_rle(np.eye(5, 4, dtype=bool))["counts"],
        ),
        r"annotation id 11: 'segmentations\[1\]'.counts '.*' decode to 20 pixels, expected 16",
    ),
    "compressed counts garbage": (
        _set(["annotations", 1, "segmentations", 1, "counts"], "!!!!"),
        r"annotation id 11: 'segmentations\[1\]'.counts '!!!!' is not a compressed RLE string",
    ),
    "compressed counts empty": (
        _set(["annotations", 1, "segmentations", 1, "counts"], ""),
        r"annotation id 11: 'segmentations\[1\]'.counts '' decode to 0 pixels, expected 16",
    ),
    "polygon with odd coordinates": (
        _set(["annotations", 0, "segmentations", 2], [[1, 1, 4, 1, 4]]),
        r"annotation id 10: 'segmentations\[2\]'\[0\] has 5 coordinates",
    ),
    "segmentation of wrong type": (
        _set(["annotations", 1, "segmentations", 0], "x"),
        r"annotation id 11: 'segmentations\[0\]' is a str",
    ),
    "iscrowd not 0/1": (
        _set(["annotations", 1, "iscrowd"], 2),
        r"annotation id 11: field 'iscrowd'",
    ),
    "bbox of wrong length": (
        _set(["annotations", 1, "bboxes", 1], [0, 0, 4]),
        r"annotation id 11: 'bboxes\[1\]'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_format_errors_name_id_and_field(case, tmp_path):
    mutate, pattern = BAD_FILES[case]
    data = make_dataset()
    load_ytvis(data)  # valid before the change
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(YTVISFormatError, match=re.escape(str(path)) + ".*" + pattern):
        load_ytvis(path)
    assert issubclass(YTVISFormatError, ValueError)


def test_frames_read_and_missing_frame_named(tmp_path):
    ytvis = load_ytvis(make_dataset())
    (tmp_path / "v1").mkdir()
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    Image.fromarray(frame).save(tmp_path / "v1" / "00000.png")
    ytvis.videos[1]["file_names"][0] = "v1/00000.png"  # lossless, to compare pixels
    np.testing.assert_array_equal(ytvis.read_frame(tmp_path, 1, 0), frame)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "v1" / "00001.jpg"))):
        ytvis.read_frame(tmp_path, 1, 1)
    Image.fromarray(frame[:4]).save(tmp_path / "v1" / "00002.jpg")
    with pytest.raises(YTVISFormatError, match=r"00002.jpg \(video id 1, frame 2\) is 4x5"):
        ytvis.read_frame(tmp_path, 1, 2)


def test_a_file_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "instances_val.json"
    text = json.dumps(make_dataset())
    path.write_text(text[: len(text) - 7])  # cut short
    with pytest.raises(YTVISFormatError, match=re.escape(str(path)) + ": not a JSON file"):
        load_ytvis(path)


def test_counts_are_checked_against_pycocotools_runs():
    """The counts decoder agrees with pycocotools' encoder on random masks of random sizes."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        height, width = (int(v) for v in rng.integers(1, 40, size=2))
        mask = rng.random((height, width)) < rng.random()
        runs = compressed_counts(compressed_rle(mask)["counts"])
        flat = mask.T.reshape(-1)  # column-major, starting with a run of zeros
        changes = np.flatnonzero(np.diff(flat.astype(int))) + 1
        edges = np.concatenate([[0], changes, [flat.size]])
        expected = ([0] if flat[0] else []) + np.diff(edges).tolist()
        assert runs == expected


def test_batch_totals_agree_with_the_decoder():
    """counts_totals (one vectorised pass) and compressed_counts (one string at a time) agree on
    random strings: pycocotools encodings, strings of valid characters, continuation characters,
    arbitrary bytes and runs of up to 9 groups, empty ones included, in random order."""
    rng = np.random.default_rng(11)
    strings = []
    for _ in range(2000):
        kind = rng.integers(5)
        if kind == 0:
            height, width = (int(v) for v in rng.integers(1, 50, size=2))
            strings.append(compressed_rle(rng.random((height, width)) < rng.random())["counts"])
        elif kind < 4:
            alphabet = [range(48, 112), range(80, 112), range(256)][kind - 1]
            strings.append(bytes(rng.choice(list(alphabet), rng.integers(0, 12)).tolist()))
        else:  # runs of 1 to 9 groups: continuation characters, then a last one
            strings.append(
                b"".join(
                    bytes(rng.integers(80, 112, size=rng.integers(0, 9)).tolist())
                    + bytes([int(rng.integers(48, 64))])  # non-negative
                    for _ in range(rng.integers(1, 4))
                )
            )
    strings = [s.encode() if isinstance(s, str) else s for s in strings] + [b""]
    totals, valid = counts_totals(strings)
    for string, total, ok in zip(strings, totals, valid, strict=True):
        try:
            runs = compressed_counts(string)
        except ValueError:
            assert not ok, string
            continue
        assert ok == (max(_run_lengths(string), default=0) <= MAX_GROUPS), string
        if ok:
            assert total == sum(runs), string
    assert 0.2 < valid.mean() < 0.8  # both kinds occur
    long_runs = [s for s in strings if max(_run_lengths(s), default=0) > MAX_GROUPS]
    assert len(long_runs) > 20 and not counts_totals(long_runs)[1].any()


def _run_lengths(string: bytes) -> list[int]:
    """Characters per run of a counts string."""
    lengths, current = [], 0
    for byte in string:
        current += 1
        if not (byte - 48) & 0x20:
            lengths.append(current)
            current = 0
    return lengths
