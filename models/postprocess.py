"""From model outputs to YouTube-VIS results, for clips and for videos longer than a clip.

``PostProcess`` turns the outputs of a batch of clips, each one whole video, into the results
list: per query sequence, class probabilities (softmax without no-object, or sigmoid for focal
models) averaged over the frames; one category per instance (argmax). Its score is that mean
probability times, with ``mask_scoring`` (default), the instance's mask quality: the mean mask
probability over the pixels it predicts (probability > 0.5, all frames), as Mask2Former scores
instances: a confident class on a hesitant mask ranks below a sure one (measured gain:
docs/tuning.md). Masks = the logits upsampled to the padded input (bilinear, as the criterion
compares them), the padding cropped, resized to the video's original size, sigmoid > 0.5, one
compressed RLE per frame (None where empty; an instance whose mask is empty in every frame is no
detection and is left out).
``max_detections`` keeps the best-scoring instances (default: all n). ``masks_to_rles`` writes
the per-frame masks in the results format (bench.data.results reads and checks it).

``InferenceRunner`` runs a video of any length F: videos shorter than T are looped to T frames
(frame t shows frame t mod F, as the dataset does) and the repeats averaged back; longer videos
are cut into clips of T frames at a ``stride`` (default T // 2, i.e. half a clip of overlap, the
last clip aligned to the video's end). Query sequences of consecutive clips are linked into
tracks by mask IoU on the frames they share (Hungarian on the IoU between the track's mask so far
and the new clip's masks); a pair is linked when its IoU >= ``link_threshold``, otherwise the
query starts a new track. The default 0.1 only refuses pairs that barely overlap, such as an
instance entering the video late (empty on the shared frames) and an empty track; a higher
threshold splits small or occluded instances, whose masks vary between clips, into fragments
(docs/tuning.md).
A track's per-frame mask probabilities and its class probabilities are averaged over its clips.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_api
from scipy.optimize import linear_sum_assignment


def masks_to_rles(masks: Any, present: Any = None) -> list[dict | None]:
    """Per-frame compressed RLEs (counts as str) of masks (T, H, W) bool (numpy or torch).

    present (T,) bool marks the frames that get an RLE; the others get None. When present is None,
    frames whose mask is empty get None.
    """
    masks = np.asarray(masks).astype(bool)  # (T, H, W)
    if masks.ndim != 3:
        raise ValueError(f"masks has shape {masks.shape}, expected (T, H, W)")
    present = masks.any(axis=(1, 2)) if present is None else np.asarray(present).astype(bool)
    if present.shape != masks.shape[:1]:
        raise ValueError(f"present has shape {present.shape}, expected ({masks.shape[0]},)")
    encoded = mask_api.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [
        {"size": list(map(int, rle["size"])), "counts": rle["counts"].decode("ascii")}
        if keep
        else None
        for rle, keep in zip(encoded, present, strict=True)
    ]


class PostProcess:
    """__call__(outputs, targets) -> YouTube-VIS results; see the module docstring.

    ``category_ids[label]`` is the dataset's category id of class index ``label`` (the dataset's
    ``cat_ids``); without it category_id = label + 1 (YouTube-VIS numbers categories from 1).
    """

    def __init__(
        self,
        mask_stride: int,
        focal_loss: bool = False,
        mask_threshold: float = 0.5,
        max_detections: int | None = None,
        category_ids: list[int] | None = None,
        mask_scoring: bool = True,
    ):
        self.mask_stride, self.focal_loss, self.mask_threshold = (
            mask_stride,
            focal_loss,
            mask_threshold,
        )
        self.max_detections, self.category_ids = max_detections, category_ids
        self.mask_scoring = mask_scoring

    def class_probs(self, logits: torch.Tensor) -> torch.Tensor:  # (..., C+1) -> (..., C)
        """Per-frame class probabilities without no-object."""
        if self.focal_loss:
            return logits[..., :-1].sigmoid()
        return logits.softmax(-1)[..., :-1]

    def category(self, label: int) -> int:
        if self.category_ids is None:
            return label + 1
        return int(self.category_ids[label])

    def masks(
        self, logits: torch.Tensor, size: tuple[int, int], orig_size: tuple[int, int]
    ) -> torch.Tensor:
        """Mask logits (T, h, w) at the mask stride -> (T, H0, W0) bool at the video size."""
        up = F.interpolate(
            logits[None].float(),
            scale_factor=self.mask_stride,
            mode="bilinear",
            align_corners=False,
        )  # (1, T, h*s, w*s): the padded input, as the criterion compares
        up = up[:, :, : size[0], : size[1]]  # crop the padding
        up = F.interpolate(up, size=tuple(orig_size), mode="bilinear", align_corners=False)
        return up[0].sigmoid() > self.mask_threshold

    def mask_quality(self, mask_logits: torch.Tensor) -> torch.Tensor:  # (n, T, h, w) -> (n,)
        """Mean mask probability over each instance's predicted pixels (0 where it predicts none)."""
        probs = mask_logits.float().sigmoid().flatten(1)  # (n, T*h*w)
        inside = probs > self.mask_threshold
        return (probs * inside).sum(1) / inside.sum(1).clamp(min=1)

    def encode(
        self,
        video_id: int,
        class_probs: torch.Tensor,  # (n, C) mean over frames
        mask_logits: torch.Tensor,  # (n, T, h, w)
        size: tuple[int, int],
        orig_size: tuple[int, int],
        present: torch.Tensor | None = None,  # (n, T) bool: frames the instance was predicted on
    ) -> list[dict]:
        """Results of one video, best score first, at most max_detections."""
        scores, labels = class_probs.max(-1)  # (n,)
        if self.mask_scoring:
            scores = scores * self.mask_quality(mask_logits).to(scores.device)
        order = scores.argsort(descending=True)[: self.max_detections]
        results = []
        for i in order.tolist():
            masks = self.masks(mask_logits[i], size, orig_size)  # (T, H0, W0)
            frames = masks.flatten(1).any(1)
            if present is not None:
                frames &= present[i]
            if not frames.any():
                continue  # no mask in any frame: no detection
            results.append(
                {
                    "video_id": int(video_id),
                    "score": float(scores[i]),
                    "category_id": self.category(int(labels[i])),
                    "segmentations": masks_to_rles(masks.cpu().numpy(), frames.cpu().numpy()),
                }
            )
        return results

    @torch.no_grad()
    def __call__(self, outputs: dict, targets: list[dict]) -> list[dict]:
        """Results for a batch of clips, each a whole video (targets give video_id, size, orig_size)."""
        logits, masks = outputs["pred_logits"], outputs["pred_masks"]  # (B,T,n,C+1), (B,n,T,h,w)
        if len(targets) != logits.shape[0]:
            raise ValueError(f"postprocess: {len(targets)} targets for {logits.shape[0]} clips")
        results = []
        for b, target in enumerate(targets):
            for key in ("video_id", "size", "orig_size"):
                if key not in target:
                    raise ValueError(f"postprocess: target {b} has no {key!r}")
            probs = self.class_probs(logits[b]).mean(0)  # (n, C)
            size, orig = _pair(target["size"]), _pair(target["orig_size"])
            results += self.encode(target["video_id"], probs, masks[b], size, orig)
        return results


