"""Results writer: masks to RLE and back, save / load round trip, and clear validation errors."""

import json
import re

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_api

from bench.data.results import check_results, load_results, save_results
from bench.data.ytvis import YTVISFormatError
from models.postprocess import masks_to_rles


def test_masks_to_rles_round_trip():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 7, 9)) < 0.3
    masks[2] = False
    rles = masks_to_rles(masks)
    assert rles[2] is None  # empty frame -> null by default
    for t in (0, 1, 3, 4):
        assert isinstance(rles[t]["counts"], str) and rles[t]["size"] == [7, 9]
        np.testing.assert_array_equal(mask_api.decode(rles[t]).astype(bool), masks[t])
    present = np.array([True, False, True, True, False])
    rles = masks_to_rles(torch.from_numpy(masks), torch.from_numpy(present))
    assert [r is not None for r in rles] == present.tolist()
    assert mask_api.area(rles[2]) == 0  # present but empty -> an empty RLE, not null
    with pytest.raises(ValueError, match=r"expected \(T, H, W\)"):
        masks_to_rles(masks[0])
    with pytest.raises(ValueError, match=r"present has shape \(4,\)"):
        masks_to_rles(masks, present[:4])


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    masks = rng.random((3, 4, 6)) < 0.5
    results = [
        {"video_id": np.int64(3), "category_id": 2, "score": np.float32(0.25),
         "segmentations": masks_to_rles(masks)},
        {"video_id": 4, "category_id": np.int32(1), "score": 1,
         "segmentations": [None, None, None]},
    ]  # fmt: skip
    path = tmp_path / "results.json"
    save_results(results, path)
    loaded = load_results(path)
    assert json.loads(path.read_text()) == loaded
    assert [r["video_id"] for r in loaded] == [3, 4] and loaded[0]["score"] == 0.25
    assert loaded[1]["segmentations"] == [None, None, None]
    for t in range(3):
        np.testing.assert_array_equal(
            mask_api.decode(loaded[0]["segmentations"][t]).astype(bool), masks[t]
        )


GOOD = {"video_id": 1, "category_id": 2, "score": 0.5, "segmentations": [None]}
RLE = {"size": [2, 2], "counts": "04"}
BAD_RESULTS = {
    "not a list": ({"a": 1}, r"expected a list"),
    "entry not a dict": ([GOOD, 3], r"result 1 is a int"),
    "missing score": ([{k: v for k, v in GOOD.items() if k != "score"}], r"missing key 'score'"),
    "nan score": ([{**GOOD, "score": float("nan")}], r"result 0 \(video_id 1\): field 'score'"),
    "float video id": ([{**GOOD, "video_id": 1.0}], r"field 'video_id' is 1.0"),
    "empty segmentations": ([{**GOOD, "segmentations": []}], r"'segmentations' is not a non-empty"),
    "polygon": ([{**GOOD, "segmentations": [[0, 0, 1, 0, 1, 1]]}], r"'segmentations\[0\]' is not"),
    "mixed sizes": (
        [{**GOOD, "segmentations": [RLE, {"size": [3, 2], "counts": "06"}]}],
        r"mix mask sizes \[\(2, 2\), \(3, 2\)\]",
    ),
}


@pytest.mark.parametrize("case", list(BAD_RESULTS))
def test_results_errors_are_clear(case):
    results, pattern = BAD_RESULTS[case]
    with pytest.raises(YTVISFormatError, match=pattern):
        check_results(results)


def corrupt_counts(rng, kind):
    """(size, counts) of a compressed RLE whose counts do not decode to H*W pixels, from a random
    mask: encoded one column short or long, or strings that are no RLE at all."""
    height, width = (int(v) for v in rng.integers(4, 12, size=2))
    mask = rng.random((height, width + 1)) < 0.4
    if kind == "short":
        counts = masks_to_rles(mask[None, :, :width][:, :, :-1], [True])[0]["counts"]
    elif kind == "long":
        counts = masks_to_rles(mask[None], [True])[0]["counts"]
    else:
        counts = {"garbage": "!!!!", "empty": "", "unfinished": "P", "not ascii": "0é"}[kind]
    return [height, width], counts


CORRUPT = {
    "short": r"decode to \d+ pixels, expected",
    "long": r"decode to \d+ pixels, expected",
    "garbage": r"is not a compressed RLE string: character '!' at 0",
    "empty": r"decode to 0 pixels, expected",
    "unfinished": r"is not a compressed RLE string: it ends inside a number",
    "not ascii": r"is not a compressed RLE string",
}


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_counts_that_do_not_decode_to_the_size_are_rejected(kind, tmp_path):
    rng = np.random.default_rng(len(kind))
    size, counts = corrupt_counts(rng, kind)
    good = masks_to_rles(rng.random((3, *size)) < 0.5, [True] * 3)
    results = [
        {**GOOD, "video_id": 4, "segmentations": good},
        {**GOOD, "segmentations": list(good)},
    ]
    results[1]["segmentations"][2] = {"size": size, "counts": counts}
    check_results(results[:1])  # valid without the corrupt entry
    where = r"result 1 \(video_id 1\): 'segmentations\[2\]'\.counts "
    with pytest.raises(YTVISFormatError, match=where + ".*" + CORRUPT[kind]):
        check_results(results)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    with pytest.raises(YTVISFormatError, match=re.escape(str(path)) + ": " + where):
        load_results(path)


def test_non_positive_sizes_are_rejected():
    results = [{**GOOD, "segmentations": [{"size": [0, 3], "counts": ""}]}]
    with pytest.raises(YTVISFormatError, match=r"'segmentations\[0\].size' is \[0, 3\], expected"):
        check_results(results)


def test_a_file_that_is_not_json_is_named(tmp_path):
    rng = np.random.default_rng(2)
    text = json.dumps([{**GOOD, "segmentations": masks_to_rles(rng.random((2, 3, 4)) < 0.5)}])
    path = tmp_path / "results.json"
    path.write_text(text[: len(text) // 2])  # cut short, as by a killed writer
    with pytest.raises(YTVISFormatError, match=re.escape(str(path)) + ": not a JSON file"):
        load_results(path)
    path.write_bytes(b"\xff\xfe[]")
    with pytest.raises(YTVISFormatError, match=re.escape(str(path)) + ": not a JSON file"):
        load_results(path)
