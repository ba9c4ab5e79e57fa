"""Synthetic video instance segmentation data in the YouTube-VIS format.

Each video shows 1-4 shapes of six classes that differ by silhouette only (circle, square,
triangle, star, cross, ring); every instance gets a random colour, so colour says nothing about the
class. Instances move (bouncing off the borders), rotate and change scale over time, occlude each
other by z-order, and some enter or leave the frame. Optional: motion blur (of the image only) and a
textured background. Masks are exact for what is visible: an instance's mask in a frame is its
rasterised silhouette minus the silhouettes drawn above it, and a frame where nothing of it is
visible gets null entries (segmentation, bbox, area).

Layout written under OUT:

    OUT/train/JPEGImages/video_00000/00000.jpg ...   (file_names are relative to JPEGImages)
    OUT/val/JPEGImages/...
    OUT/annotations/instances_train.json, OUT/annotations/instances_val.json
    OUT/manifest.json                                 (the arguments; written complete last)

Output is deterministic: each video draws from its own numpy Generator seeded by (seed, split,
video index), so bytes (JPEG included) do not depend on worker count or order; train and val use
different streams. Command line:

    python -m bench.data.synthetic --out data/synthetic --videos 500 --frames 12 --size 128 128 \
        --seed 0 [--val-videos 100] [--blur] [--texture] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_api
from tqdm import tqdm

from bench.data.ytvis import rle_areas

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
SPLIT_STREAMS = {"train": 0, "val": 1}  # seed stream of each split
GENERATOR_VERSION = 1
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Difficulty:
    """Knobs of the generator. Sizes and speeds are fractions of the shorter frame side.
    Entering / leaving needs videos of at least 5 frames."""

    min_instances: int = 1
    max_instances: int = 4
    size_range: tuple[float, float] = (0.2, 0.45)  # circumcircle diameter of a shape
    speed_range: tuple[float, float] = (0.01, 0.05)  # centre displacement per frame
    scale_change: float = 0.2  # largest amplitude of the relative size oscillation
    max_spin: float = 0.15  # largest rotation speed, radians per frame
    enter_leave: float = 0.2  # probability that an instance enters or leaves the frame
    blur_steps: int = 5  # sub-frame renders averaged per frame when blur is on


def _polygon(radii: list[float], start_angle: float) -> np.ndarray:
    """Vertices (K, 2) at equal angular steps with the given radii (unit circumradius)."""
    angles = start_angle + 2 * np.pi * np.arange(len(radii)) / len(radii)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * np.asarray(radii)[:, None]


_ARM = 0.3  # half width of the cross's arms
OUTLINES = {  # unit-circumradius outlines of the polygonal shapes, (K, 2) as (x, y)
    "square": _polygon([1.0] * 4, np.pi / 4),
    "triangle": _polygon([1.0] * 3, -np.pi / 2),
    "star": _polygon([1.0, 0.42] * 5, -np.pi / 2),
    "cross": np.array(
        [(-_ARM, -1), (_ARM, -1), (_ARM, -_ARM), (1, -_ARM), (1, _ARM), (_ARM, _ARM),
         (_ARM, 1), (-_ARM, 1), (-_ARM, _ARM), (-1, _ARM), (-1, -_ARM), (-_ARM, -_ARM)],
        dtype=float,
    ) / math.hypot(1, _ARM),
}  # fmt: skip
CIRCLE_RADIUS = 0.85  # circle radius relative to the nominal circumradius (similar area)
RING_RADII = (0.95, 0.5)  # outer, inner


def _fold(x: float, lo: float, hi: float) -> float:
    """Position after bouncing between lo and hi (a triangle wave)."""
    if hi <= lo:
        return (lo + hi) / 2
    period = 2 * (hi - lo)
    y = (x - lo) % period
    return lo + (period - y if y > hi - lo else y)


@dataclass(frozen=True)
class Track:
    """One instance: class, colour and motion. pose(t) is defined for real t (blur sub-frames).

    Before t_in the centre moves on a straight line at entry_velocity (off-frame early on, for an
    instance that enters); from t_in it moves at velocity and bounces within bounds. An instance
    that leaves is one that enters, played backwards from frame reverse_from.
    """

    shape: int  # index into SHAPES
    colour: tuple[int, int, int]
    radius: float  # nominal circumradius in pixels
    scale_amp: float
    scale_freq: float
    scale_phase: float
    angle: float
    spin: float
    start: tuple[float, float]  # centre at t_in
    velocity: tuple[float, float]  # pixels per frame from t_in on
    bounds: tuple[float, float, float, float]  # x_lo, x_hi, y_lo, y_hi of the bouncing centre
    entry_velocity: tuple[float, float] = (0.0, 0.0)
    t_in: float = 0.0
    reverse_from: float | None = None

    def pose(self, t: float) -> tuple[float, float, float, float]:
        """(cx, cy, radius, angle) at time t, in pixels and radians."""
        if self.reverse_from is not None:
            t = self.reverse_from - t
        radius = self.radius * (
            1 + self.scale_amp * math.sin(self.scale_freq * t + self.scale_phase)
        )
        angle = self.angle + self.spin * t
        dt = t - self.t_in
        if dt < 0:
            cx = self.start[0] + self.entry_velocity[0] * dt
            cy = self.start[1] + self.entry_velocity[1] * dt
        else:
            x_lo, x_hi, y_lo, y_hi = self.bounds
            cx = _fold(self.start[0] + self.velocity[0] * dt, x_lo, x_hi)
            cy = _fold(self.start[1] + self.velocity[1] * dt, y_lo, y_hi)
        return cx, cy, radius, angle


def rasterise(track: Track, t: float, height: int, width: int) -> np.ndarray:
    """Silhouette (H, W) bool of a track at time t."""
    cx, cy, radius, angle = track.pose(t)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    shape = SHAPES[track.shape]
    if shape in ("circle", "ring"):
        outer = radius * (CIRCLE_RADIUS if shape == "circle" else RING_RADII[0])
        draw.ellipse((cx - outer, cy - outer, cx + outer, cy + outer), fill=1)
        if shape == "ring":
            inner = radius * RING_RADII[1]
            draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    else:
        rotation = np.array(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        )
        points = OUTLINES[shape] @ rotation.T * radius + (cx, cy)  # (K, 2)
        draw.polygon([tuple(p) for p in points.tolist()], fill=1)
    return np.asarray(canvas, dtype=bool)


def _composite(background: np.ndarray, tracks: list[Track], masks: list[np.ndarray]) -> np.ndarray:
    """Paint silhouettes (bottom first) over a background (H, W, 3) uint8."""
    image = background.copy()
    for track, mask in zip(tracks, masks, strict=True):
        image[mask] = track.colour
    return image


def render_video(
    tracks: list[Track], background: np.ndarray, frames: int, blur_steps: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Render frames (T, H, W, 3) uint8 and visible masks (n, T, H, W) bool.

    tracks are in z-order (first = bottom). A visible mask is the silhouette minus the union of
    the silhouettes above it. With blur_steps > 1 each image is the mean of renders at sub-frame
    times spanning one frame interval; masks stay those of the frame time.
    """
    height, width = background.shape[:2]
    images = np.empty((frames, height, width, 3), dtype=np.uint8)
    visible = np.zeros((len(tracks), frames, height, width), dtype=bool)
    for t in range(frames):
        silhouettes = [rasterise(track, t, height, width) for track in tracks]
        covered = np.zeros((height, width), dtype=bool)
        for i in reversed(range(len(tracks))):  # top first
            visible[i, t] = silhouettes[i] & ~covered
            covered |= silhouettes[i]
        if blur_steps > 1:
            acc = np.zeros((height, width, 3), dtype=np.float64)
            for s in np.linspace(t - 0.5, t + 0.5, blur_steps):
                sub = [rasterise(track, float(s), height, width) for track in tracks]
                acc += _composite(background, tracks, sub)
            images[t] = np.rint(acc / blur_steps).astype(np.uint8)
        else:
            images[t] = _composite(background, tracks, silhouettes)
    return images, visible


