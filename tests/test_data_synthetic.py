"""Synthetic generator: deterministic bytes, shape classes, exact visible masks, null entries for
entering / leaving / hidden instances, and files that the reader accepts."""

import itertools
import json
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_api

from bench.data.synthetic import (
    DEFAULT_SPEC,
    SHAPES,
    Difficulty,
    SpecError,
    SyntheticSpec,
    Track,
    default_folder,
    ensure_synthetic,
    generate_synthetic,
    instance_annotation,
    make_background,
    rasterise,
    render_video,
    sample_tracks,
    video_rngs,
)
from bench.data.synthetic import main as synthetic_main
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


TINY = SyntheticSpec(videos=2, val_videos=1, frames=2, size=(16, 16), seed=1)


def test_spec_text_and_name_round_trip():
    assert SyntheticSpec.parse("videos=400,frames=12,size=128x128,seed=0,val_videos=120") == (
        DEFAULT_SPEC
    )
    assert DEFAULT_SPEC.name() == "v400-val120-f12-128x128-s0"
    assert SyntheticSpec.parse("") == DEFAULT_SPEC == SyntheticSpec()
    assert SyntheticSpec.parse("videos=20,frames=6").val_videos == 6  # 30% of the videos
    rng = np.random.default_rng(0)
    names = set()
    for _ in range(30):
        extras = {}
        if rng.random() < 0.5:
            extras["difficulty"] = Difficulty(
                max_instances=int(rng.integers(1, 6)),
                enter_leave=float(rng.random()),
                size_range=tuple(sorted(rng.uniform(0.05, 0.5, size=2).tolist())),
            )
        spec = SyntheticSpec(
            videos=int(rng.integers(1, 1000)), val_videos=int(rng.integers(1, 100)),
            frames=int(rng.integers(1, 40)), size=tuple(rng.integers(8, 300, size=2).tolist()),
            seed=int(rng.integers(0, 2**31)), blur=bool(rng.random() < 0.5),
            texture=bool(rng.random() < 0.5), **extras,
        )  # fmt: skip
        assert SyntheticSpec.parse(str(spec)) == spec
        assert SyntheticSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
        h, w = spec.size
        base = f"v{spec.videos}-val{spec.val_videos}-f{spec.frames}-{h}x{w}-s{spec.seed}"
        default_extras = not spec.blur and not spec.texture and spec.difficulty == Difficulty()
        assert re.fullmatch(
            re.escape(base) + ("" if default_extras else "-[0-9a-f]{8}"), spec.name()
        )
        names.add(spec.name())
        other = spec.with_seed(spec.seed + 1)
        assert other.name() != spec.name() and replace(other, seed=spec.seed) == spec
    assert len(names) == 30
    blurred = replace(TINY, blur=True)
    assert blurred.name() != replace(TINY, texture=True).name() != TINY.name()
    assert blurred.name().startswith(TINY.name() + "-")


BAD_SPECS = {
    "videos=0": r"field 'videos': expected an int >= 1, got 0",
    "videos=ten": r"field 'videos': expected an int, got 'ten'",
    "val_videos=-1": r"field 'val_videos': expected an int >= 1, got -1",
    "frames=0": r"field 'frames': expected an int >= 1, got 0",
    "size=128": r"field 'size': expected HxW, e.g. 128x128, got '128'",
    "size=4x64": r"field 'size': expected \(H, W\), two ints >= 8, got \(4, 64\)",
    "seed=-2": r"field 'seed': expected an int >= 0, got -2",
    "blur=maybe": r"field 'blur': expected true or false, got 'maybe'",
    "enter_leave=2": r"field 'enter_leave': expected a probability in \[0, 1\], got 2.0",
    "size_range=0.5:0.1": r"field 'size_range': expected two numbers lo:hi with 0 < lo <= hi",
    "max_instances=0": r"field 'max_instances': expected an int >= 1, got 0",
    "vidoes=4": r"field 'vidoes': expected a field among videos, val_videos, .*, got 'vidoes'",
    "videos": r"field 'videos': expected FIELD=VALUE, got 'videos'",
    "videos=2,videos=3": r"field 'videos': expected a single value",
}


