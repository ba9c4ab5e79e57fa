"""YouTube-VIS evaluator: perfect results, hand-computed cases (null rules, crowd, maxDets, area
ranges), exact video IoU, agreement with pycocotools' COCOeval on one-frame videos, and errors."""

import contextlib
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from pycocotools import mask as mask_api
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from bench.data.ytvis import YTVISFormatError
from bench.evaluation import evaluate
from bench.evaluation.__main__ import main
from bench.evaluation.video_iou import video_ious
from models.postprocess import masks_to_rles

KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")


def rle(mask):
    return masks_to_rles(np.asarray(mask, bool)[None], [True])[0]


def box_mask(height, width, rows, cols):
    mask = np.zeros((height, width), bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def track(frames):
    """Per-frame masks (or None) -> segmentations."""
    return [None if m is None else rle(m) for m in frames]


def gt_file(videos, annotations, categories=(1, 2)):
    """videos: {id: (H, W, T)}; annotations: (video, category, frames, crowd[, areas])."""
    anns = []
    for k, (video_id, cat_id, frames, crowd, *areas) in enumerate(annotations):
        anns.append({
            "id": k + 1, "video_id": video_id, "category_id": cat_id, "iscrowd": crowd,
            "segmentations": track(frames),
            "areas": areas[0] if areas else [None if m is None else int(m.sum()) for m in frames],
        })  # fmt: skip
    return {
        "videos": [
            {"id": v, "height": h, "width": w, "length": t, "file_names": ["f.jpg"] * t}
            for v, (h, w, t) in videos.items()
        ],
        "categories": [{"id": c, "name": str(c)} for c in categories],
        "annotations": anns,
    }


def result(video_id, cat_id, score, frames):
    return {
        "video_id": video_id,
        "category_id": cat_id,
        "score": score,
        "segmentations": track(frames),
    }


def random_gt(rng, num_videos=6, categories=(1, 2, 3), one_per_category=False):
    videos, annotations = {}, []
    for v in range(1, num_videos + 1):
        h, w, t = int(rng.integers(8, 20)), int(rng.integers(8, 20)), int(rng.integers(1, 6))
        videos[v] = (h, w, t)
        cats = rng.permutation(categories)[: rng.integers(1, len(categories) + 1)]
        for cat in cats if one_per_category else rng.choice(categories, rng.integers(1, 4)):
            frames = []
            for _ in range(t):
                if rng.random() < 0.25:
                    frames.append(None)
                    continue
                y, x = rng.integers(0, h - 3), rng.integers(0, w - 3)
                frames.append(
                    box_mask(h, w, (y, y + rng.integers(2, 6)), (x, x + rng.integers(2, 6)))
                )
            if all(m is None for m in frames):
                frames[0] = box_mask(h, w, (0, 2), (0, 2))
            annotations.append((v, int(cat), frames, 0))
    return gt_file(videos, annotations, categories)


def perfect_results(gt):
    out = []
    for ann in gt["annotations"]:
        out.append(
            {**{k: ann[k] for k in ("video_id", "category_id", "segmentations")}, "score": 0.7}
        )
    return out


@pytest.mark.parametrize("seed", range(3))
def test_perfect_results_score_one(seed):
    gt = random_gt(np.random.default_rng(seed), one_per_category=True)
    stats = evaluate(gt, perfect_results(gt))
    for key in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100"):
        assert stats[key] == pytest.approx(1.0, abs=1e-15), key  # COCO's tp / (tp + fp + eps)
    assert stats["APm"] == stats["APl"] == -1.0  # no medium or large ground truth
    # several instances of one category per video: all found, but one detection cannot find both
    gt = random_gt(np.random.default_rng(seed + 10))
    stats = evaluate(gt, perfect_results(gt))
    assert stats["AP"] == pytest.approx(1.0, abs=1e-15) and stats["AR10"] == 1.0


def test_hand_computed_two_videos_with_null_rules():
    a = box_mask(4, 4, (0, 2), (0, 2))  # 4 px
    gt = gt_file(
        {1: (4, 4, 3), 2: (4, 4, 2)},
        [
            (1, 1, [a, None, None], 0),
            (2, 1, [box_mask(4, 4, (0, 2), (0, 4)), box_mask(4, 4, (0, 4), (0, 1))], 0),  # 8, 4 px
        ],
    )
    results = [
        # video 1: frame 0 exact (4 / 4); frame 1 only the detection (+2 union); frame 2 both null
        result(1, 1, 0.9, [a, box_mask(4, 4, (3, 4), (0, 2)), None]),  # IoU 4 / 6
        # video 2: 6 of 8 px in frame 0; null where the gt has 4 px -> IoU 6 / (8 + 4) = 0.5
        result(2, 1, 0.8, [box_mask(4, 4, (0, 2), (0, 3)), None]),
        result(2, 1, 0.95, [box_mask(4, 4, (2, 4), (2, 4)), None]),  # IoU 0: false positive
        result(1, 2, 0.99, [a, None, None]),  # category without ground truth: not averaged
    ]
    stats = evaluate(gt, results)
    # ranking FP, d(2/3), d(1/2). At IoU .50 both match: precision envelope 2/3 everywhere.
    # At .55, .60, .65 only the 2/3 one: precision 1/2 up to recall 1/2 (51 of 101 points).
    # From .70 on nothing matches.
    expected_ap = (2 / 3 + 3 * 0.5 * 51 / 101) / 10
    assert stats["AP"] == pytest.approx(expected_ap, abs=1e-12)
    assert stats["AP50"] == pytest.approx(2 / 3, abs=1e-12)
    assert stats["AP75"] == 0.0
    assert stats["AR100"] == pytest.approx((1 + 3 * 0.5) / 10)
    assert stats["AR10"] == stats["AR100"]
    # maxDets 1 keeps the FP in video 2: only the 2/3 match, recall 1/2 at four thresholds
    assert stats["AR1"] == pytest.approx(4 * 0.5 / 10)
    assert stats["APs"] == stats["AP"] and stats["APm"] == stats["APl"] == -1.0


def test_crowd_absorbs_detections_with_plain_video_iou():
    h, w = 8, 8
    person = [box_mask(h, w, (0, 3), (0, 3)), box_mask(h, w, (0, 3), (1, 4))]
    crowd = [box_mask(h, w, (4, 8), (0, 8)), box_mask(h, w, (4, 8), (0, 8))]
    videos = {1: (h, w, 2)}
    exact = result(1, 1, 0.5, person)
    on_crowd = [result(1, 1, 0.9 - 0.05 * k, crowd) for k in range(5)]
    gt = gt_file(videos, [(1, 1, person, 0), (1, 1, crowd, 1)])
    stats = evaluate(gt, [exact, *on_crowd])
    assert stats["AP"] == pytest.approx(1.0, abs=1e-15)  # five detections absorbed
    assert stats["AR100"] == 1.0
    # the same region not marked crowd: one detection matches it, four are false positives
    stats = evaluate(gt_file(videos, [(1, 1, person, 0), (1, 1, crowd, 0)]), [exact, *on_crowd])
    # ranking TP, FP x4, TP: precision 1 up to recall 1/2 (51 points), then 2/6
    assert stats["AP50"] == pytest.approx((51 + 50 * (2 / 6)) / 101)
    # a detection inside the crowd region: COCO's crowd IoU (overlap / detection area) would be
    # 1, the video IoU is 1/4, so it stays a false positive, ranked first: precision 1/2
    quarter = [box_mask(h, w, (4, 8), (0, 2))] * 2
    stats = evaluate(gt, [exact, result(1, 1, 0.9, quarter)])
    assert stats["AP"] == pytest.approx(0.5)


def test_max_dets_truncates_per_video_and_category():
    h, w = 6, 6
    target = [box_mask(h, w, (0, 3), (0, 3))]
    miss = [box_mask(h, w, (4, 6), (4, 6))]
    gt = gt_file({1: (h, w, 1)}, [(1, 1, target, 0)])
    hit = result(1, 1, 0.01, target)
    misses = [result(1, 1, 0.5 + k / 1000, miss) for k in range(100)]
    other_category = [result(1, 2, 0.9, miss) for _ in range(150)]
    stats = evaluate(gt, [hit, *misses[:99], *other_category])  # hit is the 100th of category 1
    assert stats["AR100"] == 1.0 and stats["AR10"] == 0.0 and stats["AR1"] == 0.0
    assert stats["AP"] == pytest.approx(0.01)  # precision 1/100 at every recall point
    stats = evaluate(gt, [hit, *misses])  # hit is the 101st: cut
    assert stats["AR100"] == 0.0 and stats["AP"] == 0.0
    stats = evaluate(gt, [hit, misses[0], result(1, 1, 0.02, target)])  # a duplicate hit second
    assert stats["AR1"] == 0.0 and stats["AR10"] == 1.0


def test_area_ranges_use_mean_nonzero_area():
    size = 300
    squares = {  # mean areas: 100 (small), 22500 (medium), 72900 (large)
        1: box_mask(size, size, (0, 10), (0, 10)),
        2: box_mask(size, size, (0, 150), (0, 150)),
        3: box_mask(size, size, (0, 270), (0, 270)),
    }
    videos = {v: (size, size, 2) for v in (1, 2, 3, 4)}
    gt = gt_file(videos, [(v, 1, [m, None], 0) for v, m in squares.items()])
    perfect = [result(v, 1, 0.5, [m, None]) for v, m in squares.items()]
    stats = evaluate(gt, perfect)
    for key in ("APs", "APm", "APl", "AP"):
        assert stats[key] == pytest.approx(1.0, abs=1e-15)
    # an unmatched large detection: a false positive for "large" and "all", ignored elsewhere
    full = result(4, 1, 0.9, [np.ones((size, size), bool), None])
    stats = evaluate(gt, [*perfect, full])
    assert stats["APl"] == pytest.approx(0.5) and stats["AP"] == pytest.approx(0.75)
    assert stats["APs"] == pytest.approx(1.0) and stats["APm"] == pytest.approx(1.0)
    # the ground truth's own `areas` decide its range, and zeros and nulls are left out of the
    # mean: (16000 + 17000) / 2 > 128**2 -> medium (with the zero counted it would be small)
    tiny = box_mask(size, size, (0, 2), (0, 2))
    gt = gt_file(
        {1: (size, size, 4)}, [(1, 1, [tiny, tiny, None, tiny], 0, [0, 16000, None, 17000])]
    )
    stats = evaluate(gt, [result(1, 1, 0.5, [tiny, tiny, None, tiny])])
    assert stats["APm"] == pytest.approx(1.0) and stats["APs"] == stats["APl"] == -1.0


def test_video_iou_is_exact():
    rng = np.random.default_rng(5)
    for h, w, t in [(7, 9, 4), (240, 320, 3)]:
        dt = [[(rng.random((h, w)) < 0.5) if rng.random() < 0.8 else None for _ in range(t)]
              for _ in range(6)]  # fmt: skip
        gt = [[(rng.random((h, w)) < 0.3) if rng.random() < 0.8 else None for _ in range(t)]
              for _ in range(4)]  # fmt: skip
        ious = video_ious([track(d) for d in dt], [track(g) for g in gt], t)
        empty = np.zeros((h, w), bool)
        for i, j in np.ndindex(ious.shape):
            d = np.stack([empty if m is None else m for m in dt[i]])
            g = np.stack([empty if m is None else m for m in gt[j]])
            union = (d | g).sum()
            expected = (d & g).sum() / union if union else 0.0
            assert ious[i, j] == expected  # exactly, not approximately
    assert video_ious([[None, None]], [[None, None]], 2)[0, 0] == 0.0  # empty union


def coco_stats(gt, results):
    """COCOeval 'segm' on the same data seen as images (every video has one frame)."""
    images = [{"id": v["id"], "height": v["height"], "width": v["width"]} for v in gt["videos"]]
    anns = [
        {"id": a["id"], "image_id": a["video_id"], "category_id": a["category_id"],
         "segmentation": a["segmentations"][0], "area": float(a["areas"][0]),
         "bbox": list(mask_api.toBbox(a["segmentations"][0])), "iscrowd": 0,
         "ignore": a.get("ignore", 0)}
        for a in gt["annotations"]
    ]  # fmt: skip
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": gt["categories"]}
    dets = [
        {"image_id": r["video_id"], "category_id": r["category_id"], "score": r["score"],
         "segmentation": dict(r["segmentations"][0])}
        for r in results
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        coco_eval = COCOeval(coco, coco.loadRes(dets), "segm")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return dict(zip(KEYS, coco_eval.stats[:9], strict=True))


@pytest.mark.parametrize("seed", range(8))
def test_matches_cocoeval_on_one_frame_videos(seed):
    rng = np.random.default_rng(seed)
    videos, annotations, results = {}, [], []
    for v in range(1, int(rng.integers(3, 12))):
        h, w = int(rng.integers(10, 40)), int(rng.integers(10, 40))
        videos[v] = (h, w, 1)
        for _ in range(rng.integers(0, 5)):
            y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
            mask = box_mask(
                h, w, (y, y + rng.integers(3, h - y + 1)), (x, x + rng.integers(3, w - x + 1))
            )
            annotations.append((v, int(rng.integers(1, 4)), [mask], 0))
            for _ in range(rng.integers(0, 4)):  # detections near this instance
                shifted = np.roll(mask, rng.integers(-3, 4), axis=int(rng.integers(2)))
                cat = annotations[-1][1] if rng.random() < 0.8 else int(rng.integers(1, 4))
                results.append(result(v, cat, float(np.round(rng.random(), 2)), [shifted]))
        for _ in range(rng.integers(0, 4)):  # random detections
            mask = rng.random((h, w)) < rng.random() * 0.3
            results.append(result(v, int(rng.integers(1, 4)), float(rng.random()), [mask]))
    if not results:
        results.append(result(1, 1, 0.5, [np.ones(videos[1][:2], bool)]))
    gt = gt_file(videos, annotations, categories=(1, 2, 3))
    for ann in gt["annotations"]:
        ann["ignore"] = int(rng.random() < 0.2)  # both overwrite it with iscrowd
    ours, coco = evaluate(gt, results), coco_stats(gt, results)
    for key in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100"):
        assert ours[key] == pytest.approx(coco[key], abs=1e-12), key
    assert 0 < ours["AP"] < 1  # a non-trivial case


def test_results_that_do_not_fit_the_ground_truth_are_rejected():
    m = box_mask(4, 5, (0, 2), (0, 2))
    gt = gt_file({1: (4, 5, 2)}, [(1, 1, [m, m], 0)])
    cases = {
        r"result 0 \(video_id 1\): field 'segmentations' has 3 frames, expected 2": result(
            1, 1, 0.5, [m, m, m]
        ),
        r"result 0 \(video_id 7\): field 'video_id' is not a video": result(7, 1, 0.5, [m, m]),
        r"field 'category_id' is 5, not a category": result(1, 5, 0.5, [m, m]),
        r"'segmentations\[0\].size' is \[5, 4\], expected \[4, 5\]": result(
            1, 1, 0.5, [m.T.copy(), None]
        ),
    }
    for pattern, bad in cases.items():
        with pytest.raises(YTVISFormatError, match=pattern):
            evaluate(gt, [bad])
    assert evaluate(gt, [])["AP"] == 0.0  # no detections is a valid (bad) result


def test_command_line_prints_the_coco_summary(tmp_path, capsys):
    gt = random_gt(np.random.default_rng(3), one_per_category=True)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(perfect_results(gt)))
    args = ["--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "res.json")]
    assert main([*args, "--json", str(tmp_path / "m.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000"
    )
    assert (
        lines[6]
        == " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 1.000"
    )
    assert len(lines) == 12
    assert json.loads((tmp_path / "m.json").read_text())["AP"] == 1.0
    (tmp_path / "res.json").write_text(json.dumps([{**perfect_results(gt)[0], "video_id": 99}]))
    assert main(args) == 1
    assert "video_id 99" in capsys.readouterr().err


def run_evaluation_command(tmp_path, gt, results, timeout=60):
    """`python -m bench.evaluation` on gt and results dicts in a subprocess; a hang fails the test
    instead of blocking pytest."""
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    command = [sys.executable, "-m", "bench.evaluation", "--gt", str(tmp_path / "gt.json"),
               "--results", str(tmp_path / "res.json")]  # fmt: skip
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"python -m bench.evaluation still ran after {timeout} s (a hang)")


def test_short_counts_are_an_error_not_a_hang(tmp_path):
    """One 8 x 10 frame: the ground truth's counts decode to 80 pixels, the detection's to 25
    (pycocotools' iou loops forever on them)."""
    gt = gt_file({1: (8, 10, 1)}, [])
    gt["annotations"] = [
        {"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
         "segmentations": [{"size": [8, 10], "counts": "94400000W1"}]}
    ]  # fmt: skip
    detection = {"video_id": 1, "category_id": 1, "score": 0.9,
                 "segmentations": [{"size": [8, 10], "counts": "94400"}]}  # fmt: skip
    done = run_evaluation_command(tmp_path, gt, [detection])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    message = (
        f"{tmp_path / 'res.json'}: result 0 (video_id 1): 'segmentations[0]'.counts '94400' "
        "decode to 25 pixels, expected 80 (height*width of 8x10)"
    )
    assert re.fullmatch(r".*error: " + re.escape(message) + "\n", done.stderr)
    # the same counts in the ground truth, named there
    gt["annotations"][0]["segmentations"][0]["counts"] = "94400"
    done = run_evaluation_command(tmp_path, gt, [])
    assert done.returncode == 1
    assert re.fullmatch(
        r".*error: .*gt.json: annotation id 1: 'segmentations\[0\]'"
        r".counts '94400' decode to 25 pixels, expected 80 \(height\*width of 8x10\)\n",
        done.stderr,
    )


@pytest.mark.parametrize("seed", range(2))
def test_corrupt_counts_in_results_or_ground_truth_are_rejected(seed, tmp_path):
    rng = np.random.default_rng(seed)
    gt = random_gt(rng, one_per_category=True)
    results = perfect_results(gt)
    i = int(rng.integers(len(results)))
    t = next(t for t, seg in enumerate(results[i]["segmentations"]) if seg is not None)
    h, w = results[i]["segmentations"][t]["size"]
    longer = rle(rng.random((h, w + 1)) < 0.5)["counts"]  # h more pixels than the frame holds
    bad = [{**r, "segmentations": list(r["segmentations"])} for r in results]
    bad[i]["segmentations"][t] = {"size": [h, w], "counts": longer}
    done = run_evaluation_command(tmp_path, gt, bad)
    assert done.returncode == 1
    where = rf"result {i} \(video_id {results[i]['video_id']}\): 'segmentations\[{t}\]'.counts"
    assert re.fullmatch(
        rf".*error: .*res.json: {where} .* decode to {h * (w + 1)} pixels.*\n", done.stderr
    )
    ann = gt["annotations"][i]  # results[i] copies annotation i
    ann["segmentations"][t] = {"size": [h, w], "counts": longer}
    done = run_evaluation_command(tmp_path, gt, results)
    assert done.returncode == 1
    where = rf"annotation id {ann['id']}: 'segmentations\[{t}\]'.counts"
    assert re.fullmatch(
        rf".*error: .*gt.json: {where} .* decode to {h * (w + 1)} pixels.*\n", done.stderr
    )


def test_command_line_help_shows_examples_and_defaults():
    done = subprocess.run(
        [sys.executable, "-m", "bench.evaluation", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].startswith("usage: python -m bench.evaluation ")
    assert (
        "    python -m bench.evaluation --gt data/ytvis/annotations/instances_val.json \\" in lines
    )
    assert "        --results results.json" in lines  # the example's continuation, as written
    options = done.stdout.split("options:")[1].split("examples:")[0].split("\n  -")[2:]  # not -h
    assert [entry.split()[0] for entry in options] == ["-gt", "-results", "-json"]
    for entry in options:
        entry = " ".join(entry.split())
        assert "(required)" in entry or "(default: " in entry, entry


def one_line_error(capsys, *names):
    """The one stderr line of a command-line error, checked to name each of names."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("python -m bench.evaluation: error: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def gt_and_results(tmp_path, monkeypatch):
    """Valid files; evaluate() records whether it ran."""
    gt = random_gt(np.random.default_rng(4), one_per_category=True)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(perfect_results(gt)))
    calls = []
    monkeypatch.setattr("bench.evaluation.__main__.evaluate", lambda *a: calls.append(a) or {})
    return tmp_path / "gt.json", tmp_path / "res.json", calls


def test_command_line_rejects_options_before_evaluating(gt_and_results, tmp_path, capsys):
    gt, res, calls = gt_and_results
    (tmp_path / "a_file").write_text("x")
    cases = {
        "--gt": ["--gt", str(tmp_path / "missing.json"), "--results", str(res)],
        "--results": ["--gt", str(gt), "--results", str(tmp_path / "missing.json")],
        "--gt ": ["--gt", str(tmp_path), "--results", str(res)],  # a folder
        "--json": [
            "--gt",
            str(gt),
            "--results",
            str(res),
            "--json",
            str(tmp_path / "no" / "m.json"),
        ],
        "--json ": [
            "--gt",
            str(gt),
            "--results",
            str(res),
            "--json",
            str(tmp_path / "a_file" / "m"),
        ],
        "--json  ": ["--gt", str(gt), "--results", str(res), "--json", str(tmp_path)],
    }
    for option, argv in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        one_line_error(capsys, option.strip())
    with pytest.raises(SystemExit) as exit_info:
        main(["--gt", str(gt)])
    assert exit_info.value.code == 2
    one_line_error(capsys, "--results")
    assert calls == []  # nothing was evaluated


def read_only_folder(path):
    """A folder without write permission; skips the test where permissions do not bind (root)."""
    path.mkdir()
    path.chmod(0o500)
    try:
        (path / "probe").write_text("x")
    except PermissionError:
        return path
    pytest.skip("this user writes into read-only folders (root)")


def test_command_line_rejects_a_read_only_json_folder(gt_and_results, tmp_path, capsys):
    gt, res, calls = gt_and_results
    folder = read_only_folder(tmp_path / "read_only")
    with pytest.raises(SystemExit) as exit_info:
        main(["--gt", str(gt), "--results", str(res), "--json", str(folder / "m.json")])
    assert exit_info.value.code == 2 and calls == []
    one_line_error(capsys, "--json", "not writable")


def test_command_line_names_a_file_that_is_not_json(tmp_path, capsys):
    gt = random_gt(np.random.default_rng(5), one_per_category=True)
    text = json.dumps(gt)
    (tmp_path / "gt.json").write_text(text[: len(text) // 3])
    (tmp_path / "res.json").write_text(json.dumps(perfect_results(gt)))
    assert main(["--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "res.json")]) == 1
    one_line_error(capsys, f"{tmp_path / 'gt.json'}: not a JSON file")