def make_background(rng: np.random.Generator, height: int, width: int, texture: bool) -> np.ndarray:
    """Background (H, W, 3) uint8: a random flat colour, or a textured one."""
    base = rng.uniform(30, 225, size=3)
    if not texture:
        return np.broadcast_to(np.rint(base).astype(np.uint8), (height, width, 3)).copy()
    coarse = rng.normal(0, 30, size=(3, 6, 6)).astype(np.float32)  # low-frequency blotches
    blotches = np.stack(
        [
            np.asarray(Image.fromarray(c).resize((width, height), Image.Resampling.BICUBIC))
            for c in coarse
        ],
        axis=-1,
    )
    yy, xx = np.mgrid[0:height, 0:width]
    theta, period = rng.uniform(0, np.pi), rng.uniform(6, 16)
    stripes = 15 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
    grain = rng.normal(0, 6, size=(height, width, 3))
    image = base + blotches + stripes[..., None] + grain
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _pick_colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> tuple[int, int, int]:
    """A random colour far (in RGB) from the background and the other instances."""
    colour = rng.integers(0, 256, size=3)
    for _ in range(100):
        if all(np.linalg.norm(colour - a) > (90 if k == 0 else 60) for k, a in enumerate(avoid)):
            break
        colour = rng.integers(0, 256, size=3)
    return int(colour[0]), int(colour[1]), int(colour[2])


