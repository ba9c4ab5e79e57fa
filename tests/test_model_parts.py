"""Backbone, 3D position encoding, token layout and reference points, presets, build_model."""

import math

import pytest
import torch
import torchvision

from models import build_model, get_preset
from models.backbone import Backbone
from models.position_encoding import PositionEmbeddingSine3D
from models.presets import PAPER, QUICK, preset_fields
from models.transformer import Transformer


def test_backbone_strides_channels_and_truncation():
    backbone = Backbone("resnet18", level_strides=(8, 16), skip_strides=(4,), norm="frozen")
    assert not hasattr(backbone.body, "layer4")  # no stride 32 asked for: layer4 not built
    levels, skips = backbone(torch.randn(3, 3, 64, 96))
    assert [tuple(x.shape) for x in levels] == [(3, 128, 8, 12), (3, 256, 4, 6)]
    assert tuple(skips[4].shape) == (3, 64, 16, 24)
    assert backbone.num_channels == {4: 64, 8: 128, 16: 256}
    wide = Backbone("resnet50", level_strides=(32,), skip_strides=(16, 8))
    assert wide.num_channels == {8: 512, 16: 1024, 32: 2048}
    assert isinstance(wide.body.bn1, torchvision.ops.FrozenBatchNorm2d)


def test_backbone_freezes_stem_and_layer1():
    backbone = Backbone("resnet18", level_strides=(16,), skip_strides=(8,), train_from="layer2")
    trainable = {n.split(".")[0] for n, p in backbone.body.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3"}
    everything = Backbone("resnet18", (16,), (), norm="group", train_from="conv1")
    assert all(p.requires_grad for p in everything.parameters())
    assert isinstance(everything.body.bn1, torch.nn.GroupNorm)


def test_backbone_loads_weights_from_a_path(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    backbone = Backbone("resnet18", (16,), (8,), weights=str(path))
    torch.testing.assert_close(backbone.body.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    torch.testing.assert_close(backbone.body.bn1.running_var, source.bn1.running_var)

    partial = {k: v for k, v in source.state_dict().items() if not k.startswith("layer2.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"partial\.pth.*missing keys.*layer2"):
        Backbone("resnet18", (16,), (8,), weights=str(tmp_path / "partial.pth"))
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ValueError, match=r"r50\.pth.*shape mismatch"):
        Backbone("resnet18", (16,), (8,), weights=str(tmp_path / "r50.pth"))
    with pytest.raises(ValueError, match="BatchNorm statistics.*norm='frozen'"):
        Backbone("resnet18", (16,), (8,), norm="group", weights=str(path))
    # weights of a GroupNorm backbone (bench.pretrain saves those) load into one
    grouped = Backbone("resnet18", (16,), (8,), norm="group", train_from="conv1")
    torch.save(grouped.state_dict(), tmp_path / "group.pth")
    again = Backbone("resnet18", (16,), (8,), norm="group", weights=str(tmp_path / "group.pth"))
    torch.testing.assert_close(
        again.body.layer3[0].conv1.weight, grouped.body.layer3[0].conv1.weight
    )


def test_backbone_rejects_bad_options():
    with pytest.raises(ValueError, match="resnet101"):
        Backbone("resnet101")
    with pytest.raises(ValueError, match="stride 64"):
        Backbone("resnet18", level_strides=(64,))
    with pytest.raises(ValueError, match="norm"):
        Backbone("resnet18", norm="batch")


def test_position_encoding_layout_and_padding():
    d = 24
    position = PositionEmbeddingSine3D(d)
    B, T, H, W = 2, 3, 5, 6
    mask = torch.zeros(B, T, H, W, dtype=torch.bool)
    mask[1, :, 3:] = True
    mask[1, :, :, 4:] = True
    pos = position(mask)
    assert pos.shape == (B, T, H, W, d)
    # clip 1's valid region is encoded as an unpadded 3 x 4 clip
    small = position(torch.zeros(1, T, 3, 4, dtype=torch.bool))
    torch.testing.assert_close(pos[1, :, :3, :4], small[0])
    assert (pos[1, :, 3:, :, :8] == torch.tensor([0.0, 1.0]).repeat(4)).all()  # padding: t = 0
    # channel thirds: t part depends on t only, y part on y only, x part on x only
    full = pos[0]
    assert torch.allclose(full[:, :1, :1, :8].expand(T, H, W, 8), full[..., :8])
    assert torch.allclose(full[:1, :, :1, 8:16].expand(T, H, W, 8), full[..., 8:16])
    assert torch.allclose(full[:1, :1, :, 16:].expand(T, H, W, 8), full[..., 16:])
    # normalised: the last valid position along each axis has angle 2 pi in its first channel
    assert float(full[-1, 0, 0, 0]) == pytest.approx(math.sin(2 * math.pi), abs=1e-5)
    with pytest.raises(ValueError, match="divisible by 6"):
        PositionEmbeddingSine3D(32)
    with pytest.raises(ValueError, match=r"\(B, T, H, W\) bool"):
        position(torch.zeros(2, 3, 4))


def test_token_layout_and_encoder_reference_points():
    shapes = [(2, 3, 4), (2, 2, 2)]
    ratios = torch.ones(1, 2, 2)
    points = Transformer.encoder_reference_points(shapes, ratios)
    assert points.shape == (1, 2 * 3 * 4 + 2 * 2 * 2, 2, 3)
    # token index = t * H * W + y * W + x (t-major, then y, then x)
    t, y, x = 1, 2, 3
    token = t * 12 + y * 4 + x
    expected = torch.tensor([(x + 0.5) / 4, (y + 0.5) / 3, (t + 0.5) / 2])
    torch.testing.assert_close(points[0, token, 0], expected)
    torch.testing.assert_close(points[0, token, 1], expected)
    # with padding (valid ratios < 1) as Deformable DETR: normalised by the valid extent,
    # then scaled by each level's ratio
    ratios = torch.tensor([[[0.5, 2 / 3], [0.5, 0.5]]])
    points = Transformer.encoder_reference_points(shapes, ratios)
    own = torch.tensor([(x + 0.5) / (4 * 0.5), (y + 0.5) / (3 * 2 / 3), (t + 0.5) / 2])
    torch.testing.assert_close(points[0, token, 0], own * torch.tensor([0.5, 2 / 3, 1.0]))
    torch.testing.assert_close(points[0, token, 1], own * torch.tensor([0.5, 0.5, 1.0]))


@pytest.mark.parametrize("query_embed", ["per_query", "factorized"])
def test_decoder_queries_are_frame_major(query_embed):
    model, _, _ = build_model(
        "quick", "stdeform:n_points=2", num_frames=3, n_instances=2, d_model=24, enc_layers=1,
        dec_layers=1, dim_feedforward=16, mask_dim=8, strides=(8, 16),
        query_embed=query_embed,
    )  # fmt: skip
    queries = model.queries()
    assert queries.shape == (6, 24)
    if query_embed == "factorized":  # query t * n + i = frame_t + instance_i
        expected = model.frame_embed.weight[1] + model.instance_embed.weight[0]
        torch.testing.assert_close(queries[2], expected)
    seen = {}

    def hook(module, args):
        seen["reference"] = args[6]

    model.transformer.decoder[0].cross_attn.register_forward_pre_hook(hook)
    model(torch.randn(1, 3, 3, 32, 32), torch.zeros(1, 32, 32, dtype=torch.bool))
    reference = seen["reference"]  # (B, Q, L, 3)
    assert reference.shape == (1, 6, 2, 3)
    frames = (reference[0, :, 0, 2] * 3 - 0.5).round().long()
    assert frames.tolist() == [0, 0, 1, 1, 2, 2]  # query q = t * n_instances + i
    xy = model.transformer.reference_points(model.queries()).sigmoid()
    torch.testing.assert_close(reference[0, :, 0, :2], xy.detach())


def test_presets():
    assert (PAPER.backbone, PAPER.num_frames, PAPER.short_side, PAPER.max_size) == (
        "resnet50", 36, 300, 540
    )  # fmt: skip
    assert (PAPER.strides, PAPER.d_model, PAPER.n_heads, PAPER.enc_layers, PAPER.dec_layers) == (
        (32,), 384, 8, 6, 6
    )  # fmt: skip
    assert (PAPER.dim_feedforward, PAPER.n_instances, PAPER.attention_defaults) == (
        2048, 10, {"stdeform": {"n_points": 32}}
    )  # fmt: skip
    assert QUICK.d_model % 6 == 0 and QUICK.d_model % QUICK.n_heads == 0
    assert get_preset("quick", d_model=48).d_model == 48
    with pytest.raises(ValueError, match="unknown preset override.*d_modle.*d_model"):
        get_preset("quick", d_modle=32)
    with pytest.raises(ValueError, match="mask_loss='dice' \\(focal \\| bce\\)"):
        get_preset("quick", mask_loss="dice")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        get_preset("huge")
    with pytest.raises(ValueError, match="d_model=100"):
        get_preset("quick", d_model=100)
    with pytest.raises(ValueError, match="strides"):
        get_preset("quick", strides=(16, 8))
    assert "d_model" in preset_fields() and "name" not in preset_fields()


def test_build_model_returns_consistent_parts():
    model, criterion, post = build_model("quick", "full:impl=math", num_classes=4)
    assert model.class_embed.out_features == 5 and criterion.num_classes == 4
    assert model.preset.num_classes == 4
    assert post.mask_stride == model.mask_stride == criterion.mask_stride == 4
    names = {"loss_ce", "loss_bbox", "loss_giou", "loss_mask", "loss_dice"}
    aux = {f"{k}_{i}" for k in names for i in range(QUICK.dec_layers - 1)}
    assert set(criterion.weight_dict) == names | aux
