"""The token-grid self-attention backends (divided, window, neighborhood) against naive references.

Each reference builds the (S, S) "may attend" matrix with explicit loops over token coordinates,
from the mechanism's definition alone, and runs dense softmax attention over the allowed,
unpadded keys with the module's own projection weights. Forward and gradients (of the inputs
and of every parameter) are compared in float64; gradcheck runs on tiny shapes; a tiny VIS model
trains a step with each backend; bad specs and inputs are one-line errors.
"""

import itertools
import math

import pytest
import torch

from attention.neighborhood import flex_runs
from attention.registry import build_attention, parse_backend
from models import build_model
from tests.test_model_backends import TINY, clip_batch

D_MODEL, HEADS = 12, 3
LEVELS = [(3, 5, 7), (3, 3, 4)]  # (T, H, W) per level: odd sizes, two levels


def tokens(levels):
    """(level, (t, y, x)) of every token, in the flattened order (level, t, y, x)."""
    return [
        (level, coords)
        for level, dims in enumerate(levels)
        for coords in itertools.product(*(range(n) for n in dims))
    ]


def may_attend(levels, rule) -> torch.Tensor:
    """(S, S) bool: query i may attend to key j (same level and ``rule(dims, q, k)``)."""
    grid = tokens(levels)
    allowed = torch.zeros(len(grid), len(grid), dtype=torch.bool)
    for i, (level, q) in enumerate(grid):
        for j, (other, k) in enumerate(grid):
            allowed[i, j] = level == other and rule(levels[level], q, k)
    return allowed