def sample_tracks(
    rng: np.random.Generator,
    difficulty: Difficulty,
    frames: int,
    height: int,
    width: int,
    background_colour: np.ndarray,
) -> list[Track]:
    """Draw the instances of one video, in z-order (first = bottom)."""
    d = difficulty
    side = min(height, width)
    count = int(rng.integers(d.min_instances, d.max_instances + 1))
    colours: list[np.ndarray] = [background_colour]
    tracks: list[Track] = []
    for _ in range(count):
        shape = int(rng.integers(len(SHAPES)))
        colour = _pick_colour(rng, colours)
        colours.append(np.array(colour))
        radius = rng.uniform(*d.size_range) * side / 2
        scale_amp = rng.uniform(0, d.scale_change)
        r_max = radius * (1 + scale_amp)
        bounds = (r_max, width - r_max, r_max, height - r_max)
        for _ in range(20):  # keep apart from earlier instances at t_in where possible
            start = (rng.uniform(min(bounds[:2]), max(bounds[:2])),
                     rng.uniform(min(bounds[2:]), max(bounds[2:])))  # fmt: skip
            if all(math.dist(start, o.start) > 0.8 * (radius + o.radius) for o in tracks):
                break
        speed = rng.uniform(*d.speed_range) * side
        heading = rng.uniform(0, 2 * np.pi)
        track = Track(
            shape=shape,
            colour=colour,
            radius=radius,
            scale_amp=scale_amp,
            scale_freq=rng.uniform(0.2, 0.6),
            scale_phase=rng.uniform(0, 2 * np.pi),
            angle=rng.uniform(0, 2 * np.pi),
            spin=rng.uniform(-d.max_spin, d.max_spin),
            start=start,
            velocity=(speed * math.cos(heading), speed * math.sin(heading)),
            bounds=bounds,
        )
        mode = rng.random()
        if frames >= 5 and mode < d.enter_leave:
            track = _entering(rng, track, r_max, frames, leave=mode < d.enter_leave / 2)
        tracks.append(track)
    return tracks


def _entering(
    rng: np.random.Generator, track: Track, r_max: float, frames: int, leave: bool
) -> Track:
    """Make a track enter through a random edge (or leave, played backwards)."""
    hidden = int(rng.integers(1, 3))  # frames fully outside
    crossing = int(rng.integers(1, 4))  # frames to get fully inside
    t_in = min(hidden + crossing, frames - 2)
    crossing = max(1, t_in - hidden)
    speed = (2 * r_max + 2) / crossing
    x_lo, x_hi, y_lo, y_hi = track.bounds
    edge = int(rng.integers(4))  # left, right, top, bottom
    x, y = track.start
    start, direction = [
        ((x_lo, y), (1.0, 0.0)),
        ((x_hi, y), (-1.0, 0.0)),
        ((x, y_lo), (0.0, 1.0)),
        ((x, y_hi), (0.0, -1.0)),
    ][edge]
    return replace(
        track,
        start=start,
        entry_velocity=(direction[0] * speed, direction[1] * speed),
        t_in=float(t_in),
        reverse_from=float(frames - 1) if leave else None,
    )


@dataclass(frozen=True)
class VideoJob:
    """Everything one worker needs to render and write one video."""

    image_dir: str  # OUT/<split>/JPEGImages
    split: str
    index: int
    frames: int
    height: int
    width: int
    seed: int
    blur: bool
    texture: bool
    difficulty: Difficulty


def video_rngs(seed: int, split: str, index: int) -> tuple[np.random.Generator, ...]:
    """Independent generators (shapes, background) of one video of a split."""
    seeds = np.random.SeedSequence([seed, SPLIT_STREAMS[split], index]).spawn(2)
    return tuple(np.random.default_rng(s) for s in seeds)