@pytest.mark.parametrize("text", list(BAD_SPECS))
def test_spec_errors_name_the_field(text):
    with pytest.raises(SpecError, match="^synthetic spec " + BAD_SPECS[text]) as error:
        SyntheticSpec.parse(text)
    assert isinstance(error.value, ValueError) and "\n" not in str(error.value)


def test_ensure_reuses_the_same_spec_and_records_it(tmp_path, monkeypatch):
    paths = ensure_synthetic(TINY, tmp_path / "set")
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["complete"] and SyntheticSpec.from_dict(manifest["spec"]) == TINY
    assert manifest["name"] == TINY.name()
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "set").rglob("*")}
    assert ensure_synthetic(TINY, tmp_path / "set") == paths
    assert generate_synthetic(tmp_path / "set", **asdict(TINY)) == paths
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "set").rglob("*")} == stamps
    monkeypatch.chdir(tmp_path)
    assert ensure_synthetic(TINY)["root"] == default_folder(TINY)
    assert default_folder(TINY) == Path(f"data/synthetic-{TINY.name()}")
    assert read_tree(tmp_path / default_folder(TINY)) == read_tree(tmp_path / "set")


def test_ensure_never_deletes_or_overwrites_other_data(tmp_path):
    ensure_synthetic(TINY, tmp_path / "set")
    before = read_tree(tmp_path / "set")
    other = replace(TINY, videos=3)
    with pytest.raises(ValueError) as error:
        ensure_synthetic(other, tmp_path / "set")
    message = str(error.value)
    for part in (str(tmp_path / "set"), TINY.name(), str(TINY), other.name(), str(other)):
        assert part in message
    assert "\n" not in message
    # an unfinished set of another spec is not this command's either
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    (tmp_path / "set" / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    before[Path("manifest.json")] = (tmp_path / "set" / "manifest.json").read_bytes()
    with pytest.raises(ValueError, match=r"holds the synthetic set .*, unfinished, not the"):
        ensure_synthetic(other, tmp_path / "set")
    assert read_tree(tmp_path / "set") == before
    # data without a manifest, or with someone else's
    foreign = tmp_path / "foreign"
    (foreign / "annotations").mkdir(parents=True)
    (foreign / "annotations" / "mine.json").write_text("{}")
    with pytest.raises(ValueError, match=r"holds annotations/ but no manifest.json"):
        ensure_synthetic(TINY, foreign)
    (foreign / "manifest.json").write_text('{"tool": "labelme"}')
    with pytest.raises(ValueError, match=r"holds an unreadable manifest.json"):
        ensure_synthetic(TINY, foreign)
    assert read_tree(foreign) == {
        Path("annotations/mine.json"): b"{}", Path("manifest.json"): b'{"tool": "labelme"}'
    }  # fmt: skip
    # a complete set with a piece missing is not repaired
    (tmp_path / "set" / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "set" / "annotations" / "instances_val.json").unlink()
    with pytest.raises(ValueError, match=r"val_annotations .* is missing"):
        ensure_synthetic(TINY, tmp_path / "set")


def test_an_unfinished_generation_of_the_same_spec_is_written_again(tmp_path):
    fresh = read_tree(ensure_synthetic(TINY, tmp_path / "fresh")["root"])
    paths = ensure_synthetic(TINY, tmp_path / "set")
    manifest = json.loads(paths["manifest"].read_text())
    paths["manifest"].write_text(json.dumps({**manifest, "complete": False}))  # killed while
    paths["val_annotations"].unlink()  # writing the val split
    (paths["train_images"] / "video_00000" / "00001.jpg").write_bytes(b"half a jpeg")
    ensure_synthetic(TINY, tmp_path / "set")
    assert read_tree(tmp_path / "set") == fresh


def test_first_manifests_are_read(tmp_path):
    """Sets written before the manifest held a spec ({"args": ...}) are recognised."""
    paths = ensure_synthetic(TINY, tmp_path / "set")
    args = {"version": 1, **TINY.to_dict()}
    paths["manifest"].write_text(
        json.dumps({"generator": "bench.data.synthetic", "complete": True, "args": args})
    )
    stamp = paths["train_annotations"].stat().st_mtime_ns
    assert ensure_synthetic(TINY, tmp_path / "set") == paths
    assert paths["train_annotations"].stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=re.escape(f"holds the synthetic set {TINY.name()}")):
        ensure_synthetic(TINY.with_seed(2), tmp_path / "set")