def _pair(x) -> tuple[int, int]:
    return tuple(int(v) for v in (x.tolist() if torch.is_tensor(x) else x))


def clip_frame_indices(length: int, num_frames: int, stride: int) -> list[list[int]]:
    """The clips (lists of T frame indices) covering a video of ``length`` frames."""
    if length <= num_frames:
        return [[t % length for t in range(num_frames)]]
    starts = list(range(0, length - num_frames + 1, stride))
    if starts[-1] != length - num_frames:
        starts.append(length - num_frames)
    return [list(range(s, s + num_frames)) for s in starts]


@dataclass
class Tracks:
    """Running sums over the clips of one video's tracks (K tracks, F frames, C classes)."""

    masks: torch.Tensor  # (K, F, h, w) sum of mask probabilities
    counts: torch.Tensor  # (K, F) clips that predicted each frame
    probs: torch.Tensor  # (K, C) sum of per-clip class probabilities
    clips: torch.Tensor  # (K,) clips per track

    @classmethod
    def empty(cls, length: int, h: int, w: int, num_classes: int) -> "Tracks":
        return cls(
            torch.zeros(0, length, h, w),
            torch.zeros(0, length),
            torch.zeros(0, num_classes),
            torch.zeros(0),
        )

    def start(self, count: int) -> list[int]:
        """Append ``count`` empty tracks; returns their indices."""
        K = self.masks.shape[0]
        self.masks = torch.cat([self.masks, self.masks.new_zeros(count, *self.masks.shape[1:])])
        self.counts = torch.cat([self.counts, self.counts.new_zeros(count, self.counts.shape[1])])
        self.probs = torch.cat([self.probs, self.probs.new_zeros(count, self.probs.shape[1])])
        self.clips = torch.cat([self.clips, self.clips.new_zeros(count)])
        return list(range(K, K + count))

    def add(self, k: int, frames: torch.Tensor, masks: torch.Tensor, probs: torch.Tensor) -> None:
        """Add one clip's query (masks (T, h, w) at frames (T,), probs (C,)) to track k."""
        self.masks[k].index_add_(0, frames, masks)  # a frame repeated in a short video adds up
        self.counts[k].index_add_(0, frames, torch.ones(len(frames)))
        self.probs[k] += probs
        self.clips[k] += 1

    def mean_masks(self) -> torch.Tensor:  # (K, F, h, w)
        return self.masks / self.counts.clamp(min=1)[..., None, None]


