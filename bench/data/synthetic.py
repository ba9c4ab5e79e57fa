r"""Synthetic video instance segmentation data in the YouTube-VIS format.

Each video shows 1-4 shapes of six classes that differ by silhouette only (circle, square,
triangle, star, cross, ring); every instance gets a random colour, so colour says nothing about the
class. Instances move (bouncing off the borders), rotate and change scale over time, occlude each
other by z-order, and some enter or leave the frame. Optional: motion blur (of the image only) and a
textured background. Masks are exact for what is visible: an instance's mask in a frame is its
rasterised silhouette minus the silhouettes drawn above it, and a frame where nothing of it is
visible gets null entries (segmentation, bbox, area).

A set is identified by its `SyntheticSpec` (videos, val_videos, frames, size, seed, blur, texture,
difficulty) and written in the YouTube-VIS layout (`bench.data.ytvis.layout`) with a manifest:

    OUT/train/JPEGImages/video_00000/00000.jpg ...   (file_names are relative to JPEGImages)
    OUT/val/JPEGImages/...
    OUT/annotations/instances_train.json, OUT/annotations/instances_val.json
    OUT/manifest.json        (generator version, spec, complete: written false first, true last)

`ensure_synthetic(spec, out)` reuses a complete set of the same spec and writes one into a folder
that holds none. It never deletes or overwrites data it did not just start writing: a folder that
holds another spec, or data without a manifest, is an error naming both specs and the folder. Only
an unfinished generation of the same spec (interrupted; its manifest says incomplete) is written
again. Processes that ensure the same folder at once (two training jobs side by side) take turns
through a lock file beside it, `.<folder name>.lock` (filelock): one writes, the others wait and
then reuse its complete set; a complete set is reused without the lock, so it may sit on a
read-only disk. The suite keeps a spec's set in `default_folder(spec)`,
data/synthetic-<spec.name()>;
`generate_synthetic(out, videos=..., ...)` is ensure_synthetic with the spec given by its fields.

Seeds: each video draws from its own numpy Generator seeded by SeedSequence([seed, stream, index]),
stream 0 for train and 1 for val (SPLIT_STREAMS). Bytes (JPEG included) therefore do not depend on
worker count or order, and every (seed, split, video index) is an independent stream: the two
splits of a spec share no video, and `spec.with_seed(s)` with another seed s gives a set
independent of both splits (e.g. pretraining data apart from the benchmark's set).

Command line (`--help` lists every option with its default):

    python -m bench.data.synthetic        # the suite's default set, in data/synthetic-<its name>
    python -m bench.data.synthetic --out data/synthetic --videos 500 --frames 12 --size 128 128 \
        --seed 0 --val-videos 100 --blur --texture --workers 2
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path

import filelock
import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_api
from tqdm import tqdm

from bench import cli
from bench.data.ytvis import SPLITS, layout, rle_areas

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
SPLIT_STREAMS = {"train": 0, "val": 1}  # seed stream of each split
GENERATOR_VERSION = 1
JPEG_QUALITY = 90


ENTER_LEAVE_MIN_FRAMES = 5  # shorter videos get no entering / leaving instances
MIN_SIZE = 8  # smallest frame side


class SpecError(ValueError):
    """A synthetic spec field (`field`) holds a value outside its range, or text that does not
    parse; the message names the field, what was expected and what was found."""

    def __init__(self, field: str, expected: str, got: object):
        self.field, self.expected, self.got = field, expected, got
        super().__init__(f"synthetic spec field '{field}': expected {expected}, got {got!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _int_at_least(field: str, value: object, minimum: int) -> int:
    if not (_is_int(value) and value >= minimum):
        raise SpecError(field, f"an int >= {minimum}", value)
    return int(value)


def _number_in(field: str, value: object, lo: float, hi: float, expected: str) -> float:
    if not (_is_number(value) and lo <= value <= hi):  # also rejects nan
        raise SpecError(field, expected, value)
    return float(value)


@dataclass(frozen=True)
class Difficulty:
    """Knobs of the generator. Sizes and speeds are fractions of the shorter frame side.
    Entering / leaving needs videos of at least ENTER_LEAVE_MIN_FRAMES (5) frames; shorter videos
    get none. Construction checks every field (SpecError names the one out of range)."""

    min_instances: int = 1
    max_instances: int = 4
    size_range: tuple[float, float] = (0.2, 0.45)  # circumcircle diameter of a shape
    speed_range: tuple[float, float] = (0.01, 0.05)  # centre displacement per frame
    scale_change: float = 0.2  # largest amplitude of the relative size oscillation
    max_spin: float = 0.15  # largest rotation speed, radians per frame
    enter_leave: float = 0.2  # probability that an instance enters or leaves the frame
    blur_steps: int = 5  # sub-frame renders averaged per frame when blur is on

    def __post_init__(self):
        _int_at_least("min_instances", self.min_instances, 1)
        _int_at_least("max_instances", self.max_instances, self.min_instances)
        for name, positive in (("size_range", True), ("speed_range", False)):
            pair = getattr(self, name)
            if not (
                isinstance(pair, (tuple, list))
                and len(pair) == 2
                and all(map(_is_number, pair))
                and 0 <= pair[0] <= pair[1] < math.inf
                and (pair[0] > 0 or not positive)
            ):
                bounds = "0 < lo <= hi" if positive else "0 <= lo <= hi"
                raise SpecError(name, f"two numbers lo:hi with {bounds}", pair)
            object.__setattr__(self, name, (float(pair[0]), float(pair[1])))
        _number_in("scale_change", self.scale_change, 0, 0.99, "a number in [0, 0.99]")
        _number_in("max_spin", self.max_spin, 0, math.inf, "a number >= 0")
        _number_in("enter_leave", self.enter_leave, 0, 1, "a probability in [0, 1]")
        _int_at_least("blur_steps", self.blur_steps, 1)


_SPEC_TEXT_FIELDS = ("videos", "val_videos", "frames", "size", "seed", "blur", "texture")
_DIFFICULTY_FIELDS = tuple(f.name for f in fields(Difficulty))


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that decides a synthetic set's content (the worker count does not).

    videos / val_videos: videos of the train / val split (val_videos None: 30% of videos, at least
    1); frames: frames per video; size: (H, W), each at least 8; seed: >= 0 (see the module
    docstring for how it maps to video streams). Construction checks every field and normalises
    types (size a tuple, difficulty a Difficulty); SpecError names a field out of range.

        spec = SyntheticSpec.parse("videos=400,frames=12,size=128x128,seed=0,val_videos=40")
        spec.name()            # 'v400-val40-f12-128x128-s0', a folder name
        str(spec)              # 'videos=400,val_videos=40,frames=12,size=128x128,seed=0'
        spec.with_seed(1)      # the same spec drawing other videos
    """

    videos: int = 400
    val_videos: int | None = None
    frames: int = 12
    size: tuple[int, int] = (128, 128)
    seed: int = 0
    blur: bool = False
    texture: bool = False
    difficulty: Difficulty = field(default_factory=Difficulty)

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # frozen
        set_("videos", _int_at_least("videos", self.videos, 1))
        val = max(1, self.videos * 3 // 10) if self.val_videos is None else self.val_videos
        set_("val_videos", _int_at_least("val_videos", val, 1))
        set_("frames", _int_at_least("frames", self.frames, 1))
        size = self.size
        if not (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(_is_int(v) and v >= MIN_SIZE for v in size)
        ):
            raise SpecError("size", f"(H, W), two ints >= {MIN_SIZE}", size)
        set_("size", (int(size[0]), int(size[1])))
        set_("seed", _int_at_least("seed", self.seed, 0))
        for name in ("blur", "texture"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise SpecError(name, "true or false", getattr(self, name))
            set_(name, bool(getattr(self, name)))
        difficulty = self.difficulty
        if isinstance(difficulty, dict):
            unknown = sorted(set(difficulty) - set(_DIFFICULTY_FIELDS))
            if unknown:
                raise SpecError("difficulty", f"fields among {_DIFFICULTY_FIELDS}", unknown)
            difficulty = Difficulty(**difficulty)
        if not isinstance(difficulty, Difficulty):
            raise SpecError("difficulty", "a Difficulty", difficulty)
        set_("difficulty", difficulty)

    @classmethod
    def parse(cls, text: str) -> SyntheticSpec:
        """A spec from "FIELD=VALUE,..." text; omitted fields (all of them for "") take their
        defaults. Fields: videos, val_videos, frames, size (HxW, e.g. 128x128), seed, blur and
        texture (true / false), and Difficulty's fields (size_range and speed_range as lo:hi).
        SpecError names a field that is unknown, repeated or out of range."""
        values: dict = {}
        difficulty: dict = {}
        for item in text.split(",") if text.strip() else []:
            name, equals, value = (part.strip() for part in item.partition("="))
            if not equals or not name:
                raise SpecError(name or item, "FIELD=VALUE", item)
            if name in values or name in difficulty:
                raise SpecError(name, "a single value", text)
            if name in _SPEC_TEXT_FIELDS:
                values[name] = _parse_value(name, value, str(_FIELD_TYPES[name]))
            elif name in _DIFFICULTY_FIELDS:
                difficulty[name] = _parse_value(name, value, str(_FIELD_TYPES[name]))
            else:
                known = ", ".join(_SPEC_TEXT_FIELDS + _DIFFICULTY_FIELDS)
                raise SpecError(name, f"a field among {known}", name)
        return cls(**values, difficulty=Difficulty(**difficulty))

    def __str__(self) -> str:
        """The spec as parse() reads it: the main fields, then those that differ from defaults."""
        h, w = self.size
        text = f"videos={self.videos},val_videos={self.val_videos},frames={self.frames}"
        text += f",size={h}x{w},seed={self.seed}"
        for name, value in self._extras().items():
            if isinstance(value, bool):
                value = str(value).lower()
            elif isinstance(value, tuple):
                value = ":".join(map(repr, value))
            text += f",{name}={value}"
        return text

    def _extras(self) -> dict:
        """blur, texture and Difficulty fields that differ from their defaults."""
        extras = {name: getattr(self, name) for name in ("blur", "texture") if getattr(self, name)}
        default = Difficulty()
        for name in _DIFFICULTY_FIELDS:
            if getattr(self.difficulty, name) != getattr(default, name):
                extras[name] = getattr(self.difficulty, name)
        return extras

    def name(self) -> str:
        """A folder name for the spec: v<videos>-val<val_videos>-f<frames>-<H>x<W>-s<seed>, plus
        -<8 hex digits> (of blur, texture and difficulty) when those differ from the defaults."""
        h, w = self.size
        name = f"v{self.videos}-val{self.val_videos}-f{self.frames}-{h}x{w}-s{self.seed}"
        if self._extras():
            extra = {
                k: v for k, v in self.to_dict().items() if k in ("blur", "texture", "difficulty")
            }
            digest = hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()
            name += f"-{digest[:8]}"
        return name

    def with_seed(self, seed: int) -> SyntheticSpec:
        """The same spec with another seed: a set drawn from other video streams."""
        return replace(self, seed=seed)

    def to_dict(self) -> dict:
        """Plain JSON types (as written to and read back from the manifest)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> SyntheticSpec:
        """The spec of to_dict()'s output."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(unknown[0], f"a field among {sorted(known)}", data[unknown[0]])
        return cls(**data)


def _parse_value(name: str, text: str, kind: str) -> object:
    """One FIELD=VALUE value; kind is the dataclass field's annotation (a string)."""
    if name == "size":
        parse, expected = partial(_parse_pair, "x", int), "HxW, e.g. 128x128"
    elif kind.startswith("tuple"):
        parse, expected = partial(_parse_pair, ":", float), "lo:hi, e.g. 0.2:0.45"
    elif kind == "bool":
        parse, expected = _parse_bool, "true or false"
    elif kind.startswith("int"):
        parse, expected = int, "an int"
    else:
        parse, expected = float, "a number"
    try:
        return parse(text)
    except ValueError:
        raise SpecError(name, expected, text) from None


def _parse_pair(separator: str, convert: type, text: str) -> tuple:
    parts = text.lower().split(separator)
    if len(parts) != 2:
        raise ValueError(text)
    return convert(parts[0]), convert(parts[1])


def _parse_bool(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(text)
    return text.lower() in ("true", "1")


_FIELD_TYPES = {f.name: f.type for cls in (SyntheticSpec, Difficulty) for f in fields(cls)}
# the suite's synthetic set: 400 training and 120 validation videos of 12 frames at 128 x 128; the
# validation split holds ~300 instances, so that one instance moves AP50 by about 0.3 points
DEFAULT_SPEC = SyntheticSpec()


def default_folder(spec: SyntheticSpec, root: str | os.PathLike = "data") -> Path:
    """The folder the suite keeps a spec's set in: ROOT/synthetic-<spec.name()>."""
    return Path(root) / f"synthetic-{spec.name()}"


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
    spec: SyntheticSpec


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
    spec = job.spec
    height, width = spec.size
    shape_rng, background_rng = video_rngs(spec.seed, job.split, job.index)
    background = make_background(background_rng, height, width, spec.texture)
    mean_colour = background.reshape(-1, 3).mean(axis=0)
    tracks = sample_tracks(shape_rng, spec.difficulty, spec.frames, height, width, mean_colour)
    blur_steps = spec.difficulty.blur_steps if spec.blur else 0
    images, visible = render_video(
        tracks, background, spec.frames, blur_steps
    )  # (T,H,W,3), (n,T,H,W)

    name = f"video_{job.index:05d}"
    os.makedirs(os.path.join(job.image_dir, name), exist_ok=True)
    file_names = [f"{name}/{t:05d}.jpg" for t in range(spec.frames)]
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


def _write_split(paths: dict[str, Path], split: str, spec: SyntheticSpec, workers: int) -> None:
    image_dir = paths[f"{split}_images"]
    image_dir.mkdir(parents=True, exist_ok=True)
    height, width = spec.size
    count = spec.videos if split == "train" else spec.val_videos
    jobs = [VideoJob(str(image_dir), split, i, spec) for i in range(count)]
    videos, annotations = [], []
    for i, video in enumerate(_run_jobs(jobs, workers, f"synthetic {split}")):
        video_id = i + 1
        videos.append(
            {"id": video_id, "width": width, "height": height, "length": spec.frames,
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
    path = paths[f"{split}_annotations"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataset))


def synthetic_paths(out: str | os.PathLike) -> dict[str, Path]:
    """The YouTube-VIS layout of out (bench.data.ytvis.layout) and its manifest (key manifest)."""
    paths = layout(out)
    paths["manifest"] = paths["root"] / "manifest.json"
    return paths


def _written_paths(paths: dict[str, Path]) -> list[Path]:
    """The generator's top-level entries under out, besides the manifest."""
    root = paths["root"]
    tops = {
        root / p.relative_to(root).parts[0]
        for k, p in paths.items()
        if k not in ("root", "manifest")
    }
    return sorted(tops)


def _held(paths: dict[str, Path]) -> tuple[SyntheticSpec | None, str, bool] | None:
    """What out's manifest says: (spec or None if unreadable, its description, complete), or
    None when there is no manifest."""
    if not paths["manifest"].is_file():
        return None
    try:
        manifest = json.loads(paths["manifest"].read_text())
        if manifest.get("generator") != "bench.data.synthetic":
            raise ValueError("not this generator's manifest")
        if "spec" in manifest:
            version, data = manifest.get("version"), manifest["spec"]
        else:  # the first manifests: {"args": {"version": 1, <spec fields>}}
            data = dict(manifest["args"])
            version = data.pop("version", None)
        spec = SyntheticSpec.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return None, f"an unreadable manifest.json ({error})", False
    complete = bool(manifest.get("complete"))
    described = f"the synthetic set {spec.name()} ({spec})"
    if version != GENERATOR_VERSION:
        return None, f"{described} of generator version {version}", complete
    return spec, described, complete


def ensure_synthetic(
    spec: SyntheticSpec,
    out: str | os.PathLike | None = None,
    workers: int | None = None,
) -> dict[str, Path]:
    """The paths (synthetic_paths) of spec's set in out (default: default_folder(spec)), written
    there unless out already holds it complete.

    out must be absent, hold none of the layout's entries and no manifest, or hold the same spec:
    complete (reused as it is) or unfinished (written again). Anything else raises ValueError
    naming the folder, what it holds and the spec asked for; nothing is deleted or overwritten.
    A folder that cannot be written raises OSError before any video is rendered. workers: worker
    processes (default: the CPU count, at most 8); they do not change the bytes written."""
    if not isinstance(spec, SyntheticSpec):
        raise TypeError(f"ensure_synthetic(spec, out): spec is a {type(spec).__name__}")
    out = Path(default_folder(spec) if out is None else out)
    paths = synthetic_paths(out)
    if _reusable(spec, paths):
        return paths
    with _writer_lock(spec, out):
        return _ensure_locked(spec, paths, workers)


def _reusable(spec: SyntheticSpec, paths: dict[str, Path]) -> bool:
    """Whether paths hold spec's complete set with every entry present (no lock needed)."""
    held = _held(paths)
    return bool(held and held[0] == spec and held[2] and all(p.exists() for p in paths.values()))


@contextlib.contextmanager
def _writer_lock(spec: SyntheticSpec, out: Path):
    """Hold out's lock file (beside out); say so when another process holds it."""
    lock_path = out.parent / f".{out.name}.lock"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(lock_path)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            print(f"waiting for another process writing the synthetic set {spec.name()} to "
                  f"{out} (lock {lock_path})", file=sys.stderr, flush=True)  # fmt: skip
            lock.acquire()
    except OSError as error:
        raise type(error)(
            f"cannot write the synthetic set to {out}: {error.strerror or error}"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _ensure_locked(
    spec: SyntheticSpec, paths: dict[str, Path], workers: int | None
) -> dict[str, Path]:
    """ensure_synthetic's checks and writing, under out's lock."""
    out = paths["root"]
    held = _held(paths)
    if held is None:
        existing = [p for p in _written_paths(paths) if p.exists()]
        if existing:
            raise ValueError(
                f"{out} holds {existing[0].name}/ but no manifest.json: data this generator did "
                f"not write, left as it is; the synthetic set {spec.name()} ({spec}) needs an "
                "empty or new folder"
            )
    else:
        held_spec, described, complete = held
        if held_spec != spec:
            state = "" if complete else ", unfinished"
            raise ValueError(
                f"{out} holds {described}{state}, not the synthetic set {spec.name()} ({spec}) "
                "asked for; it is left as it is: use another folder, or remove it yourself"
            )
        if complete:
            missing = [k for k, p in paths.items() if not p.exists()]
            if missing:
                raise ValueError(
                    f"{out} holds the complete synthetic set {spec.name()} ({spec}) but its "
                    f"{missing[0]} {paths[missing[0]]} is missing; remove the folder to write it again"
                )
            return paths
    _generate(spec, paths, workers, again=held is not None)
    return paths


def _generate(
    spec: SyntheticSpec, paths: dict[str, Path], workers: int | None, again: bool
) -> None:
    out = paths["root"]
    manifest = {
        "generator": "bench.data.synthetic",
        "version": GENERATOR_VERSION,
        "name": spec.name(),
        "spec": spec.to_dict(),
        "complete": False,
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths["manifest"].write_text(json.dumps(manifest, indent=1))
    except OSError as error:
        raise type(error)(
            f"cannot write the synthetic set to {out}: {error.strerror or error}"
        ) from None
    if again:  # an unfinished generation of this spec: its own files
        for path in _written_paths(paths):
            shutil.rmtree(path, ignore_errors=True)
    verb = "writing again the unfinished" if again else "writing the"
    print(f"{verb} synthetic set {spec.name()} ({spec}) to {out}", file=sys.stderr, flush=True)
    workers = workers or min(os.cpu_count() or 1, 8)
    for split in SPLITS:
        _write_split(paths, split, spec, workers)
    paths["manifest"].write_text(json.dumps({**manifest, "complete": True}, indent=1))


def generate_synthetic(
    out: str | os.PathLike,
    spec: SyntheticSpec | None = None,
    *,
    workers: int | None = None,
    **spec_fields,
) -> dict[str, Path]:
    """ensure_synthetic(spec, out, workers), the spec given as one or by its fields:
    generate_synthetic(out, videos=4, frames=6, size=(64, 64), seed=0)."""
    if spec is not None and spec_fields:
        raise TypeError("generate_synthetic takes a spec or its fields, not both")
    return ensure_synthetic(spec or SyntheticSpec(**spec_fields), out, workers)


def build_parser() -> cli.ArgumentParser:
    default = DEFAULT_SPEC
    title, examples = __doc__.split("\n", 1)[0], __doc__.rsplit("default):\n", 1)[1]
    parser = cli.ArgumentParser(
        prog="python -m bench.data.synthetic",
        description=f"{title}\n\nA set is identified by its spec (every option but --out and "
        "--workers).\nA folder that holds the same spec is reused; one that holds anything else "
        "is an error,\nnever deleted or overwritten.",
        epilog="examples:\n" + examples.rstrip(),
    )
    parser.add_argument(
        "--out",
        help="output folder (default: data/synthetic-<spec name>, the folder bench.train's "
        "--data synthetic:FIELD=VALUE,... uses)",
    )
    at_least_1 = cli.int_at_least(1)
    parser.add_argument("--videos", type=at_least_1, default=default.videos, help="train videos")
    parser.add_argument(
        "--val-videos", type=at_least_1, help="val videos (default: 30%% of videos, at least 1)"
    )
    parser.add_argument(
        "--frames", type=at_least_1, default=default.frames, help="frames per video"
    )
    parser.add_argument(
        "--size", type=cli.int_at_least(MIN_SIZE), nargs=2, default=default.size,
        metavar=("H", "W"), help="frame height and width",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=cli.int_at_least(0), default=default.seed, help="seed of the video streams"
    )
    parser.add_argument("--blur", action="store_true", help="motion blur (images only)")
    parser.add_argument("--texture", action="store_true", help="textured backgrounds")
    parser.add_argument(
        "--max-instances", type=at_least_1, default=Difficulty.max_instances,
        help="most instances in a video",
    )  # fmt: skip
    parser.add_argument(
        "--enter-leave", type=cli.probability, default=Difficulty.enter_leave,
        help="probability that an instance enters or leaves the frame (needs --frames >= "
        f"{ENTER_LEAVE_MIN_FRAMES})",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=at_least_1, help="worker processes (default: the CPU count, at most 8)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.enter_leave > 0 and args.frames < ENTER_LEAVE_MIN_FRAMES:
        parser.error(
            f"argument --frames: expected >= {ENTER_LEAVE_MIN_FRAMES} for instances that enter or "
            f"leave (--enter-leave {args.enter_leave:g}; --enter-leave 0 allows fewer), got {args.frames}"
        )
    try:
        spec = SyntheticSpec(
            videos=args.videos, val_videos=args.val_videos, frames=args.frames,
            size=tuple(args.size), seed=args.seed, blur=args.blur, texture=args.texture,
            difficulty=Difficulty(max_instances=args.max_instances, enter_leave=args.enter_leave),
        )  # fmt: skip
    except SpecError as error:
        parser.error(
            f"argument --{error.field.replace('_', '-')}: expected {error.expected}, got {error.got!r}"
        )
    tic = time.perf_counter()
    try:
        paths = ensure_synthetic(spec, args.out, args.workers)
    except (ValueError, OSError) as error:
        cli.fail(parser, f"argument --out: {error}")
    print(f"synthetic set {spec.name()} in {paths['root']} ({time.perf_counter() - tic:.1f} s)")
    for key in ("train_annotations", "val_annotations"):
        print(f"  {key}: {paths[key]}")


if __name__ == "__main__":
    main()