def neighborhood_rule(kernel):
    """NATTEN na3d: per dimension the window [s, s + k) with s = clamp(i - k//2, 0, n - k), the
    kernel clipped to the dimension."""

    def rule(dims, q, k):
        for n, size, i, j in zip(dims, kernel, q, k, strict=True):
            size = min(size, n)
            start = min(max(i - size // 2, 0), n - size)
            if not start <= j < start + size:
                return False
        return True

    return rule


def window_rule(size, shifted):
    """Video Swin: pad each dimension to a multiple of the (clipped) window, roll by minus the
    shift (half the window, none where the window covers the dimension), then the same window and
    the same shift region ([0, P - w), [P - w, P - shift), [P - shift, P))."""

    def region(r, padded, w, shift):
        return 0 if r < padded - w else 1 if r < padded - shift else 2

    def rule(dims, q, k):
        for n, s, i, j in zip(dims, size, q, k, strict=True):
            w = min(s, n)
            shift = s // 2 if shifted and n > s else 0
            padded = math.ceil(n / w) * w
            ri, rj = (i - shift) % padded, (j - shift) % padded  # positions after the roll
            if ri // w != rj // w or region(ri, padded, w, shift) != region(rj, padded, w, shift):
                return False
        return True

    return rule


def temporal_rule(dims, q, k):
    return q[1:] == k[1:]  # same (y, x)


def spatial_rule(dims, q, k):
    return q[0] == k[0]  # same frame


def dense_attention(proj, query, pos, allowed, padding):
    """Multi-head softmax attention over the allowed, unpadded keys with ``proj``'s linears (zero
    where a query has no such key), then the output projection."""
    N, S, d = query.shape
    q, k, v = (
        x.view(N, S, HEADS, d // HEADS).transpose(1, 2)
        for x in (proj.q_proj(query + pos), proj.k_proj(query + pos), proj.v_proj(query))
    )
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // HEADS)  # (N, M, S, S)
    may = allowed[None, None] & ~padding[:, None, None, :]
    scores = scores.masked_fill(~may, float("-inf"))
    top = scores.amax(-1, keepdim=True).detach()
    weights = torch.exp(scores - torch.where(torch.isfinite(top), top, 0))
    total = weights.sum(-1, keepdim=True)
    weights = weights / torch.where(total > 0, total, 1)  # a query without keys: zeros
    return proj.out_proj((weights @ v).transpose(1, 2).reshape(N, S, d))


def reference(module, levels):
    """The mechanism of ``module`` as dense masked attention: a function (x, pos, padding)."""
    if module.name == "divided":
        temporal, spatial = may_attend(levels, temporal_rule), may_attend(levels, spatial_rule)

        def divided(x, pos, padding):
            h = dense_attention(module.temporal, x, pos, temporal, padding)
            return h + dense_attention(module.spatial, x + h, pos, spatial, padding)

        return divided
    if module.name == "window":
        rule = window_rule(module.size, module.shifted)
    else:
        rule = neighborhood_rule(module.kernel)
    allowed = may_attend(levels, rule)
    return lambda x, pos, padding: dense_attention(module.proj, x, pos, allowed, padding)


def grid_inputs(levels, dtype=torch.float64, seed=0, d_model=D_MODEL):
    """x, pos (3, S, d) and a padding mask: clip 0 unpadded, clip 1 padded at the bottom and
    right as an image (whole windows and neighbourhoods padded), clip 2 randomly."""
    g = torch.Generator().manual_seed(seed)
    S = sum(t * h * w for t, h, w in levels)
    x = torch.randn(3, S, d_model, generator=g, dtype=dtype)
    pos = torch.randn(3, S, d_model, generator=g, dtype=dtype)
    image = [y > levels[i][1] // 2 or xx > levels[i][2] // 2 for i, (_, y, xx) in tokens(levels)]
    padding = torch.stack(
        [torch.zeros(S, dtype=torch.bool), torch.tensor(image), torch.rand(S, generator=g) < 0.3]
    )
    return x, pos, padding


def run(module, x, pos, padding, levels):
    shapes = torch.tensor(levels)
    sizes = shapes.prod(1)
    start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    return module(x, pos, x, pos, shapes, start, None, padding)


def build(spec, layer_index=0, d_model=D_MODEL, heads=HEADS):
    torch.manual_seed(1)
    return build_attention(spec, d_model=d_model, n_heads=heads, layer_index=layer_index)


def assert_matches_reference(module, levels=LEVELS, padded=True, dtype=torch.float64, tol=None):
    module = module.to(dtype)
    x, pos, padding = grid_inputs(levels, dtype)
    if not padded:
        padding = torch.zeros_like(padding)
    x.requires_grad_(), pos.requires_grad_()
    out = run(module, x, pos, padding, levels)
    expected = reference(module, levels)(x, pos, padding)
    tol = tol or {"rtol": 1e-9, "atol": 1e-9}
    torch.testing.assert_close(out, expected, **tol)
    assert torch.isfinite(out).all()
    weights = torch.randn_like(out)
    wrt = [x, pos, *module.parameters()]
    got = torch.autograd.grad(out, wrt, weights)
    want = torch.autograd.grad(expected, wrt, weights)
    names = ["x", "pos", *(name for name, _ in module.named_parameters())]
    for name, a, b in zip(names, got, want, strict=True):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"{name}: {m}")


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["sdpa", "math"])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_divided_matches_the_reference(impl, padded):
    assert_matches_reference(build(f"divided:impl={impl}"), padded=padded)


@pytest.mark.parametrize(
    "spec, layer_index",
    [
        ("window:size=2x4x4", 0),  # pads 5 -> 8 and 7 -> 8; the second level clips to 2x3x4
        ("window:size=2x4x4", 1),  # shifted 1x2x2 (second level: only t shifts)
        ("window:size=2x4x4,shift=false", 1),
        ("window:size=2x2x3,impl=math", 1),  # shifted 1x1x1, padding in every dimension
        ("window:size=1x3x2", 1),  # no temporal shift (1 // 2 = 0)
        ("window:size=4x8x8", 1),  # larger than every dimension: one window, nothing shifted
    ],
)
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_window_matches_the_reference(spec, layer_index, padded):
    module = build(spec, layer_index)
    assert module.shifted == (layer_index == 1 and "shift=false" not in spec)
    assert_matches_reference(module, padded=padded)


@pytest.mark.parametrize(
    "spec",
    [
        "neighborhood",  # 3x5x5: clipped to 3x3x4 on the second level
        "neighborhood:kernel=1x3x3",
        "neighborhood:kernel=3x1x5",
        "neighborhood:kernel=5x7x9",  # larger than every dimension: each level whole
    ],
)
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_neighborhood_matches_the_reference(spec, padded):
    assert_matches_reference(build(spec), padded=padded)


@pytest.mark.skipif(not flex_runs(torch.device("cpu"), torch.float32), reason="no flex_attention")
def test_neighborhood_flex_matches_the_reference_float32():
    """FlexAttention runs the forward (float32 on the CPU; compiling takes seconds); the gradient
    is the masked path's. With 3x3x3 some padded queries have no unpadded key."""
    module = build("neighborhood:kernel=3x3x3,impl=flex")
    assert_matches_reference(module, dtype=torch.float32, tol={"rtol": 1e-4, "atol": 1e-5})


@pytest.mark.parametrize("size", [(2, 4, 4), (2, 2, 3), (3, 1, 2)])
def test_the_shifted_window_rule_is_swin_s_offset_partition(size):
    """Cross-check of the reference: cyclic shift + region masks = windows offset by the shift
    without wrap-around (same floor((i - shift) / w) in every dimension)."""
    levels = [(3, 5, 7), (4, 6, 8)]

    def offset(dims, q, k):
        for n, s, i, j in zip(dims, size, q, k, strict=True):
            w = min(s, n)
            shift = s // 2 if n > s else 0
            if (i - shift) // w != (j - shift) // w:
                return False
        return True

    assert torch.equal(may_attend(levels, window_rule(size, True)), may_attend(levels, offset))


def test_neighborhood_queries_see_exactly_the_kernel_volume():
    allowed = may_attend(LEVELS, neighborhood_rule((3, 3, 5)))
    counts = allowed.sum(1)
    assert (counts[:105] == 3 * 3 * 5).all() and (counts[105:] == 3 * 3 * 4).all()


@pytest.mark.parametrize(
    "spec, layer_index",
    [
        ("divided", 0),
        ("divided:impl=math", 0),
        ("window:size=2x2x2", 1),
        ("window:size=2x2x2,impl=math", 0),
        ("neighborhood:kernel=1x3x3", 0),
    ],
)
def test_gradcheck(spec, layer_index):
    levels = [(2, 3, 3), (2, 1, 2)]
    module = build(spec, layer_index, d_model=4, heads=2).double()
    x, pos, padding = grid_inputs(levels, d_model=4)
    x, pos = x[1:2].requires_grad_(), pos[1:2].requires_grad_()  # padded as an image

    def fn(x, pos):
        return run(module, x, pos, padding[1:2], levels)

    assert torch.autograd.gradcheck(fn, (x, pos), fast_mode=True)


def test_the_neighborhood_op_passes_opcheck():
    """Schema, autograd registration, fake kernel and AOT dispatch (torch.compile) of the op."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 3, 4, 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    padding = torch.rand(2, 3, 4, 5, generator=g) < 0.3
    for x in (q, k, v):
        x.requires_grad_()
    torch.library.opcheck(
        torch.ops.visbench.neighborhood_attn.default, (q, k, v, padding, 3, 3, 5, "masked")
    )


@pytest.mark.parametrize("name", ["divided", "window", "neighborhood"])
def test_self_attention_only(name):
    module = build(name)
    x, pos, _ = grid_inputs(LEVELS, torch.float32)
    shapes, start = torch.tensor(LEVELS), torch.tensor([0, 105])
    ref = torch.rand(3, 141, 2, 3)
    with pytest.raises(ValueError, match="self-attention") as error:
        module(x[:, :20], None, x, None, shapes, start, ref[:, :20])  # Q != S (cross-attention)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="self-attention"):
        module(x[:, :100], None, x[:, :100], None, shapes, start, ref)  # not the token grid
    with pytest.raises(ValueError, match="num_queries"):
        module.mac_breakdown(20, LEVELS)


@pytest.mark.parametrize(
    "text, words",
    [
        ("window:size=0x4x4", ["size", ">= 1", "(0, 4, 4)"]),
        ("window:size=2x4", ["size", "TxHxW"]),
        ("window:shift=maybe", ["shift", "true | false"]),
        ("neighborhood:kernel=2x4x4", ["kernel", "odd", "2x4x4"]),
        ("neighborhood:impl=natten", ["impl", "masked | flex"]),
        ("divided:impl=flash", ["impl", "sdpa | math"]),
    ],
)
def test_a_bad_spec_is_a_one_line_error(text, words):
    with pytest.raises(ValueError) as error:
        build_model("quick", text, **TINY)
    message = str(error.value)
    assert "\n" not in message and all(word in message for word in words), message


@pytest.mark.parametrize(
    "spec", ["divided", "window:size=2x4x4", "neighborhood:kernel=3x3x3", "window:size=1x3x3"]
)
def test_a_tiny_model_trains_a_step(spec):
    torch.manual_seed(0)
    model, criterion, _ = build_model("quick", spec, **{**TINY, "enc_layers": 2})
    assert model.attention["encoder"].name == spec.split(":")[0]
    assert model.attention["decoder"].name == "full"  # encoder-only: a dense decoder
    clips, mask, targets = clip_batch()
    losses = criterion(model(clips, mask), targets)
    loss = sum(criterion.weight_dict[k] * v for k, v in losses.items())
    assert torch.isfinite(loss)
    loss.backward()
    for layer in model.transformer.encoder:
        grads = {n: p.grad for n, p in layer.self_attn.named_parameters()}
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values())
        assert sum(float(g.abs().sum()) for g in grads.values()) > 0
    assert model.transformer.encoder[1].self_attn.options() == parse_backend(spec).identity


@pytest.mark.parametrize("spec", ["divided", "window", "neighborhood"])
def test_bfloat16_autocast_training_step(spec):
    """The training harness runs the model under bfloat16 autocast on GPUs; CPU autocast here."""
    torch.manual_seed(0)
    model, criterion, _ = build_model("quick", spec, **{**TINY, "enc_layers": 2})
    clips, mask, targets = clip_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(clips, mask)
    assert outputs["pred_logits"].dtype == torch.bfloat16
    losses = criterion(outputs, targets)
    loss = sum(criterion.weight_dict[k] * v for k, v in losses.items())
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.transformer.encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
