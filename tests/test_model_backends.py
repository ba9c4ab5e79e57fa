"""The VIS model with every attention backend: forward, backward, equivalence, shared structure."""

import pytest
import torch

from attention.base import AttentionBackend
from models import build_model
from tests import tiny

CONFIGS = {
    "full-sdpa": "full:impl=sdpa",
    "full-math": "full:impl=math",
    "stdeform-3d": "stdeform:mode=3d,n_points=4",
    "stdeform-frames": "stdeform:mode=frames,n_points=4",
    "stdeform-frame": "stdeform:mode=frame,n_points=4",
}
H, W = 64, 48
TINY = {**tiny.TINY, "num_classes": 3}  # clip_batch's labels


def tiny_model(config: str, **overrides):
    return build_model("quick", CONFIGS[config], **{**TINY, **overrides})


def clip_batch(B: int = 2, T: int = 2, seed: int = 0):
    """Random clips, a padding mask (second clip padded bottom and right) and targets."""
    g = torch.Generator().manual_seed(seed)
    clips = torch.randn(B, T, 3, H, W, generator=g)
    mask = torch.zeros(B, H, W, dtype=torch.bool)
    mask[1:, 40:] = True
    mask[1:, :, 30:] = True
    clips = clips.masked_fill(mask[:, None, None], 0.0)
    targets = []
    for b in range(B):
        h, w = (H, W) if b == 0 else (40, 30)
        masks = torch.zeros(2, T, h, w, dtype=torch.bool)
        masks[0, :, 4:20, 6:18] = True
        masks[1, 0, 22:36, 10:26] = True  # visible in frame 0 only
        boxes = torch.tensor([[12 / w, 12 / h, 12 / w, 16 / h], [18 / w, 29 / h, 16 / w, 14 / h]])
        boxes = boxes[:, None].repeat(1, T, 1)
        boxes[1, 1:] = 0
        valid = masks.flatten(2).any(2)
        labels = torch.tensor([0, 2])
        targets.append({"labels": labels, "boxes": boxes, "masks": masks, "valid": valid})
    return clips, mask, targets


def attention_parameter_ids(model) -> set[int]:
    modules = [m for m in model.modules() if isinstance(m, AttentionBackend)]
    return {id(p) for m in modules for p in m.parameters()}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_forward_backward_reaches_backbone_and_attention(config):
    torch.manual_seed(0)
    model, criterion, _ = tiny_model(config)
    clips, mask, targets = clip_batch()
    outputs = model(clips, mask)
    B, T, n, C = 2, 2, 2, 3
    assert outputs["pred_logits"].shape == (B, T, n, C + 1)
    assert outputs["pred_boxes"].shape == (B, T, n, 4)
    assert outputs["pred_masks"].shape == (B, n, T, H // 8, W // 8)
    assert len(outputs["aux_outputs"]) == 1
    assert outputs["aux_outputs"][0]["pred_masks"].shape == outputs["pred_masks"].shape
    losses = criterion(outputs, targets)
    loss = sum(criterion.weight_dict[k] * v for k, v in losses.items())
    assert torch.isfinite(loss)
    loss.backward()

    named = dict(model.named_parameters())
    for name, p in named.items():
        if p.requires_grad:
            assert p.grad is None or torch.isfinite(p.grad).all(), name
    frozen = [n for n in named if n.startswith(("backbone.body.conv1", "backbone.body.layer1"))]
    assert frozen and all(named[n].grad is None and not named[n].requires_grad for n in frozen)
    for stage in ("layer2", "layer3"):
        grads = [p.grad for n, p in named.items() if n.startswith(f"backbone.body.{stage}.")]
        assert grads and all(g is not None for g in grads), stage
        assert any(g.abs().sum() > 0 for g in grads), stage
    attention = attention_parameter_ids(model)
    attention_grads = [p.grad for p in model.parameters() if id(p) in attention]
    assert attention_grads and all(g is not None for g in attention_grads)
    assert sum(float(g.abs().sum()) for g in attention_grads) > 0


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_full_sdpa_and_math_agree_float64(padded):
    torch.manual_seed(0)
    sdpa, _, _ = tiny_model("full-sdpa")
    math_model, _, _ = tiny_model("full-math")
    math_model.load_state_dict(sdpa.state_dict())
    sdpa, math_model = sdpa.double().eval(), math_model.double().eval()
    clips, mask, _ = clip_batch()
    if not padded:
        mask = torch.zeros_like(mask)
    with torch.no_grad():
        a = sdpa(clips.double(), mask)
        b = math_model(clips.double(), mask)
    for key in ("pred_logits", "pred_boxes", "pred_masks"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-10, atol=1e-10)
        assert a[key].dtype == torch.float64


@pytest.mark.parametrize("config", ["full-math", "stdeform-3d"])
def test_padded_tokens_do_not_reach_the_queries(config):
    """Changing the projected tokens of the padding leaves every decoder output unchanged.

    (The input projection's GroupNorm does see the padding, as in Deformable DETR, so the check
    starts after it.)
    """
    torch.manual_seed(0)
    model, _, _ = tiny_model(config)
    transformer = model.transformer.double().eval()
    transformer.input_proj = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Identity()])
    _, mask, _ = clip_batch()
    features = [torch.randn(4, 24, 8, 6).double(), torch.randn(4, 24, 4, 3).double()]
    changed = [f.clone() for f in features]
    changed[0][2:, :, 5:] += 3.0  # clip 1 (frames 2, 3) is padded from row 40 / column 30
    changed[0][2:, :, :, 4:] -= 3.0
    changed[1][2:, :, 3:] += 3.0
    changed[1][2:, :, :, 2:] -= 3.0
    query = model.queries().detach().double()
    with torch.no_grad():
        a = transformer(features, mask, query)["hs"]
        b = transformer(changed, mask, query)["hs"]
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_structure_outside_attention_is_identical_across_backends():
    shapes = {}
    for config in CONFIGS:
        model, _, _ = tiny_model(config)
        attention = attention_parameter_ids(model)
        shapes[config] = {
            name: tuple(p.shape) for name, p in model.named_parameters() if id(p) not in attention
        }
        attention_names = [n for n, p in model.named_parameters() if id(p) in attention]
        assert attention_names
        assert all(".self_attn." in n or ".cross_attn." in n for n in attention_names)
        assert not any(n.startswith("transformer.decoder.") and ".self_attn." in n
                       for n in attention_names)  # fmt: skip
    reference = shapes["full-sdpa"]
    for config, named in shapes.items():
        assert named == reference, config


