"""Clip-consistent transforms: every frame of a clip (and every mask) gets the same resize and flip.

A transform is called as `clip, target = transform(clip, target)` with
    clip    float tensor (T, 3, H, W), values in [0, 1] (after Normalize: standardised)
    target  dict holding at least `masks` (n, T, H, W) bool; `boxes` (n, T, 4) normalised
            (cx, cy, w, h) are flipped too when present; `size` (2,) is updated by resizing.
Randomness comes from torch's generator, so torch.manual_seed and DataLoader worker seeds apply.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, clip: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        for transform in self.transforms:
            clip, target = transform(clip, target)
        return clip, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def resized_shape(
    height: int, width: int, short_side: int, max_size: int | None
) -> tuple[int, int]:
    """(H', W') with the short side scaled to short_side, unless the long side would exceed
    max_size, in which case the long side becomes max_size; the aspect ratio is kept."""
    scale = short_side / min(height, width)
    if max_size is not None and max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


class ResizeShortSide:
    """Resize the short side to one of `sizes` (drawn per clip) with a cap on the long side.
    Frames: bilinear with antialiasing; masks: nearest."""

    def __init__(self, sizes: int | Sequence[int], max_size: int | None = None):
        self.sizes = [sizes] if isinstance(sizes, int) else list(sizes)
        self.max_size = max_size

    def __call__(self, clip: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        short_side = self.sizes[int(torch.randint(len(self.sizes), ()))]
        shape = resized_shape(*clip.shape[-2:], short_side, self.max_size)
        if shape == tuple(clip.shape[-2:]):
            return clip, target
        clip = F.interpolate(clip, size=shape, mode="bilinear", align_corners=False, antialias=True)
        target = dict(target)
        masks = target["masks"]  # (n, T, H, W)
        n, t = masks.shape[:2]
        if n > 0:
            flat = masks.reshape(n * t, 1, *masks.shape[-2:]).to(torch.uint8)
            masks = F.interpolate(flat, size=shape, mode="nearest-exact").reshape(n, t, *shape)
        else:
            masks = masks.new_zeros((0, t, *shape))
        target["masks"] = masks.bool()
        target["size"] = torch.tensor(shape, dtype=torch.int64)
        return clip, target

    def __repr__(self) -> str:
        return f"ResizeShortSide(sizes={self.sizes}, max_size={self.max_size})"


class RandomHorizontalFlip:
    """Mirror the whole clip left-right with probability p (frames, masks and boxes together)."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, clip: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        if float(torch.rand(())) >= self.p:
            return clip, target
        target = dict(target)
        target["masks"] = target["masks"].flip(-1)
        if "boxes" in target:
            boxes = target["boxes"].clone()  # (n, T, 4) cx, cy, w, h
            valid = boxes[..., 2:].gt(0).all(-1)  # zero boxes (invalid frames) stay zero
            boxes[..., 0] = torch.where(valid, 1 - boxes[..., 0], boxes[..., 0])
            target["boxes"] = boxes
        return clip.flip(-1), target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Normalize:
    """Standardise frames channel-wise (ImageNet statistics by default)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __call__(self, clip: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        return (clip - self.mean) / self.std, target

    def __repr__(self) -> str:
        return "Normalize()"


def build_transforms(train: bool, short_side: int | Sequence[int], max_size: int) -> Compose:
    """Training: random flip, resize (short side drawn from short_side if it is a list),
    normalise. Evaluation: resize to the largest short_side, normalise."""
    if train:
        return Compose([RandomHorizontalFlip(), ResizeShortSide(short_side, max_size), Normalize()])
    size = short_side if isinstance(short_side, int) else max(short_side)
    return Compose([ResizeShortSide(size, max_size), Normalize()])
