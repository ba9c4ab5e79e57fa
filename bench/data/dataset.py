"""Clips of T frames from a YouTube-VIS dataset, with their instance tracks, for training and
inference.

    dataset = YTVISClipDataset(image_root, ann_file, num_frames=12,
                               transforms=build_transforms(train=True, short_side=128, max_size=224),
                               train=True)
    clip, target = dataset[i]

Item format:
    clip                  float32 (T, 3, H, W), normalised (ImageNet mean / std by the transforms)
    target["labels"]      int64 (n,)  category ids mapped to 0..C-1 (dataset.cat_ids[label] = id)
    target["boxes"]       float32 (n, T, 4)  normalised (cx, cy, w, h) in [0, 1] of each frame's
                          mask after the transforms; zeros where the instance is not visible
    target["masks"]       bool (n, T, H, W)
    target["valid"]       bool (n, T)  the instance is visible (non-empty mask) in that frame
    target["iscrowd"]     bool (n,)  (always False in training: crowd tracks are dropped there)
    target["ann_ids"]     int64 (n,)  annotation ids
    target["video_id"]    int
    target["frame_indices"] int64 (T,)  frame of the video shown at each clip position
    target["orig_size"]   int64 (2,)  (H, W) of the video
    target["size"]        int64 (2,)  (H, W) after the transforms
Instances with no visible frame in the clip are left out, so n can be 0.

Frame selection. Training: one item per video (an epoch is one clip per video), a random window of
T consecutive frames. Evaluation: one item per entry of `dataset.windows`, (video_id, frame
indices): consecutive non-overlapping windows from the start, the last one aligned to the video's
end (it may overlap the one before), so that every frame is covered by full-length windows.
Videos shorter than T repeat their frames cyclically as VisTR does: frame_indices = [i % L].
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.ytvis import YTVIS, load_ytvis


def clip_windows(length: int, num_frames: int) -> list[list[int]]:
    """Frame indices of the windows that cover a video of `length` frames (evaluation)."""
    if length <= num_frames:
        return [[i % length for i in range(num_frames)]]
    starts = list(range(0, length - num_frames + 1, num_frames))
    if starts[-1] + num_frames < length:
        starts.append(length - num_frames)
    return [list(range(s, s + num_frames)) for s in starts]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Normalised (cx, cy, w, h) boxes (..., 4) of masks (..., H, W); zeros for empty masks.
    A box spans whole pixels: from the first to one past the last occupied column / row."""
    height, width = masks.shape[-2:]
    cols, rows = masks.any(dim=-2), masks.any(dim=-1)  # (..., W), (..., H)
    x0 = cols.float().argmax(dim=-1)
    x1 = width - cols.flip(-1).float().argmax(dim=-1)
    y0 = rows.float().argmax(dim=-1)
    y1 = height - rows.flip(-1).float().argmax(dim=-1)
    boxes = torch.stack(
        [(x0 + x1) / (2 * width), (y0 + y1) / (2 * height), (x1 - x0) / width, (y1 - y0) / height],
        dim=-1,
    )
    return boxes * cols.any(dim=-1, keepdim=True)