def test_model_rejects_bad_inputs():
    model, _, _ = tiny_model("stdeform-3d")
    clips, mask, _ = clip_batch()
    with pytest.raises(ValueError, match="num_frames=2"):
        model(torch.randn(2, 3, 3, H, W), mask)
    with pytest.raises(ValueError, match="padding_mask"):
        model(clips, mask[:, :10])
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        model(clips[:, 0], mask)


def test_backend_options_reach_the_modules():
    model, _, _ = build_model("quick", "stdeform:mode=frames,n_points=3,window=1", **TINY)
    transformer = model.transformer
    attentions = [layer.self_attn for layer in transformer.encoder]
    attentions += [layer.cross_attn for layer in transformer.decoder]
    for attention in attentions:
        assert attention.options() == {"mode": "frames", "n_points": 3, "window": 1, "impl": "op"}
    assert model.attention["encoder"] == model.attention["decoder"]
    model, _, _ = tiny_model("full-math")
    assert model.transformer.encoder[0].self_attn.impl == "math"
    assert model.attention["encoder"].identity == {"impl": "math"}
    with pytest.raises(ValueError, match="n_points"):
        build_model("quick", "full:n_points=8")
    with pytest.raises(ValueError, match="unknown attention backend"):
        build_model("quick", "sparse")


def test_the_preset_supplies_option_defaults_a_spec_leaves_out():
    model, _, _ = build_model("quick", "stdeform", **TINY)
    assert model.attention["encoder"].options["n_points"] == 16  # quick's K
    model, _, _ = build_model("quick", "stdeform", attention_defaults={}, **TINY)
    assert model.attention["encoder"].options["n_points"] == 32  # the backend's own default


@pytest.mark.parametrize(
    "encoder, decoder",
    [("full", "stdeform:n_points=2"), ("stdeform:n_points=2", "full"), ("full", "full")],
)
def test_hybrids_put_each_backend_on_its_side(encoder, decoder):
    model, criterion, _ = build_model("quick", encoder=encoder, decoder=decoder, **TINY)
    assert model.attention["encoder"].name == encoder.split(":")[0]
    assert model.attention["decoder"].name == decoder.split(":")[0]
    assert model.transformer.encoder[0].self_attn.name == encoder.split(":")[0]
    assert model.transformer.decoder[0].cross_attn.name == decoder.split(":")[0]
    clips, mask, targets = clip_batch()
    losses = criterion(model(clips, mask), targets)
    sum(criterion.weight_dict[k] * v for k, v in losses.items()).backward()


@pytest.mark.parametrize("config", ["full-sdpa", "stdeform-3d"])
def test_bfloat16_autocast_training_step(config):
    """The training harness runs the model under bfloat16 autocast on GPUs; CPU autocast here."""
    torch.manual_seed(0)
    model, criterion, _ = tiny_model(config)
    clips, mask, targets = clip_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(clips, mask)
    assert outputs["pred_logits"].dtype == torch.bfloat16
    losses = criterion(outputs, targets)
    assert all(v.dtype == torch.float32 for v in losses.values())
    loss = sum(criterion.weight_dict[k] * v for k, v in losses.items())
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_the_same_seed_gives_the_same_shared_weights_whatever_the_backends():
    pairings = [("full", "full"), ("stdeform:n_points=2", "stdeform:n_points=2")]
    pairings += [("full", "stdeform:n_points=2"), ("stdeform:n_points=4", "full")]
    shared = []
    for encoder, decoder in pairings:
        torch.manual_seed(7)
        model, _, _ = build_model("quick", encoder=encoder, decoder=decoder, **TINY)
        attention = attention_parameter_ids(model)
        shared.append({n: p for n, p in model.named_parameters() if id(p) not in attention})
    for other in shared[1:]:
        assert other.keys() == shared[0].keys()
        for name, parameter in other.items():
            assert torch.equal(parameter, shared[0][name]), name
    torch.manual_seed(8)
    model, _, _ = build_model("quick", "full", **TINY)
    assert not torch.equal(model.class_embed.weight, shared[0]["class_embed.weight"])