def test_with_seed_draws_other_videos(tmp_path):
    spec = replace(TINY, videos=4, val_videos=3, frames=1)
    frames = []
    for seed in (1, 2):
        root = ensure_synthetic(spec.with_seed(seed), tmp_path / str(seed))["root"]
        frames += [p.read_bytes() for p in sorted(root.rglob("*.jpg"))]
    assert len(frames) == 14 and len(set(frames)) == 14  # 2 x (4 train + 3 val) videos


# ----------------------------------------------------------------------------- command line

SYNTHETIC = [sys.executable, "-m", "bench.data.synthetic"]
SMALL_ARGS = ["--videos", "2", "--val-videos", "1", "--frames", "5", "--size", "16", "16"]


def test_command_line_help_shows_examples_and_defaults():
    done = subprocess.run([*SYNTHETIC, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("usage: python -m bench.data.synthetic ")
    assert (
        "    python -m bench.data.synthetic --out data/synthetic --videos 500 --frames 12 "
        "--size 128 128 \\" in lines
    )
    assert "        --seed 0 --val-videos 100 --blur --texture --workers 2" in lines
    options = done.stdout.split("options:")[1].split("examples:")[0].split("\n  -")[2:]
    assert len(options) == 11
    for entry in options:
        assert "(default: " in " ".join(entry.split()), entry


def one_line_error(capsys, option):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("python -m bench.data.synthetic: error: argument " + option), err
    return lines[0]


BAD_OPTIONS = {
    "--enter-leave": (["--enter-leave", "2"], "expected a probability in [0, 1], got 2"),
    "--enter-leave ": (["--enter-leave", "nan"], "expected a probability in [0, 1], got nan"),
    "--val-videos": (["--val-videos", "0"], "expected an integer >= 1, got '0'"),
    "--val-videos ": (["--val-videos", "-1"], "expected an integer >= 1, got '-1'"),
    "--videos": (["--videos", "0"], "expected an integer >= 1, got '0'"),
    "--frames": (["--frames", "3"], "expected >= 5 for instances that enter or leave"),
    "--size": (["--size", "0", "16"], "expected an integer >= 8, got '0'"),
    "--size ": (["--size", "16", "-4"], "expected an integer >= 8, got '-4'"),
    "--workers": (["--workers", "0"], "expected an integer >= 1, got '0'"),
    "--max-instances": (["--max-instances", "0"], "expected an integer >= 1, got '0'"),
    "--seed": (["--seed", "-1"], "expected an integer >= 0, got '-1'"),
    "--videos  ": (["--videos", "many"], "expected an integer >= 1, got 'many'"),
}


@pytest.mark.parametrize("option", list(BAD_OPTIONS))
def test_command_line_rejects_bad_options_before_writing(option, tmp_path, capsys):
    argv, expected = BAD_OPTIONS[option]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        synthetic_main(["--out", str(out), *SMALL_ARGS, *argv])
    assert exit_info.value.code != 0
    assert expected in one_line_error(capsys, option.strip())
    assert not out.exists()


def test_command_line_frames_below_five_need_no_entering(tmp_path, capsys):
    synthetic_main(["--out", str(tmp_path), *SMALL_ARGS, "--frames", "3", "--enter-leave", "0"])
    assert len(load_ytvis(tmp_path / "annotations" / "instances_train.json").videos) == 2


def test_command_line_refuses_another_set_in_the_folder(tmp_path, capsys):
    synthetic_main(["--out", str(tmp_path), *SMALL_ARGS])
    before = read_tree(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        synthetic_main(["--out", str(tmp_path), *SMALL_ARGS, "--videos", "3"])
    assert exit_info.value.code == 1
    line = one_line_error(capsys, "--out")
    assert "v2-val1-f5-16x16-s0" in line and "v3-val1-f5-16x16-s0" in line and str(tmp_path) in line
    assert read_tree(tmp_path) == before
    synthetic_main(["--out", str(tmp_path), *SMALL_ARGS])  # the same spec: reused
    assert read_tree(tmp_path) == before


def test_command_line_rejects_an_output_folder_it_cannot_make(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        synthetic_main(["--out", str(tmp_path / "a_file" / "set"), *SMALL_ARGS])
    assert exit_info.value.code == 1
    assert "cannot write the synthetic set" in one_line_error(capsys, "--out")
    assert read_tree(tmp_path) == {Path("a_file"): b"x"}


def read_only_folder(path):
    """A folder without write permission; skips the test where permissions do not bind (root)."""
    path.mkdir()
    path.chmod(0o500)
    try:
        (path / "probe").write_text("x")
    except PermissionError:
        return path
    pytest.skip("this user writes into read-only folders (root)")


def test_command_line_rejects_a_read_only_output_folder(tmp_path, capsys):
    folder = read_only_folder(tmp_path / "read_only")
    with pytest.raises(SystemExit) as exit_info:
        synthetic_main(["--out", str(folder), *SMALL_ARGS])
    assert exit_info.value.code == 1
    assert "Permission denied" in one_line_error(capsys, "--out")
    assert list(folder.iterdir()) == []


ENSURE_IN_CHILD = (
    "import sys; from bench.data.synthetic import SyntheticSpec, ensure_synthetic; "
    "ensure_synthetic(SyntheticSpec.parse(sys.argv[1]), sys.argv[2], workers=1)"
)


def ensure_in_child(spec: SyntheticSpec, out: Path) -> subprocess.Popen:
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(
        [sys.executable, "-c", ENSURE_IN_CHILD, str(spec), str(out)],
        cwd=root, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_second_process_waits_for_the_writer_then_reuses_its_set(tmp_path):
    """The test holds the folder's lock as a writer would; a process ensuring the same set says
    it waits, writes nothing while the lock is held, and reuses the set once the lock is free."""
    import filelock

    out = tmp_path / "set"
    lock = filelock.FileLock(tmp_path / ".set.lock")
    lock.acquire()
    child = ensure_in_child(TINY, out)
    line = child.stderr.readline()  # blocks until the child says something
    assert line.startswith(f"waiting for another process writing the synthetic set {TINY.name()}")
    assert str(out) in line and child.poll() is None and not out.exists()
    made = ensure_synthetic(TINY, tmp_path / "elsewhere")
    shutil.copytree(made["root"], out)  # the "writer" finishes the complete set, lock held
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    lock.release()
    assert child.wait(timeout=120) == 0
    assert "writing" not in child.stderr.read()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps
    assert read_tree(out) == read_tree(made["root"])


def test_two_processes_ensuring_one_folder_write_it_once(tmp_path):
    """Started together, two processes end with one complete set, byte-identical to one written
    alone; exactly one of them wrote it."""
    spec = replace(TINY, videos=6)
    children = [ensure_in_child(spec, tmp_path / "set") for _ in range(2)]
    outputs = [c.communicate(timeout=300)[1] for c in children]
    assert [c.returncode for c in children] == [0, 0], outputs
    lines = [line for o in outputs for line in o.splitlines()]
    assert sum(line.startswith("writing the synthetic set") for line in lines) == 1, outputs
    assert not any(line.startswith("writing again") for line in lines), outputs
    alone = ensure_synthetic(spec, tmp_path / "alone", workers=1)
    assert read_tree(tmp_path / "set") == read_tree(alone["root"])