class YTVISClipDataset(Dataset):
    """Clips of num_frames frames with their instance targets (see the module docstring)."""

    def __init__(
        self,
        image_root: str | os.PathLike,
        ann_file_or_dict: str | os.PathLike | dict | YTVIS,
        num_frames: int,
        transforms: Callable | None = None,
        train: bool = True,
    ):
        if num_frames < 1:
            raise ValueError(f"num_frames is {num_frames}, expected >= 1")
        self.image_root = image_root
        self.ytvis = (
            ann_file_or_dict
            if isinstance(ann_file_or_dict, YTVIS)
            else load_ytvis(ann_file_or_dict)
        )
        self.num_frames = num_frames
        self.transforms = transforms
        self.train = train
        self.cat_ids = sorted(self.ytvis.categories)
        self.label_of_cat = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        self.video_ids = self.ytvis.video_ids
        self.windows = [
            (video_id, window)
            for video_id in self.video_ids
            for window in clip_windows(self.ytvis.videos[video_id]["length"], num_frames)
        ]

    def __len__(self) -> int:
        return len(self.video_ids) if self.train else len(self.windows)

    def sample_frames(self, video_id: int) -> list[int]:
        """A random window of num_frames consecutive frames (cyclic repeat if the video is short)."""
        length = self.ytvis.videos[video_id]["length"]
        if length <= self.num_frames:
            return [i % length for i in range(self.num_frames)]
        start = int(torch.randint(length - self.num_frames + 1, ()))
        return list(range(start, start + self.num_frames))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        if self.train:
            video_id = self.video_ids[index]
            frames = self.sample_frames(video_id)
        else:
            video_id, frames = self.windows[index]
        clip = self.load_clip(video_id, frames)
        target = self.load_target(video_id, frames)
        if self.transforms is not None:
            clip, target = self.transforms(clip, target)
        target["boxes"] = masks_to_boxes(target["masks"])  # (n, T, 4)
        target["valid"] = target["masks"].flatten(-2).any(-1)  # (n, T)
        target["size"] = torch.tensor(clip.shape[-2:], dtype=torch.int64)
        return clip, target

    def load_clip(self, video_id: int, frames: list[int]) -> torch.Tensor:
        """Frames (T, 3, H, W) float in [0, 1]; each distinct frame is read once."""
        images = {t: self.ytvis.read_frame(self.image_root, video_id, t) for t in set(frames)}
        clip = np.stack([images[t] for t in frames])  # (T, H, W, 3) uint8
        return torch.from_numpy(clip).permute(0, 3, 1, 2).float().div_(255)

    def load_target(self, video_id: int, frames: list[int]) -> dict:
        """Target before transforms: masks at the video's size, labels, ids."""
        video = self.ytvis.videos[video_id]
        height, width = video["height"], video["width"]
        masks, labels, crowd, ann_ids = [], [], [], []
        for ann in self.ytvis.anns_by_video[video_id]:
            if self.train and ann.get("iscrowd", 0):
                continue
            ann_masks, _ = self.ytvis.decode_masks(ann, frames)  # (T, H, W)
            if not ann_masks.any():
                continue  # not visible anywhere in this clip
            masks.append(ann_masks)
            labels.append(self.label_of_cat[ann["category_id"]])
            crowd.append(bool(ann.get("iscrowd", 0)))
            ann_ids.append(ann["id"])
        masks = (
            torch.from_numpy(np.stack(masks))
            if masks
            else torch.zeros((0, len(frames), height, width), dtype=torch.bool)
        )
        size = torch.tensor([height, width], dtype=torch.int64)
        return {
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": masks,  # (n, T, H, W)
            "iscrowd": torch.tensor(crowd, dtype=torch.bool),
            "ann_ids": torch.tensor(ann_ids, dtype=torch.int64),
            "video_id": video_id,
            "frame_indices": torch.tensor(frames, dtype=torch.int64),
            "orig_size": size,
            "size": size.clone(),
        }


def collate_clips(batch: list[tuple[torch.Tensor, dict]]):
    """Batch clips of equal T and any size: pad at the bottom and right to the largest H and W.

    Returns clips (B, T, 3, H_max, W_max) float, padding_mask (B, H_max, W_max) bool (True where
    padded), and the list of targets unchanged (their masks keep each clip's own size).
    """
    clips = [clip for clip, _ in batch]
    lengths = {clip.shape[0] for clip in clips}
    if len(lengths) != 1:
        raise ValueError(f"clips in a batch have different frame counts {sorted(lengths)}")
    height = max(clip.shape[-2] for clip in clips)
    width = max(clip.shape[-1] for clip in clips)
    padded = clips[0].new_zeros((len(clips), clips[0].shape[0], 3, height, width))
    padding_mask = torch.ones((len(clips), height, width), dtype=torch.bool)
    for i, clip in enumerate(clips):
        h, w = clip.shape[-2:]
        padded[i, :, :, :h, :w] = clip
        padding_mask[i, :h, :w] = False
    return padded, padding_mask, [target for _, target in batch]