class InferenceRunner:
    """run_video(frames (F, 3, H, W) normalised, orig_size, video_id) -> YouTube-VIS results."""

    def __init__(
        self,
        model: torch.nn.Module,
        postprocess: PostProcess,
        num_frames: int | None = None,
        stride: int | None = None,
        link_threshold: float = 0.1,
    ):
        self.model, self.postprocess = model, postprocess
        self.num_frames = num_frames or model.num_frames
        self.stride = stride or max(self.num_frames // 2, 1)
        if not 1 <= self.stride <= self.num_frames:
            raise ValueError(f"stride={self.stride} must be in 1..num_frames={self.num_frames}")
        self.link_threshold = link_threshold

    @torch.no_grad()
    def clip_outputs(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One clip (T, 3, H, W) -> class probs (n, C) mean over frames, mask probs (n, T, h, w)."""
        mask = torch.zeros((1, *clip.shape[-2:]), dtype=torch.bool, device=clip.device)
        outputs = self.model(clip[None], mask)
        probs = self.postprocess.class_probs(outputs["pred_logits"][0]).mean(0)
        return probs.float().cpu(), outputs["pred_masks"][0].sigmoid().float().cpu()

    def link(self, tracks: Tracks, frames: torch.Tensor, masks: torch.Tensor) -> list[int | None]:
        """For each query of a clip, the track it continues (or None): Hungarian on shared-frame IoU."""
        K = tracks.masks.shape[0]
        shared = frames[tracks.counts[:, frames].sum(0) > 0]  # frames already predicted
        if K == 0 or shared.numel() == 0:
            return [None] * masks.shape[0]
        position = {int(f): t for t, f in enumerate(frames.tolist())}
        positions = torch.tensor([position[int(f)] for f in shared])
        old = tracks.mean_masks()[:, shared] > 0.5  # (K, S, h, w)
        new = masks[:, positions] > 0.5  # (n, S, h, w)
        old, new = old.flatten(1).float(), new.flatten(1).float()
        inter = new @ old.t()  # (n, K)
        union = new.sum(1)[:, None] + old.sum(1)[None] - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
        rows, cols = linear_sum_assignment(-iou.numpy())
        links: list[int | None] = [None] * masks.shape[0]
        for i, k in zip(rows.tolist(), cols.tolist(), strict=True):
            if iou[i, k] >= self.link_threshold:
                links[i] = k
        return links

    @torch.no_grad()
    def run_video(
        self, frames: torch.Tensor, orig_size: tuple[int, int], video_id: int = 0
    ) -> list[dict]:
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"run_video: frames must be (F, 3, H, W), got {tuple(frames.shape)}")
        length = frames.shape[0]
        tracks = None
        for indices in clip_frame_indices(length, self.num_frames, self.stride):
            index = torch.tensor(indices)
            probs, masks = self.clip_outputs(frames[index])  # (n, C), (n, T, h, w)
            if tracks is None:
                tracks = Tracks.empty(length, *masks.shape[-2:], probs.shape[1])
            links = self.link(tracks, index, masks)
            new = iter(tracks.start(sum(k is None for k in links)))
            for i, k in enumerate(links):
                tracks.add(next(new) if k is None else k, index, masks[i], probs[i])
        size = tuple(frames.shape[-2:])
        class_probs = tracks.probs / tracks.clips[:, None]
        mask_logits = torch.logit(tracks.mean_masks(), eps=1e-6)
        return self.postprocess.encode(
            video_id, class_probs, mask_logits, size, orig_size, tracks.counts > 0
        )