def instance_annotation(masks: np.ndarray) -> dict | None:
    """segmentations / areas / bboxes (null where empty) of one instance's visible masks
    (T, H, W) bool; None when it is visible in no frame."""
    present = masks.any(axis=(1, 2))  # (T,)
    if not present.any():
        return None
    height, width = masks.shape[1:]
    rles = mask_api.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    areas, boxes = rle_areas(rles), mask_api.toBbox(rles)
    return {
        "segmentations": [
            {"size": [height, width], "counts": rle["counts"].decode("ascii")} if p else None
            for rle, p in zip(rles, present, strict=True)
        ],
        "areas": [int(a) if p else None for a, p in zip(areas, present, strict=True)],
        "bboxes": [b.tolist() if p else None for b, p in zip(boxes, present, strict=True)],
    }


def make_video(job: VideoJob) -> dict:
    """Render one video, write its JPEG frames, return its file names and instance tracks."""
    shape_rng, background_rng = video_rngs(job.seed, job.split, job.index)
    background = make_background(background_rng, job.height, job.width, job.texture)
    mean_colour = background.reshape(-1, 3).mean(axis=0)
    tracks = sample_tracks(
        shape_rng, job.difficulty, job.frames, job.height, job.width, mean_colour
    )
    blur_steps = job.difficulty.blur_steps if job.blur else 0
    images, visible = render_video(
        tracks, background, job.frames, blur_steps
    )  # (T,H,W,3), (n,T,H,W)

    name = f"video_{job.index:05d}"
    os.makedirs(os.path.join(job.image_dir, name), exist_ok=True)
    file_names = [f"{name}/{t:05d}.jpg" for t in range(job.frames)]
    for image, file_name in zip(images, file_names, strict=True):
        Image.fromarray(image).save(
            os.path.join(job.image_dir, file_name), quality=JPEG_QUALITY, subsampling=0
        )
    instances = []
    for track, masks in zip(tracks, visible, strict=True):
        annotation = instance_annotation(masks)
        if annotation is not None:  # an instance hidden in every frame is left out
            instances.append({"category_id": track.shape + 1, **annotation})
    return {"file_names": file_names, "instances": instances}


def _run_jobs(jobs: list[VideoJob], workers: int, desc: str) -> list[dict]:
    if workers <= 1 or len(jobs) < 16:
        return [make_video(job) for job in tqdm(jobs, desc=desc, unit="video")]
    # spawn: safe after torch has started threads; each video's bytes do not depend on the worker
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap(make_video, jobs, chunksize=8), total=len(jobs), desc=desc))


def _write_split(
    out: Path, split: str, count: int, args: dict, difficulty: Difficulty, workers: int
) -> Path:
    image_dir = out / split / "JPEGImages"
    image_dir.mkdir(parents=True, exist_ok=True)
    height, width = args["size"]
    jobs = [
        VideoJob(str(image_dir), split, i, args["frames"], height, width, args["seed"],
                 args["blur"], args["texture"], difficulty)
        for i in range(count)
    ]  # fmt: skip
    videos, annotations = [], []
    for i, video in enumerate(_run_jobs(jobs, workers, f"synthetic {split}")):
        video_id = i + 1
        videos.append(
            {"id": video_id, "width": width, "height": height, "length": args["frames"],
             "file_names": video["file_names"]}
        )  # fmt: skip
        for instance in video["instances"]:
            annotations.append(
                {"id": len(annotations) + 1, "video_id": video_id, "iscrowd": 0,
                 "height": height, "width": width, **instance}
            )  # fmt: skip
    dataset = {
        "info": {
            "description": f"visbench synthetic shapes ({split})",
            "version": GENERATOR_VERSION,
        },
        "licenses": [],
        "videos": videos,
        "categories": [
            {"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(SHAPES)
        ],
        "annotations": annotations,
    }
    path = out / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataset))
    return path


