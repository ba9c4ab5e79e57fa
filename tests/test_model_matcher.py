"""Sequence matcher (optimal assignment, cost formula) and criterion (named losses, zero at truth)."""

import itertools

import pytest
import torch
from torchvision.ops import box_convert, generalized_box_iou

from models.criterion import LOSS_NAMES, SetCriterion
from models.matcher import SequenceMatcher


def random_outputs(B: int, T: int, n: int, C: int, h: int = 4, w: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(B, T, n, 2, generator=g) * 0.6 + 0.2
    sizes = torch.rand(B, T, n, 2, generator=g) * 0.3 + 0.05
    return {
        "pred_logits": torch.randn(B, T, n, C + 1, generator=g),
        "pred_boxes": torch.cat([centres, sizes], -1),
        "pred_masks": torch.randn(B, n, T, h, w, generator=g),
    }


def random_target(m: int, T: int, C: int, h: int = 4, w: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed + 100)
    valid = torch.rand(m, T, generator=g) > 0.3
    valid[:, 0] = True
    centres = torch.rand(m, T, 2, generator=g) * 0.6 + 0.2
    sizes = torch.rand(m, T, 2, generator=g) * 0.3 + 0.05
    boxes = torch.cat([centres, sizes], -1) * valid[..., None]
    return {
        "labels": torch.randint(C, (m,), generator=g),
        "boxes": boxes,
        "valid": valid,
        "masks": (torch.rand(m, T, h, w, generator=g) > 0.5).float() * valid[..., None, None],
    }


def naive_cost(matcher, outputs, b, target, i, j):
    """The documented cost of query sequence i and instance j, by explicit loops."""
    T = outputs["pred_logits"].shape[1]
    prob = outputs["pred_logits"][b, :, i].softmax(-1)[:, target["labels"][j]]  # (T,)
    frames = [t for t in range(T) if target["valid"][j, t]]
    l1 = sum((outputs["pred_boxes"][b, t, i] - target["boxes"][j, t]).abs().sum() for t in frames)
    giou = sum(
        generalized_box_iou(
            box_convert(outputs["pred_boxes"][b, t, i][None], "cxcywh", "xyxy"),
            box_convert(target["boxes"][j, t][None], "cxcywh", "xyxy"),
        )[0, 0]
        for t in frames
    )
    p = outputs["pred_masks"][b, i].sigmoid()
    g = target["masks"][j]
    inter = sum((p[t] * g[t]).sum() for t in frames)
    total = sum(p[t].sum() + g[t].sum() for t in frames)
    dice = 1 - (2 * inter + 1) / (total + 1)
    return (
        -matcher.cost_class * prob.mean()
        + matcher.cost_bbox * l1 / len(frames)
        - matcher.cost_giou * giou / len(frames)
        + matcher.cost_dice * dice
    )


def test_cost_matrix_matches_the_formula():
    B, T, n, C, m = 1, 3, 4, 5, 3
    matcher = SequenceMatcher(cost_class=1.5, cost_bbox=5, cost_giou=2, cost_dice=0.7)
    outputs = random_outputs(B, T, n, C)
    target = random_target(m, T, C)
    cost = matcher.cost_matrix(outputs, 0, target)
    assert cost.shape == (n, m)
    for i in range(n):
        for j in range(m):
            expected = naive_cost(matcher, outputs, 0, target, i, j)
            torch.testing.assert_close(cost[i, j], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("focal", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_assignment_is_optimal_against_brute_force(seed, focal):
    B, T, n, C = 2, 3, 5, 4
    matcher = SequenceMatcher(cost_class=2.0 if focal else 1.0, cost_dice=0.5, focal=focal)
    outputs = random_outputs(B, T, n, C, seed=seed)
    targets = [random_target(m, T, C, seed=seed * 10 + m) for m in (3, 5)]
    indices = matcher(outputs, targets)
    for b, (target, (rows, cols)) in enumerate(zip(targets, indices, strict=True)):
        m = len(target["labels"])
        assert len(rows) == len(cols) == m
        assert sorted(cols.tolist()) == list(range(m))
        cost = matcher.cost_matrix(outputs, b, target)
        chosen = float(cost[rows, cols].sum())
        best = min(
            float(sum(cost[perm[j], j] for j in range(m)))
            for perm in itertools.permutations(range(n), m)
        )
        assert chosen == pytest.approx(best, abs=1e-5)


def test_matcher_without_targets():
    matcher = SequenceMatcher()
    outputs = random_outputs(1, 2, 3, 4)
    empty = {
        "labels": torch.zeros(0, dtype=torch.long),
        "boxes": torch.zeros(0, 2, 4),
        "valid": torch.zeros(0, 2, dtype=torch.bool),
    }
    (rows, cols) = matcher(outputs, [empty])[0]
    assert rows.numel() == cols.numel() == 0


def perfect_outputs(targets, T, n, C, stride, h, w, dec_layers=2):
    """Outputs that equal the targets: instance j in query slot j, huge logits, exact boxes."""
    B = len(targets)
    logits = torch.full((B, T, n, C + 1), -30.0)
    logits[..., C] = 30.0  # no-object everywhere ...
    boxes = torch.full((B, T, n, 4), 0.5)
    masks = torch.full((B, n, T, h, w), -30.0)
    for b, target in enumerate(targets):
        for j, label in enumerate(target["labels"].tolist()):
            logits[b, :, j, C] = -30.0  # ... except the instances' slots
            logits[b, :, j, label] = 30.0
            boxes[b, :, j] = torch.where(target["valid"][j, :, None], target["boxes"][j], 0.5)
            full = torch.zeros(T, h * stride, w * stride)
            tm = target["masks"][j].float()
            full[:, : tm.shape[-2], : tm.shape[-1]] = tm
            small = torch.nn.functional.avg_pool2d(full, stride)  # 0/1 where aligned
            masks[b, j] = torch.where(small > 0.5, 30.0, -30.0)
    layer = {"pred_logits": logits, "pred_boxes": boxes, "pred_masks": masks}
    return {**layer, "aux_outputs": [dict(layer) for _ in range(dec_layers - 1)]}


def block_targets(T: int, stride: int):
    """Targets whose masks are unions of stride x stride blocks (exact at the logits' resolution)."""
    targets = []
    for b, (h, w) in enumerate([(32, 32), (24, 16)]):
        masks = torch.zeros(2, T, h, w, dtype=torch.bool)
        masks[0, :, 0:8, 4:12] = True
        masks[1, : T - 1, 8 + 4 * b : 16 + 4 * b, 8:16] = True  # invisible in the last frame
        valid = masks.flatten(2).any(2)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        boxes = torch.zeros(2, T, 4)
        for j in range(2):
            for t in range(T):
                if valid[j, t]:
                    y, x = ys[masks[j, t]], xs[masks[j, t]]
                    x0, x1, y0, y1 = x.min(), x.max() + 1, y.min(), y.max() + 1
                    boxes[j, t] = torch.stack(
                        [(x0 + x1) / (2 * w), (y0 + y1) / (2 * h), (x1 - x0) / w, (y1 - y0) / h]
                    )
        labels = torch.tensor([2, 0])
        targets.append({"labels": labels, "boxes": boxes, "masks": masks, "valid": valid})
    return targets


def make_criterion(
    focal: bool, mask_frames="all", mask_loss="focal", C=3, stride=4, resolution="logits"
):
    names = list(LOSS_NAMES) + [f"{k}_0" for k in LOSS_NAMES]
    weights = dict.fromkeys(names, 1.0)
    matcher = SequenceMatcher(cost_class=2.0 if focal else 1.0, focal=focal)
    return SetCriterion(
        C, matcher, weights, focal_loss=focal, mask_loss=mask_loss, mask_frames=mask_frames,
        mask_stride=stride, mask_resolution=resolution,
    )  # fmt: skip


@pytest.mark.parametrize(
    "focal,mask_frames,mask_loss,stride,resolution",
    [
        (False, "all", "focal", 4, "logits"),
        (True, "valid", "focal", 4, "logits"),
        (False, "valid", "bce", 4, "logits"),
        (False, "all", "focal", 1, "input"),  # logits at the input size: the upsampling is exact
        (True, "all", "bce", 1, "input"),
    ],
)
def test_criterion_is_near_zero_for_perfect_predictions(
    focal, mask_frames, mask_loss, stride, resolution
):
    T, n, C = 3, 4, 3
    targets = block_targets(T, 4)
    criterion = make_criterion(focal, mask_frames, mask_loss, C, stride, resolution)
    outputs = perfect_outputs(targets, T, n, C, stride, 32 // stride, 32 // stride)
    losses = criterion(outputs, targets)
    assert set(losses) == set(criterion.weight_dict)
    for name, value in losses.items():
        assert float(value) < 1e-3, (name, float(value))
    # and clearly positive when the predictions are shuffled
    shuffled = {k: v.flip(2) if k != "pred_masks" else v.flip(1) for k, v in outputs.items()
                if k != "aux_outputs"}  # fmt: skip
    shuffled["pred_logits"] = torch.randn_like(shuffled["pred_logits"])
    worse = criterion(shuffled, targets)
    assert float(worse["loss_ce"]) > 0.1


def test_criterion_loss_names_and_gradients():
    T, n, C = 3, 4, 3
    targets = block_targets(T, 4)
    criterion = make_criterion(False, C=C, resolution="input")
    outputs = random_outputs(2, T, n, C, h=8, w=8)
    outputs = {k: v.requires_grad_() for k, v in outputs.items()}
    outputs["aux_outputs"] = [random_outputs(2, T, n, C, h=8, w=8, seed=1)]
    losses = criterion(outputs, targets)
    assert set(losses) == {*LOSS_NAMES, *(f"{k}_0" for k in LOSS_NAMES)}
    sum(losses.values()).backward()
    for key in ("pred_logits", "pred_boxes", "pred_masks"):
        assert torch.isfinite(outputs[key].grad).all() and outputs[key].grad.abs().sum() > 0


def test_mask_loss_frames_option():
    """'all' also penalises masks predicted where the instance is invisible; 'valid' does not."""
    T, n, C, stride = 3, 4, 3, 4
    targets = block_targets(T, stride)
    outputs = perfect_outputs(targets, T, n, C, stride, 8, 8, dec_layers=1)
    outputs["pred_masks"][:, 1, T - 1] = 30.0  # instance 1 (invisible in the last frame) fills it
    on_all = make_criterion(False, "all")(outputs, targets)
    on_valid = make_criterion(False, "valid")(outputs, targets)
    assert float(on_all["loss_mask"]) > 1.0
    assert float(on_valid["loss_mask"]) < 1e-3
    assert float(on_all["loss_dice"]) < 1e-3  # dice runs on the visible frames only


def test_instances_never_visible_are_dropped_and_bad_targets_rejected():
    T, n, C = 3, 4, 3
    targets = block_targets(T, 4)
    criterion = make_criterion(False)
    outputs = perfect_outputs(targets, T, n, C, 4, 8, 8)
    ghost = {k: v.clone() for k, v in targets[0].items()}
    ghost["labels"] = torch.cat([ghost["labels"], torch.tensor([1])])
    ghost["boxes"] = torch.cat([ghost["boxes"], torch.zeros(1, T, 4)])
    ghost["masks"] = torch.cat([ghost["masks"], torch.zeros(1, T, 32, 32, dtype=torch.bool)])
    ghost["valid"] = torch.cat([ghost["valid"], torch.zeros(1, T, dtype=torch.bool)])
    losses = criterion(outputs, [ghost, targets[1]])
    assert all(float(v) < 1e-3 for v in losses.values())

    bad = dict(targets[0], labels=torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="outside 0..2"):
        criterion(outputs, [bad, targets[1]])
    bad = dict(targets[0], masks=torch.zeros(2, T, 40, 32, dtype=torch.bool))
    with pytest.raises(ValueError, match="masks"):
        criterion(outputs, [bad, targets[1]])
    bad = {k: v for k, v in targets[0].items() if k != "valid"}
    with pytest.raises(ValueError, match="'valid'"):
        criterion(outputs, [bad, targets[1]])
    with pytest.raises(ValueError, match="1 targets for a batch of 2"):
        criterion(outputs, targets[:1])
