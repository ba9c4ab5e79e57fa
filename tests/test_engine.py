"""The training engine: optimizer groups, a schedule that depends on iterations only, data order."""

import pytest

from bench.engine import (
    LR_DROP_FACTOR,
    build_optimizer,
    clip_indices,
    drop_iteration,
    lr_factor,
    set_lr,
)
from models import build_model


@pytest.mark.parametrize("backend", ["stdeform", "full"])
def test_optimizer_groups_follow_deformable_detr(backend):
    """Backbone at lr_backbone, sampling offsets at lr x lr_offsets_mult, the rest at lr."""
    model, _, _ = build_model("quick", backend, lr=2e-4, lr_backbone=1e-5, lr_offsets_mult=0.1)
    optimizer = build_optimizer(model, model.preset)
    lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
    names = {id(p): n for n, p in model.named_parameters()}
    grouped = {
        group["name"]: {names[id(p)] for p in group["params"]} for group in optimizer.param_groups
    }
    assert lrs["rest"] == 2e-4 and lrs["backbone"] == 1e-5
    assert all(n.startswith("backbone.") for n in grouped["backbone"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set().union(*grouped.values()) == trainable  # every trainable parameter, once
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(trainable)
    offsets = {n for n in trainable if ".sampling_offsets." in n}
    if backend == "stdeform":
        assert lrs["offsets"] == pytest.approx(2e-5)
        assert grouped["offsets"] == offsets and offsets
    else:
        assert "offsets" not in lrs and not offsets

    assert {g["name"]: g["base_lr"] for g in optimizer.param_groups} == lrs


def test_the_learning_rate_drops_once_after_a_fixed_iteration():
    iterations, drop = 30, 2 / 3
    factors = [lr_factor(i, iterations, drop) for i in range(iterations)]
    assert factors == [1.0] * 20 + [LR_DROP_FACTOR] * 10
    assert drop_iteration(3, 0.1) == 1  # at least one step at the full rate
    assert [lr_factor(i, 4, 1.0) for i in range(4)] == [1.0] * 4  # lr_drop 1: never drops


def test_set_lr_scales_every_group_from_its_base_rate():
    model, _, _ = build_model("quick", "stdeform", lr=2e-4, lr_backbone=1e-5)
    optimizer = build_optimizer(model, model.preset)
    for factor in (LR_DROP_FACTOR, 1.0, LR_DROP_FACTOR):  # idempotent, never compounding
        set_lr(optimizer, factor)
    assert {g["name"]: g["lr"] for g in optimizer.param_groups} == pytest.approx(
        {"rest": 2e-5, "offsets": 2e-6, "backbone": 1e-6}
    )


def test_clip_order_is_a_permutation_per_epoch_and_depends_on_the_seed():
    size, batch = 7, 2
    order = [i for it in range(7) for i in clip_indices(0, it, batch, size)]  # two epochs
    assert sorted(order[:7]) == list(range(7)) and sorted(order[7:]) == list(range(7))
    assert order == [i for it in range(7) for i in clip_indices(0, it, batch, size)]
    other = [i for it in range(7) for i in clip_indices(1, it, batch, size)]
    assert other != order