def _manifest_args(videos, frames, size, seed, val_videos, blur, texture, difficulty) -> dict:
    if val_videos is None:
        val_videos = max(1, videos // 5)
    args = {
        "version": GENERATOR_VERSION,
        "videos": int(videos),
        "frames": int(frames),
        "size": [int(size[0]), int(size[1])],
        "seed": int(seed),
        "val_videos": int(val_videos),
        "blur": bool(blur),
        "texture": bool(texture),
        "difficulty": asdict(difficulty or Difficulty()),
    }
    return json.loads(json.dumps(args))  # tuples as lists, as read back from the manifest


def _paths(out: Path) -> dict[str, Path]:
    return {
        "root": out,
        "train_images": out / "train" / "JPEGImages",
        "train_annotations": out / "annotations" / "instances_train.json",
        "val_images": out / "val" / "JPEGImages",
        "val_annotations": out / "annotations" / "instances_val.json",
        "manifest": out / "manifest.json",
    }


def generate_synthetic(
    out: str | os.PathLike,
    videos: int,
    frames: int,
    size: tuple[int, int],
    seed: int,
    val_videos: int | None = None,
    blur: bool = False,
    texture: bool = False,
    difficulty: Difficulty | None = None,
    workers: int | None = None,
) -> dict[str, Path]:
    """Write a train split of `videos` and a val split of `val_videos` (default videos // 5, at
    least 1) videos of `frames` frames of size (H, W) under out; return the paths (keys root,
    train_images, train_annotations, val_images, val_annotations, manifest).

    A folder that already holds train/, val/ or annotations/ is only overwritten when its
    manifest.json shows that this generator wrote it."""
    out = Path(out)
    difficulty = difficulty or Difficulty()
    if videos < 1 or frames < 1 or min(size) < 8:
        raise ValueError(
            f"need videos >= 1, frames >= 1, size >= 8; got {videos}, {frames}, {size}"
        )
    if not 1 <= difficulty.min_instances <= difficulty.max_instances:
        raise ValueError(f"need 1 <= min_instances <= max_instances, got {difficulty}")
    args = _manifest_args(videos, frames, size, seed, val_videos, blur, texture, difficulty)
    paths = _paths(out)
    owned = [out / "train", out / "val", out / "annotations"]
    if paths["manifest"].is_file():
        for folder in owned:
            shutil.rmtree(folder, ignore_errors=True)
    elif any(folder.exists() for folder in owned):
        raise ValueError(f"{out} holds data this generator did not write (no manifest.json)")
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"generator": "bench.data.synthetic", "complete": False, "args": args}
    paths["manifest"].write_text(json.dumps(manifest, indent=1))
    workers = workers or min(os.cpu_count() or 1, 8)
    _write_split(out, "train", args["videos"], args, difficulty, workers)
    _write_split(out, "val", args["val_videos"], args, difficulty, workers)
    paths["manifest"].write_text(json.dumps({**manifest, "complete": True}, indent=1))
    return paths


def ensure_synthetic(
    out: str | os.PathLike,
    videos: int,
    frames: int,
    size: tuple[int, int],
    seed: int,
    val_videos: int | None = None,
    blur: bool = False,
    texture: bool = False,
    difficulty: Difficulty | None = None,
    workers: int | None = None,
) -> dict[str, Path]:
    """generate_synthetic, unless out already holds a complete set made with the same arguments."""
    paths = _paths(Path(out))
    args = _manifest_args(videos, frames, size, seed, val_videos, blur, texture, difficulty)
    if paths["manifest"].is_file() and paths["train_annotations"].is_file():
        manifest = json.loads(paths["manifest"].read_text())
        if manifest.get("complete") and manifest.get("args") == args:
            return paths
    return generate_synthetic(
        out, videos, frames, size, seed, val_videos, blur, texture, difficulty, workers
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.data.synthetic", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--videos", type=int, default=500, help="train videos")
    parser.add_argument("--frames", type=int, default=12, help="frames per video")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-videos", type=int, default=None, help="default: videos // 5")
    parser.add_argument("--blur", action="store_true", help="motion blur (images only)")
    parser.add_argument("--texture", action="store_true", help="textured backgrounds")
    parser.add_argument("--max-instances", type=int, default=Difficulty.max_instances)
    parser.add_argument("--enter-leave", type=float, default=Difficulty.enter_leave,
                        help="probability that an instance enters or leaves the frame")  # fmt: skip
    parser.add_argument("--workers", type=int, default=None, help="default: number of CPUs")
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = parser.parse_args(argv)
    difficulty = Difficulty(max_instances=args.max_instances, enter_leave=args.enter_leave)
    make = generate_synthetic if args.force else ensure_synthetic
    tic = time.perf_counter()
    paths = make(
        args.out, args.videos, args.frames, tuple(args.size), args.seed, args.val_videos,
        args.blur, args.texture, difficulty, args.workers,
    )  # fmt: skip
    print(f"synthetic data in {paths['root']} ({time.perf_counter() - tic:.1f} s)")
    for key in ("train_annotations", "val_annotations"):
        print(f"  {key}: {paths[key]}")


if __name__ == "__main__":
    main()
