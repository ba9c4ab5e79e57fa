"""Losses of the VIS model (VisTR's, with Deformable DETR's focal option), named in a weight dict.

After the sequence matcher pairs query sequences with target instances:

- ``loss_ce``: class of every frame query; a matched sequence's T queries get the instance's class,
  unmatched ones no-object. Cross-entropy with no-object weight 0.1 (weighted mean over the frame
  queries, as DETR), or sigmoid focal loss over the C real classes (``focal_loss``; summed and
  divided by instances x T, as Deformable DETR).
- ``loss_bbox`` (L1) and ``loss_giou``: on the instance's valid frames, mean over them.
- ``loss_mask`` (sigmoid focal, or BCE with ``mask_loss="bce"``) and ``loss_dice``: by default
  (``mask_resolution="input"``) the mask logits are upsampled bilinearly to the padded input size,
  exactly as the postprocess does, and compared with the binary target masks (as DETR and VisTR);
  ``mask_resolution="logits"`` instead area-downsamples the targets to the logits' resolution
  (soft targets; cheaper, about a pixel less precise: docs/tuning.md). ``loss_dice`` runs over the
  instance's valid frames jointly (one volume).
- Frames of ``loss_mask``: by default ALL T frames of a matched instance, with an empty target
  where it is invisible (``mask_frames="all"``): the YouTube-VIS video IoU adds a mask predicted
  on a frame where the instance is absent (it left, or is hidden) to the union, so the model must
  learn to predict nothing there. ``mask_frames="valid"`` restricts it to the visible frames.

Every term is a mean over the instance's frames (and pixels), summed over instances and divided by
the number of target instances in the batch. Instances invisible in every frame of the clip are
dropped from the targets. Auxiliary losses of decoder layer k are named ``loss_ce_k`` etc.;
``forward`` returns the unweighted losses and ``weight_dict`` holds their weights.
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou_loss, sigmoid_focal_loss

from models.matcher import SequenceMatcher

LOSS_NAMES = ("loss_ce", "loss_bbox", "loss_giou", "loss_mask", "loss_dice")
MASK_LOSSES = ("focal", "bce")
MASK_FRAMES = ("all", "valid")
MASK_RESOLUTIONS = ("input", "logits")


class SetCriterion(nn.Module):
    """forward(outputs, targets) -> {loss name: unweighted loss}; see the module docstring."""

    def __init__(
        self,
        num_classes: int,
        matcher: SequenceMatcher,
        weight_dict: dict[str, float],
        no_object_weight: float = 0.1,
        focal_loss: bool = False,
        focal_alpha: float = 0.25,
        mask_loss: str = "focal",
        mask_frames: str = "all",
        mask_stride: int = 8,
        mask_resolution: str = "input",
    ):
        super().__init__()
        if mask_loss not in MASK_LOSSES:
            raise ValueError(
                f"criterion: mask_loss must be one of {MASK_LOSSES}, got {mask_loss!r}"
            )
        if mask_resolution not in MASK_RESOLUTIONS:
            raise ValueError(
                f"criterion: mask_resolution must be one of {MASK_RESOLUTIONS}, "
                f"got {mask_resolution!r}"
            )
        if mask_frames not in MASK_FRAMES:
            raise ValueError(
                f"criterion: mask_frames must be one of {MASK_FRAMES}, got {mask_frames!r}"
            )
        self.num_classes, self.matcher, self.weight_dict = num_classes, matcher, weight_dict
        self.focal_loss, self.focal_alpha = focal_loss, focal_alpha
        self.mask_loss, self.mask_frames, self.mask_stride = mask_loss, mask_frames, mask_stride
        self.mask_resolution = mask_resolution
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = no_object_weight
        self.register_buffer("empty_weight", empty_weight)

    def prepare_targets(self, targets: list[dict], outputs: dict) -> list[dict]:
        """Check the targets, drop instances never visible, pad / downsample their masks."""
        B, T = outputs["pred_logits"].shape[:2]
        h, w = outputs["pred_masks"].shape[-2:]
        H, W = h * self.mask_stride, w * self.mask_stride  # the padded clip
        if len(targets) != B:
            raise ValueError(f"criterion: {len(targets)} targets for a batch of {B} clips")
        prepared = []
        for b, target in enumerate(targets):
            _check_target(target, b, T, self.num_classes, (H, W))
            keep = target["valid"].any(1)  # instances visible somewhere in the clip
            masks = target["masks"][keep].float()
            masks = F.pad(masks, (0, W - masks.shape[3], 0, H - masks.shape[2]))  # (m, T, H, W)
            small = F.avg_pool2d(masks.flatten(0, 1), self.mask_stride).view(-1, T, h, w)
            prepared.append(
                {
                    "labels": target["labels"][keep],
                    "boxes": target["boxes"][keep],
                    "valid": target["valid"][keep],
                    "masks": small,  # (m, T, h, w) soft, at the logits' resolution (matcher)
                    "loss_masks": masks if self.mask_resolution == "input" else small,
                }
            )
        return prepared

    def loss_labels(self, outputs, targets, indices, num_instances) -> dict:
        logits = outputs["pred_logits"]  # (B, T, n, C+1)
        B, T, n, _ = logits.shape
        classes = torch.full((B, T, n), self.num_classes, dtype=torch.long, device=logits.device)
        for b, (src, tgt) in enumerate(indices):
            classes[b, :, src] = targets[b]["labels"][tgt].to(logits.device)
        if not self.focal_loss:
            loss = F.cross_entropy(logits.flatten(0, 2), classes.flatten(), self.empty_weight)
            return {"loss_ce": loss}
        onehot = F.one_hot(classes, self.num_classes + 1)[..., :-1].to(logits.dtype)
        focal = sigmoid_focal_loss(logits[..., :-1], onehot, alpha=self.focal_alpha)
        return {"loss_ce": focal.sum() / (num_instances * T)}

    def loss_boxes(self, outputs, targets, indices, num_instances) -> dict:
        pred = torch.cat(
            [outputs["pred_boxes"][b][:, src] for b, (src, _) in enumerate(indices)], 1
        )
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices, strict=True)])
        valid = torch.cat([t["valid"][j] for t, (_, j) in zip(targets, indices, strict=True)])
        pred = pred.transpose(0, 1)[valid]  # (P, 4) over the valid (instance, frame) pairs
        weight = (valid.float() / valid.sum(1, keepdim=True).clamp(min=1))[valid]  # (P,)
        tgt = tgt[valid].to(pred.dtype)
        l1 = F.l1_loss(pred, tgt, reduction="none").sum(-1)
        giou = generalized_box_iou_loss(
            box_convert(pred, "cxcywh", "xyxy"), box_convert(tgt, "cxcywh", "xyxy")
        )
        return {
            "loss_bbox": (l1 * weight).sum() / num_instances,
            "loss_giou": (giou * weight).sum() / num_instances,
        }

    def loss_masks(self, outputs, targets, indices, num_instances) -> dict:
        pred = torch.cat([outputs["pred_masks"][b][src] for b, (src, _) in enumerate(indices)])
        tgt = torch.cat([t["loss_masks"][j] for t, (_, j) in zip(targets, indices, strict=True)])
        valid = torch.cat([t["valid"][j] for t, (_, j) in zip(targets, indices, strict=True)])
        if self.mask_resolution == "input":  # logits upsampled as the postprocess does
            pred = F.interpolate(
                pred, scale_factor=self.mask_stride, mode="bilinear", align_corners=False
            )  # (k, T, H, W)
        tgt = tgt.to(pred.dtype)  # (k, T, H, W) binary, or (k, T, h, w) soft in [0, 1]
        if self.mask_loss == "focal":
            per_pixel = sigmoid_focal_loss(pred, tgt, alpha=self.focal_alpha)
        else:
            per_pixel = F.binary_cross_entropy_with_logits(pred, tgt, reduction="none")
        per_frame = per_pixel.mean((2, 3))  # (k, T)
        frames = valid.float() if self.mask_frames == "valid" else torch.ones_like(per_frame)
        loss_mask = (per_frame * frames).sum(1) / frames.sum(1).clamp(min=1)  # (k,)

        p = pred.sigmoid() * valid[..., None, None]
        g = tgt * valid[..., None, None]
        dice = 1 - (2 * (p * g).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + g.sum((1, 2, 3)) + 1)
        return {
            "loss_mask": loss_mask.sum() / num_instances,
            "loss_dice": dice.sum() / num_instances,
        }

    def _losses(self, outputs, targets, num_instances) -> dict:
        indices = self.matcher(outputs, targets)
        losses = {}
        for loss in (self.loss_labels, self.loss_boxes, self.loss_masks):
            losses.update(loss(outputs, targets, indices, num_instances))
        return losses

    @staticmethod
    def num_instances(targets: list[dict], device: torch.device) -> float:
        """Target instances per process: the batch's count, averaged over the processes of a
        distributed run (as DETR), so that DDP's gradient average equals a single process's
        gradient on the whole global batch."""
        count = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(count)
            count = count / dist.get_world_size()
        return max(float(count), 1.0)

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        outputs = _float32(outputs)  # losses in float32 also for bfloat16 / float16 outputs
        targets = self.prepare_targets(targets, outputs)
        num_instances = self.num_instances(targets, outputs["pred_logits"].device)
        losses = self._losses(outputs, targets, num_instances)
        for k, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_losses = self._losses(aux, targets, num_instances)
            losses.update({f"{name}_{k}": value for name, value in aux_losses.items()})
        return losses


def _check_target(target: dict, b: int, T: int, num_classes: int, size: tuple[int, int]):
    """ValueError naming what is wrong with target b (keys, dtypes, shapes, label range)."""
    for key in ("labels", "boxes", "masks", "valid"):
        if key not in target:
            raise ValueError(f"criterion: target {b} has no {key!r}")
    labels, boxes, masks, valid = (target[k] for k in ("labels", "boxes", "masks", "valid"))
    m = labels.shape[0]
    if labels.dim() != 1 or labels.dtype != torch.long:
        raise ValueError(f"criterion: target {b} labels must be (n,) int64")
    if m and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"criterion: target {b} labels {labels.tolist()} outside 0..{num_classes - 1}"
        )
    if tuple(boxes.shape) != (m, T, 4):
        raise ValueError(f"criterion: target {b} boxes {tuple(boxes.shape)}, want {(m, T, 4)}")
    if tuple(valid.shape) != (m, T) or valid.dtype != torch.bool:
        raise ValueError(f"criterion: target {b} valid must be (n, T) = {(m, T)} bool")
    H, W = size
    if masks.dim() != 4 or masks.shape[:2] != (m, T) or masks.shape[2] > H or masks.shape[3] > W:
        raise ValueError(
            f"criterion: target {b} masks {tuple(masks.shape)}, want (n, T, H, W) = "
            f"({m}, {T}, <= {H}, <= {W}) (at most the padded clip size)"
        )


def _float32(outputs: dict) -> dict:
    """Model outputs with half-precision tensors cast to float32 (aux outputs included)."""
    cast = {}
    for key, value in outputs.items():
        if key == "aux_outputs":
            cast[key] = [_float32(aux) for aux in value]
        elif torch.is_tensor(value) and value.dtype in (torch.float16, torch.bfloat16):
            cast[key] = value.float()
        else:
            cast[key] = value
    return cast


def build_criterion(preset, num_classes: int, matcher: SequenceMatcher, mask_stride: int):
    """The criterion a preset describes, with its weight dict (aux copies included)."""
    loss_ce = preset.loss_ce if preset.loss_ce is not None else (2.0 if preset.focal_loss else 1.0)
    values = (loss_ce, preset.loss_bbox, preset.loss_giou, preset.loss_mask, preset.loss_dice)
    base = dict(zip(LOSS_NAMES, values, strict=True))
    weights = dict(base)
    if preset.aux_loss:
        for k in range(preset.dec_layers - 1):
            weights.update({f"{name}_{k}": w for name, w in base.items()})
    return SetCriterion(
        num_classes,
        matcher,
        weights,
        no_object_weight=preset.no_object_weight,
        focal_loss=preset.focal_loss,
        mask_loss=preset.mask_loss,
        mask_frames=preset.mask_frames,
        mask_stride=mask_stride,
        mask_resolution=preset.mask_resolution,
    )
