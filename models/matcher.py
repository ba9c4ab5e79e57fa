"""Hungarian matching of whole instance sequences (VisTR's instance sequence matching).

Query sequence i is the T frame queries t * n + i; target j is one instance track over the clip.
The cost of assigning sequence i to instance j is

    w_class * class_cost  +  w_l1 * mean_{valid t} |b_it - b_jt|_1
        + w_giou * mean_{valid t} (-GIoU(b_it, b_jt))  [+ w_dice * dice cost over valid frames]

where class_cost = -mean_t p_it(c_j) with softmax probabilities (cross-entropy models), or with
sigmoid probabilities the focal cost of Deformable DETR, mean_t [alpha (1-p)^g (-log p) -
(1-alpha) p^g (-log(1-p))]. "valid t" are the frames where instance j is visible. The assignment
minimises the total cost (scipy.optimize.linear_sum_assignment); with more queries than instances
the unassigned sequences are no-object.
"""

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou


class SequenceMatcher(nn.Module):
    """forward(outputs, targets) -> per batch element (query indices (k,), target indices (k,))."""

    def __init__(
        self,
        cost_class: float = 1.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        cost_dice: float = 0.0,
        focal: bool = False,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        super().__init__()
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.cost_dice, self.focal = cost_dice, focal
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma

    @torch.no_grad()
    def cost_matrix(self, outputs: dict, b: int, target: dict) -> torch.Tensor:
        """Cost (n, m) between the n query sequences of batch element b and its m instances.

        target: labels (m,), boxes (m, T, 4) (cx, cy, w, h), valid (m, T) bool and, when
        cost_dice > 0, masks (m, T, h, w) float at the resolution of ``pred_masks``.
        """
        logits = outputs["pred_logits"][b].float()  # (T, n, C+1)
        boxes = outputs["pred_boxes"][b].float()  # (T, n, 4)
        labels, valid = target["labels"], target["valid"]  # (m,), (m, T)
        T, n = boxes.shape[:2]
        m = labels.shape[0]
        if m == 0:
            return boxes.new_zeros(n, 0)
        # frames weighted 1/(number of valid frames) of instance j: (m, T)
        weight = valid.float() / valid.float().sum(1, keepdim=True).clamp(min=1)

        if self.focal:
            p = logits[..., :-1].sigmoid()[:, :, labels]  # (T, n, m)
            a, g = self.focal_alpha, self.focal_gamma
            pos = a * (1 - p) ** g * -(p + 1e-8).log()
            neg = (1 - a) * p**g * -(1 - p + 1e-8).log()
            class_cost = (pos - neg).mean(0)  # (n, m)
        else:
            class_cost = -logits.softmax(-1)[:, :, labels].mean(0)  # (n, m)

        tgt_boxes = target["boxes"].float().transpose(0, 1)  # (T, m, 4)
        l1 = torch.cdist(boxes, tgt_boxes, p=1)  # (T, n, m)
        giou = torch.stack(
            [
                generalized_box_iou(
                    box_convert(boxes[t], "cxcywh", "xyxy"),
                    box_convert(tgt_boxes[t], "cxcywh", "xyxy"),
                )
                for t in range(T)
            ]
        )  # (T, n, m)
        invalid = ~valid.t()[:, None, :]  # (T, 1, m)
        l1, giou = l1.masked_fill(invalid, 0.0), giou.masked_fill(invalid, 0.0)
        cost = (
            self.cost_class * class_cost
            + self.cost_bbox * torch.einsum("tnm,mt->nm", l1, weight)
            - self.cost_giou * torch.einsum("tnm,mt->nm", giou, weight)
        )
        if self.cost_dice:
            cost = cost + self.cost_dice * self._dice_cost(outputs["pred_masks"][b], target)
        return cost  # (n, m)

    @staticmethod
    def _dice_cost(pred_masks: torch.Tensor, target: dict) -> torch.Tensor:
        """1 - dice over instance j's valid frames, pairwise: (n, m)."""
        p = pred_masks.float().sigmoid().flatten(2)  # (n, T, hw)
        valid = target["valid"].float()  # (m, T)
        g = target["masks"].float().flatten(2) * valid[..., None]  # (m, T, hw)
        inter = torch.einsum("ntp,mtp->nm", p, g)
        p_sum = p.sum(-1) @ valid.t()  # (n, m): prediction's area on j's valid frames
        return 1 - (2 * inter + 1) / (p_sum + g.sum((1, 2))[None] + 1)

    @torch.no_grad()
    def forward(
        self, outputs: dict, targets: list[dict]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        indices = []
        for b, target in enumerate(targets):
            cost = self.cost_matrix(outputs, b, target)
            if not torch.isfinite(cost).all():
                raise ValueError(f"matcher: non-finite cost for batch element {b} (NaN outputs?)")
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            indices.append(
                (torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long))
            )
        return indices


def build_matcher(preset) -> SequenceMatcher:
    """The matcher a preset describes (class cost 2 with focal loss unless set)."""
    cost_class = preset.cost_class
    if cost_class is None:
        cost_class = 2.0 if preset.focal_loss else 1.0
    return SequenceMatcher(
        cost_class=cost_class,
        cost_bbox=preset.cost_bbox,
        cost_giou=preset.cost_giou,
        cost_dice=preset.cost_dice,
        focal=preset.focal_loss,
    )
