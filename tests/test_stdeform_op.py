"""Tests of the C++ CPU kernel of ``visbench::stdeform_attn`` (csrc/stdeform_attn_cpu.cpp).

The kernel is compared with the pure-PyTorch reference (5-D ``F.grid_sample``), forward and all
three gradients, on seeded random inputs that hit the special cases: several levels of different
T x H x W, N > 1, points outside the volume, points exactly on frame centres (the 4-corner path)
and on pixel centres / edges (one-sided derivatives), T = 1 (which must also equal 4-D bilinear
``F.grid_sample``, i.e. Deformable DETR's MSDeformAttn), D not a multiple of the SIMD width.
Then gradcheck, opcheck, torch.compile, input validation (C++ and Python checks alike), the
pure-PyTorch fallback, determinism of the backward and the build cache. The extension is built
once per session (the first test that needs it takes about a minute).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import attention
from attention import extension, stdeform_attn
from attention.stdeform_op import BACKWARD_SCHEMA, FORWARD_SCHEMA

ROOT = Path(__file__).resolve().parent.parent
# dtype -> tolerance, relative to the largest entry of the expected tensor.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(scope="module")
def kernel():
    """Build (or load from the cache) the extension once; the CPU kernel must be there."""
    info = attention.register_op()
    assert attention.stdeform_impl("cpu") == "cpu kernel", info.notes
    return info


def make_inputs(
    levels, N=2, Q=5, M=3, D=7, K=4, dtype=torch.float64, seed=0, lo=0.0, hi=1.0, special=0.0
):
    """Seeded random (value, shapes, start, loc, weights); never zeros.

    loc is uniform in [lo, hi]; with ``special`` > 0 that fraction of t coordinates is put exactly
    on frame centres (i + 0.5) / T and that fraction of x and y exactly on pixel edges or centres
    j / (2 size).
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(levels, dtype=torch.int64).reshape(-1, 3)
    sizes = shapes.prod(1)
    start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    L, S = len(levels), int(sizes.sum())
    value = torch.randn(N, S, M, D, generator=gen, dtype=dtype)
    loc = lo + (hi - lo) * torch.rand(N, Q, M, L, K, 3, generator=gen, dtype=dtype)
    weights = torch.randn(N, Q, M, L, K, generator=gen, dtype=dtype)
    if special > 0:
        for level, (T, H, W) in enumerate(levels):
            pick = lambda: torch.rand(N, Q, M, K, generator=gen) < special
            frame = (torch.randint(0, T, (N, Q, M, K), generator=gen) + 0.5) / T
            loc[:, :, :, level, :, 2] = torch.where(pick(), frame.to(dtype), loc[..., level, :, 2])
            for dim, size in ((0, W), (1, H)):
                edge = torch.randint(0, 2 * size + 1, (N, Q, M, K), generator=gen) / (2 * size)
                loc[:, :, :, level, :, dim] = torch.where(
                    pick(), edge.to(dtype), loc[..., level, :, dim]
                )
    return value, shapes, start, loc, weights


def run(impl, value, shapes, start, loc, weights, seed=1, grad_out=None):
    """Output and gradients (value, loc, weights) of ``impl`` for grad_out (default: seeded
    random)."""
    value, loc, weights = (t.detach().clone().requires_grad_() for t in (value, loc, weights))
    out = stdeform_attn(value, shapes, start, loc, weights, impl=impl)
    if grad_out is None:
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    out.backward(grad_out.to(out.dtype))
    return out.detach(), value.grad, loc.grad, weights.grad


def assert_close(actual, expected, tol, name=""):
    """Max abs error within tol times the largest entry of expected (and same shape, dtype)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, name
    scale = expected.abs().max().item() if expected.numel() else 1.0
    err = (actual - expected).abs().max().item() if expected.numel() else 0.0
    assert err <= tol * max(scale, 1e-30), f"{name}: max error {err:.3g} vs scale {scale:.3g}"


def assert_matches_reference(args, dtype):
    for name, a, b in zip(
        ("out", "grad_value", "grad_loc", "grad_weights"),
        run("op", *args),
        run("reference", *args),
        strict=True,
    ):
        assert_close(a, b, TOLERANCE[dtype], name)


# Name -> make_inputs keyword arguments.
CASES = {
    "3 levels, outside, special": dict(
        levels=[(3, 4, 5), (2, 3, 7), (1, 2, 2)], lo=-0.2, hi=1.2, special=0.3
    ),
    "frame centres and pixel edges": dict(levels=[(5, 6, 7), (3, 3, 4)], D=9, special=0.8),
    "T=1 levels (MSDeformAttn), t=0.5": dict(levels=[(1, 6, 8), (1, 3, 4)], K=5),
    "one level, D=48 (one register block)": dict(levels=[(4, 6, 7)], N=1, M=8, D=48, Q=40, K=8),
    "D=83 (register blocks of 64 and 16, a tail of 3)": dict(
        levels=[(2, 4, 5)], N=1, M=2, D=83, lo=-0.1, hi=1.1
    ),
    "D=1, K=1, 4 levels": dict(levels=[(2, 2, 2), (1, 3, 1), (4, 1, 1), (1, 1, 1)], D=1, K=1),
    # Sizes where a fused multiply-add in ((grid + 1) * size - 1) / 2 would round a pixel or
    # frame centre to just below the integer (e.g. W=11, x=3/22 in float64; W=19, x=3/38 in
    # float32): the kernel must round like grid_sample or the one-sided gradients differ.
    "centres that an FMA would round differently": dict(
        levels=[(14, 13, 11), (29, 26, 19)], N=1, M=2, Q=60, D=3, special=1.0
    ),
    "N*M=1 (private grad_value buffers)": dict(levels=[(3, 4, 4)], N=1, M=1, Q=30, special=0.3),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_matches_reference(kernel, case, dtype):
    """Forward and the three gradients equal the reference's (autograd of grid_sample)."""
    args = make_inputs(dtype=dtype, **CASES[case])
    if case.startswith("T=1"):
        args[3][..., 2] = 0.5  # t on the single frame's centre
    assert_matches_reference(args, dtype)


@st.composite
def random_problem(draw):
    L = draw(st.integers(1, 3))
    levels = [
        (draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
        for _ in range(L)
    ]
    return dict(
        levels=levels,
        N=draw(st.integers(1, 3)),
        Q=draw(st.integers(1, 9)),
        M=draw(st.integers(1, 4)),
        D=draw(st.integers(1, 40)),
        K=draw(st.integers(1, 5)),
        seed=draw(st.integers(0, 2**31 - 1)),
        lo=draw(st.sampled_from([0.0, -0.2])),
        hi=draw(st.sampled_from([1.0, 1.2])),
        special=draw(st.sampled_from([0.0, 0.3, 0.9])),
    )


@settings(derandomize=True, max_examples=40, deadline=None, database=None)
@given(problem=random_problem(), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_matches_reference_random(kernel, problem, dtype):
    """Random shapes, levels and points (a fixed, derandomised set of examples)."""
    assert_matches_reference(make_inputs(dtype=dtype, **problem), dtype)


def msdeform_attn_2d(value, shapes, start, loc_xy, weights):
    """Deformable DETR's MSDeformAttn core: 4-D bilinear grid_sample per level."""
    N, _, M, D = value.shape
    _, Q, _, L, K, _ = loc_xy.shape
    out = value.new_zeros(N * M, D, Q)
    for level, ((_, H, W), offset) in enumerate(zip(shapes.tolist(), start.tolist(), strict=True)):
        v = value[:, offset : offset + H * W].permute(0, 2, 3, 1).reshape(N * M, D, H, W)
        grid = (2 * loc_xy[:, :, :, level] - 1).transpose(1, 2).reshape(N * M, Q, K, 2)
        sampled = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        w = weights[:, :, :, level].transpose(1, 2).reshape(N * M, 1, Q, K)
        out = out + (sampled * w).sum(-1)
    return out.reshape(N, M, D, Q).permute(0, 3, 1, 2).reshape(N, Q, M * D)


def test_t1_equals_bilinear_grid_sample(kernel):
    """With T = 1 and t = 0.5 the op is exactly 2-D multi-scale deformable attention."""
    value, shapes, start, loc, weights = make_inputs([(1, 7, 9), (1, 4, 5), (1, 2, 3)], lo=-0.1)
    loc[..., 2] = 0.5
    value, loc_xy, weights = (t.requires_grad_() for t in (value, loc[..., :2].clone(), weights))
    full_loc = torch.cat([loc_xy, torch.full_like(loc_xy[..., :1], 0.5)], dim=-1)
    out = stdeform_attn(value, shapes, start, full_loc, weights)
    expected = msdeform_attn_2d(value, shapes, start, loc_xy, weights)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (value, loc_xy, weights), grad_out)
    expected_grads = torch.autograd.grad(expected, (value, loc_xy, weights), grad_out)
    assert_close(out, expected, 1e-10, "out")
    for name, a, b in zip(("value", "loc", "weights"), grads, expected_grads, strict=True):
        assert_close(a, b, 1e-10, name)


def test_gradcheck(kernel):
    """Finite differences in float64, points kept off integer pixel coordinates."""
    value, shapes, start, loc, weights = gradcheck_inputs()
    inputs = (value.requires_grad_(), shapes, start, loc.requires_grad_(), weights.requires_grad_())
    assert torch.autograd.gradcheck(stdeform_attn, inputs, eps=1e-6, atol=1e-7)


def gradcheck_inputs():
    """float64 (value, shapes, start, loc, weights) with points kept off integer pixel
    coordinates, where the op is smooth (finite differences are exact up to eps)."""
    levels = [(2, 3, 4), (1, 2, 3)]
    value, shapes, start, _, weights = make_inputs(levels, N=1, Q=2, M=2, D=2, K=2)
    gen = torch.Generator().manual_seed(3)
    loc = torch.empty(1, 2, 2, 2, 2, 3, dtype=torch.float64)
    for level, (T, H, W) in enumerate(levels):
        for dim, size in enumerate((W, H, T)):
            # pixel coordinate = integer in [-1, size - 1] + fraction in [0.2, 0.8]
            pixel = torch.randint(-1, size, (1, 2, 2, 2), generator=gen)
            pixel = pixel + 0.2 + 0.6 * torch.rand(pixel.shape, generator=gen, dtype=torch.float64)
            loc[:, :, :, level, :, dim] = (pixel + 0.5) / size
    return value, shapes, start, loc, weights


def test_double_backward_raises(kernel):
    """Gradients with create_graph=True work; differentiating them again raises a clear error
    (the backward op has no derivative), never silent zeros."""
    value, shapes, start, loc, weights = make_inputs([(3, 4, 5), (1, 2, 3)], lo=-0.1, hi=1.1)
    leaves = [t.requires_grad_() for t in (value, loc, weights)]
    out = stdeform_attn(value, shapes, start, loc, weights)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
    grads = torch.autograd.grad(out, leaves, grad_out, create_graph=True)
    expected = run("reference", value, shapes, start, loc, weights, grad_out=grad_out)[1:]
    for name, a, b in zip(("value", "loc", "weights"), grads, expected, strict=True):
        assert_close(a.detach(), b, TOLERANCE[torch.float64], name)
    penalty = sum(g.square().sum() for g in grads)
    with pytest.raises(RuntimeError, match=r"does not support double backward.*impl='reference'"):
        penalty.backward()


def test_reference_double_backward():
    """impl="reference" (autograd through grid_sample) gives correct second-order gradients."""
    value, shapes, start, loc, weights = gradcheck_inputs()
    leaves = [t.requires_grad_() for t in (value, loc, weights)]

    def fn(value, loc, weights):
        return stdeform_attn(value, shapes, start, loc, weights, impl="reference")

    assert torch.autograd.gradgradcheck(fn, leaves, eps=1e-6, atol=1e-6)


def test_opcheck(kernel):
    """torch.library.opcheck: schema, autograd registration, fake kernel, AOT dispatch."""
    value, shapes, start, loc, weights = make_inputs([(2, 3, 4), (1, 2, 2)], dtype=torch.float32)
    args = (value.requires_grad_(), shapes, start, loc.requires_grad_(), weights.requires_grad_())
    torch.library.opcheck(torch.ops.visbench.stdeform_attn.default, args)
    grad_out = torch.randn(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3])
    detached = [t.detach() for t in args]
    torch.library.opcheck(torch.ops.visbench.stdeform_attn_backward.default, (grad_out, *detached))


def test_torch_compile_fullgraph(kernel):
    """torch.compile(fullgraph=True, inductor) gives the eager output and gradients."""
    value, shapes, start, loc, weights = make_inputs([(2, 4, 5), (1, 2, 3)], dtype=torch.float32)

    def fn(value, loc, weights):
        return stdeform_attn(value, shapes, start, loc, weights)

    compiled = torch.compile(fn, fullgraph=True, backend="inductor")
    results = []
    for f in (fn, compiled):
        inputs = [t.detach().clone().requires_grad_() for t in (value, loc, weights)]
        out = f(*inputs)
        out.backward(torch.ones_like(out))
        results.append((out.detach(), *(t.grad for t in inputs)))
    for name, a, b in zip(("out", "value", "loc", "weights"), *results, strict=True):
        assert_close(a, b, 1e-5, name)


@pytest.mark.parametrize(
    "name, schema",
    [("stdeform_attn", FORWARD_SCHEMA), ("stdeform_attn_backward", BACKWARD_SCHEMA)],
)
def test_registered_schema_equals_the_python_constant(kernel, name, schema):
    """The schemas the compiled library defines (TORCH_LIBRARY in csrc/stdeform_attn_op.cpp)
    equal attention/stdeform_op.py's, which the reference fallback defines."""
    assert kernel.loaded, kernel.notes
    registered = getattr(torch.ops.visbench, name).default._schema
    assert str(registered) == str(torch._C.parse_schema("visbench::" + schema))


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_inputs([(2, 3, 4)], Q=0),
        lambda: make_inputs([(2, 3, 4)], K=0),
        lambda: make_inputs([(2, 3, 4)], N=0),
        lambda: make_inputs([(2, 3, 4)], D=0),
    ],
    ids=["Q=0", "K=0", "N=0", "D=0"],
)
def test_empty_sizes(kernel, make):
    """Empty sizes give correctly shaped zeros (forward and gradients), no crash."""
    value, shapes, start, loc, weights = make()
    out = torch.ops.visbench.stdeform_attn(value, shapes, start, loc, weights)
    N, _, M, D = value.shape
    assert out.shape == (N, loc.shape[1], M * D)
    assert not out.any()
    grads = torch.ops.visbench.stdeform_attn_backward(
        torch.randn(out.shape, dtype=out.dtype), value, shapes, start, loc, weights
    )
    for grad, like in zip(grads, (value, loc, weights), strict=True):
        assert grad.shape == like.shape and grad.dtype == like.dtype and not grad.any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_reduced_precision(kernel, dtype):
    """float16 / bfloat16 inputs (computed in float32) agree with float64 to their precision."""
    args = make_inputs([(3, 4, 5), (1, 3, 3)], lo=-0.1, hi=1.1)
    low = [t.to(dtype) if t.is_floating_point() else t for t in args]
    expected = run("op", *[t.double() if t.is_floating_point() else t for t in low])
    for name, a, b in zip(
        ("out", "value", "loc", "weights"), run("op", *low), expected, strict=True
    ):
        assert a.dtype == dtype, name
        assert_close(a.double(), b, 3e-2, name)


@pytest.mark.parametrize("call", ["op", "reference", "torch.ops"])
def test_autocast_bfloat16_runs_in_float32(kernel, call):
    """Under CPU bfloat16 autocast, with value and weights in bfloat16 and loc in float32 (as
    autocast leaves them), the op runs in float32: it equals the float32 op on the same rounded
    inputs, and gradients reach the float32 leaves."""
    if call == "torch.ops" and not hasattr(torch.library, "register_autocast"):
        pytest.skip("torch.library.register_autocast needs torch >= 2.5")
    args = make_inputs([(3, 4, 5), (1, 3, 3)], lo=-0.1, hi=1.1, dtype=torch.float32)
    value, shapes, start, loc, weights = args
    grad_out = torch.randn(2, 5, 21, generator=torch.Generator().manual_seed(4))
    # float32 reference on the inputs as bfloat16 rounds them
    rounded = (value.bfloat16().float(), shapes, start, loc, weights.bfloat16().float())
    expected = run("reference", *rounded, grad_out=grad_out)

    leaves = [t.clone().requires_grad_() for t in (value, loc, weights)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low_value, low_weights = leaves[0].bfloat16(), leaves[2].bfloat16()
        if call == "torch.ops":
            out = torch.ops.visbench.stdeform_attn(low_value, shapes, start, leaves[1], low_weights)
        else:
            out = stdeform_attn(low_value, shapes, start, leaves[1], low_weights, impl=call)
    assert out.dtype == torch.float32
    out.backward(grad_out)
    assert_close(out.detach(), expected[0], TOLERANCE[torch.float32], "out")
    # value's and weights' gradients are rounded to bfloat16 on their way to the leaves
    for name, leaf, grad, tol in zip(
        ("value", "loc", "weights"), leaves, expected[1:], (1e-2, 1e-5, 1e-2), strict=True
    ):
        assert leaf.grad is not None and leaf.grad.dtype == torch.float32, name
        assert_close(leaf.grad, grad, tol, name)


@pytest.fixture
def threads():
    """Run a test with a given number of intra-op threads, then restore the old count."""
    old = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(old)


@pytest.mark.parametrize("n_threads", [1, 2, 4])
@pytest.mark.parametrize("N, M", [(1, 1), (1, 3), (2, 4)])
def test_backward_deterministic(kernel, threads, n_threads, N, M):
    """Two backward runs give bitwise-equal gradients, also when N*M < threads (Q split into
    chunks with private grad_value buffers), and they match the reference."""
    threads(n_threads)
    value, shapes, start, loc, weights = make_inputs(
        [(3, 5, 6), (2, 2, 3)], N=N, M=M, Q=64, D=16, K=8, dtype=torch.float32, special=0.2
    )
    grad_out = torch.randn(N, 64, M * 16)
    first, second = (
        torch.ops.visbench.stdeform_attn_backward(grad_out, value, shapes, start, loc, weights)
        for _ in range(2)
    )
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    expected = attention.stdeform_attn_reference_backward(
        grad_out, value, shapes, start, loc, weights
    )
    for name, a, b in zip(("value", "loc", "weights"), first, expected, strict=True):
        assert_close(a, b, 1e-5, name)


# ----------------------------------------------------------------------------- input validation


def _bad(**changes):
    """Valid float32 inputs with some replaced: name -> tensor, or name -> fn(valid inputs)."""

    def build():
        names = ("value", "shapes", "start", "loc", "weights")
        args = dict(
            zip(names, make_inputs([(2, 3, 4), (1, 2, 2)], dtype=torch.float32), strict=True)
        )
        for name, change in changes.items():
            args[name] = change(args) if callable(change) else change
        return [args[name] for name in names]

    return build


# Name -> (inputs, a word the message must contain).
BAD_INPUTS = {
    "value rank 3": (_bad(value=lambda a: a["value"][0]), "value must be 4-D"),
    "shapes rank 1": (_bad(shapes=lambda a: a["shapes"].flatten()), "shapes must be (L, 3)"),
    "shapes (L, 2)": (_bad(shapes=lambda a: a["shapes"][:, :2]), "shapes must be (L, 3)"),
    "start rank 2": (_bad(start=lambda a: a["start"][None]), "start must be 1-D"),
    "loc rank 5": (_bad(loc=lambda a: a["loc"][0]), "loc must be 6-D"),
    "weights rank 4": (_bad(weights=lambda a: a["weights"][0]), "weights must be 5-D"),
    "loc last dim 2": (_bad(loc=lambda a: a["loc"][..., :2].contiguous()), "last dim of loc"),
    "N mismatch": (_bad(loc=lambda a: a["loc"][:1].contiguous()), "loc batch size N"),
    "M mismatch": (_bad(value=lambda a: a["value"][:, :, :2].contiguous()), "loc heads M"),
    "L mismatch (loc)": (_bad(loc=lambda a: a["loc"][:, :, :, :1].contiguous()), "loc levels L"),
    "L mismatch (start)": (_bad(start=lambda a: a["start"][:1]), "start must have L=2"),
    "K mismatch": (_bad(weights=lambda a: a["weights"][..., :2].contiguous()), "weights must be"),
    "Q mismatch": (_bad(weights=lambda a: a["weights"][:, :2].contiguous()), "weights must be"),
    "S != sum T*H*W": (_bad(value=lambda a: a["value"][:, 1:].contiguous()), "value has S="),
    "wrong start offset": (_bad(start=torch.tensor([0, 5])), "start[1] must be 24"),
    "non-positive shape": (
        _bad(
            shapes=torch.tensor([[2, 3, 4], [0, 2, 2]]),
            value=lambda a: a["value"][:, :24].contiguous(),
        ),
        "shapes[1] must be positive",
    ),
    "integer value": (_bad(value=lambda a: a["value"].long()), "value must be a floating-point"),
    "integer loc": (_bad(loc=lambda a: a["loc"].int()), "loc must be a floating-point"),
    "integer weights": (_bad(weights=lambda a: a["weights"].int()), "weights must be a floating"),
    "mixed dtypes": (_bad(loc=lambda a: a["loc"].double()), "must share one dtype"),
    "int32 shapes": (_bad(shapes=lambda a: a["shapes"].int()), "shapes must be int64"),
    "int32 start": (_bad(start=lambda a: a["start"].int()), "start must be int64"),
    "non-contiguous value": (
        _bad(value=lambda a: a["value"].transpose(2, 3).contiguous().transpose(2, 3)),
        "value must be contiguous",
    ),
    "non-contiguous loc": (
        _bad(loc=lambda a: a["loc"].transpose(0, 1).contiguous().transpose(0, 1)),
        "loc must be contiguous",
    ),
    "non-contiguous weights": (
        _bad(weights=lambda a: a["weights"].transpose(1, 4).contiguous().transpose(1, 4)),
        "weights must be contiguous",
    ),
}


@pytest.mark.parametrize("impl", ["op", "reference"])
@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_raises_value_error(kernel, case, impl):
    """C++ (impl="op") and Python (impl="reference") checks raise the same ValueError."""
    build, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=re.escape(message)):
        stdeform_attn(*build(), impl=impl)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed devices need a CUDA device")
@pytest.mark.parametrize("impl", ["op", "reference"])
def test_mixed_devices_raise_value_error(kernel, impl):
    value, shapes, start, loc, weights = make_inputs([(2, 3, 4)], dtype=torch.float32)
    with pytest.raises(ValueError, match="one device"):
        stdeform_attn(value.cuda(), shapes, start, loc, weights, impl=impl)


@pytest.mark.parametrize(
    "grad_out, message",
    [
        (torch.zeros(2, 5, 20), "grad_out must be"),
        (torch.zeros(2, 5, 21, dtype=torch.float64), "grad_out dtype"),
        (torch.zeros(2, 21, 5).transpose(1, 2), "grad_out must be contiguous"),
    ],
    ids=["shape", "dtype", "non-contiguous"],
)
def test_bad_grad_out_raises_value_error(kernel, grad_out, message):
    value, shapes, start, loc, weights = make_inputs([(2, 3, 4)], M=3, D=7, dtype=torch.float32)
    with pytest.raises(ValueError, match=re.escape(message)):
        torch.ops.visbench.stdeform_attn_backward(grad_out, value, shapes, start, loc, weights)


# ------------------------------------------------------------------------ subprocesses (slower)

OVERFLOW_SCRIPT = """
import json, sys
import torch
import attention
shapes, start, S = json.loads(sys.argv[1])
shapes, start = torch.tensor(shapes), torch.tensor(start)
torch.manual_seed(0)
L = shapes.shape[0]
value = torch.randn(1, S, 1, 4)
loc, weights = torch.rand(1, 3, 1, L, 2, 3), torch.rand(1, 3, 1, L, 2)
messages = {}
for impl in ("op", "reference"):
    try:
        attention.stdeform_attn(value, shapes, start, loc, weights, impl=impl)
        messages[impl] = "no error"
    except ValueError as error:
        messages[impl] = str(error).splitlines()[0]
print(json.dumps(messages))
"""

# Name -> (shapes, start, S, the message): sizes whose int64 arithmetic wraps.
OVERFLOWS = {
    "T*H*W = 2**64 wraps to S=0": (
        [[2**32, 2**32, 1]],
        [0],
        0,
        "stdeform_attn: shapes[0] = (4294967296, 4294967296, 1) has T*H*W beyond int64",
    ),
    "T*H*W = 2**64 + 16 wraps to S=16": (
        [[2**62 + 4, 4, 1]],
        [0],
        16,
        "stdeform_attn: shapes[0] = (4611686018427387908, 4, 1) has T*H*W beyond int64",
    ),
    "sum(T*H*W) = 2**63 wraps negative": (
        [[2**62, 1, 1], [2**62, 1, 1], [1, 1, 1]],
        [0, 2**62, 0],
        0,
        "stdeform_attn: sum(T*H*W) over shapes[0..1] is beyond int64 "
        "(at shapes[1] = (4611686018427387904, 1, 1))",
    ),
}


@pytest.mark.parametrize("case", OVERFLOWS, ids=list(OVERFLOWS))
def test_int64_overflow_raises_value_error(case):
    """Shapes whose T*H*W or sum overflows int64: the C++ and Python checks raise the same
    ValueError (no wrapped number in it), not a crash. In a subprocess: a segfault fails the test."""
    shapes, start, S, message = OVERFLOWS[case]
    proc = subprocess.run(
        [sys.executable, "-c", OVERFLOW_SCRIPT, json.dumps([shapes, start, S])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    messages = json.loads(proc.stdout.strip().splitlines()[-1])
    assert messages == {"op": message, "reference": message}


FALLBACK_SCRIPT = """
import json, warnings
import torch
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import attention
    attention.register_op()
    attention.register_op()
    impl = attention.stdeform_impl("cpu")
    torch.manual_seed(0)
    shapes, start = torch.tensor([[3, 4, 5], [1, 2, 3]]), torch.tensor([0, 60])
    results = []
    for name in ("op", "reference"):
        torch.manual_seed(0)
        value = torch.randn(2, 66, 3, 5, dtype=torch.float64, requires_grad=True)
        loc = (torch.rand(2, 4, 3, 2, 3, 3, dtype=torch.float64) * 1.2 - 0.1).requires_grad_()
        weights = torch.randn(2, 4, 3, 2, 3, dtype=torch.float64, requires_grad=True)
        out = attention.stdeform_attn(value, shapes, start, loc, weights, impl=name)
        out.backward(torch.randn_like(out))
        results.append((out, value.grad, loc.grad, weights.grad))
    err = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(*results))
warnings_ = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
print(json.dumps({"impl": impl, "warnings": warnings_, "err": err}))
"""


def test_fallback_without_extension():
    """VISBENCH_EXTENSION=0: the op runs the reference (forward and backward) after one warning."""
    env = dict(os.environ, VISBENCH_EXTENSION="0")
    proc = subprocess.run(
        [sys.executable, "-c", FALLBACK_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["impl"] == "reference"
    cpu_warnings = [w for w in result["warnings"] if "C++ kernels are not available" in w]
    assert len(cpu_warnings) == 1, result["warnings"]
    assert "VISBENCH_EXTENSION=0" in cpu_warnings[0]
    assert len(set(result["warnings"])) == len(result["warnings"]), "a warning was repeated"
    assert result["err"] < 1e-12


FRESH_PROCESS_SCRIPT = """
import json, sys
import torch
import attention
registered = hasattr(torch.ops.visbench, "stdeform_attn")
torch.manual_seed(0)
shapes, start = torch.tensor([[3, 4, 5], [1, 2, 3]]), torch.tensor([0, 60])
value = torch.randn(2, 66, 3, 5, requires_grad=True)
loc = (torch.rand(2, 4, 3, 2, 3, 3) * 1.2 - 0.1).requires_grad_()
weights = torch.randn(2, 4, 3, 2, 3, requires_grad=True)

def fn(value, loc, weights):
    return attention.stdeform_attn(value, shapes, start, loc, weights)

out = torch.compile(fn, fullgraph=True)(value, loc, weights)  # the process' first call
grads = torch.autograd.grad(out.square().sum(), (value, loc, weights))
expected = attention.stdeform_attn(value, shapes, start, loc, weights, impl="reference")
expected_grads = torch.autograd.grad(expected.square().sum(), (value, loc, weights))
err = max(
    ((a - b).abs().max() / b.abs().max()).item()
    for a, b in zip((out, *grads), (expected, *expected_grads))
)
print(json.dumps({"registered": registered, "impl": attention.stdeform_impl("cpu"), "err": err}))
"""


@pytest.mark.parametrize("setting", ["default", "VISBENCH_EXTENSION=0"])
def test_import_registers_the_op(setting):
    """In a fresh process ``import attention`` registers the op (the compiled kernels, or the
    reference with VISBENCH_EXTENSION=0), so torch.compile(fullgraph=True) works on the very first
    call, forward and backward."""
    env = dict(os.environ)
    if setting == "VISBENCH_EXTENSION=0":
        env["VISBENCH_EXTENSION"] = "0"
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["registered"]
    assert result["impl"] == ("reference" if setting == "VISBENCH_EXTENSION=0" else "cpu kernel")
    assert result["err"] < 1e-5


def test_build_is_cached(kernel):
    """A second process loads the cached library: nothing is compiled, it takes seconds."""
    library = Path(kernel.library)
    mtime = library.stat().st_mtime_ns
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", "import attention; print(attention.register_op().library)"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    elapsed = time.perf_counter() - began
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(library)
    assert library.stat().st_mtime_ns == mtime, "the library was rebuilt"
    assert "compiling" not in proc.stderr, proc.stderr
    assert elapsed < 30, f"loading the cached extension took {elapsed:.1f} s"


def test_build_name_keys_sources_flags_and_torch(tmp_path, monkeypatch):
    """The build folder is named by the sources' contents, the flags and torch's version: a
    checkout whose sources differ (here by one comment) never shares, so never rebuilds, another's
    library; identical sources share it."""
    same, changed = tmp_path / "same", tmp_path / "changed"
    shutil.copytree(extension.csrc_dir(), same)
    shutil.copytree(extension.csrc_dir(), changed)
    source = changed / "stdeform_attn_cpu.cpp"
    source.write_text(source.read_text() + "// one more comment\n")
    name = extension.build_name(None)
    assert re.fullmatch(r"visbench_stdeform_cpu(_avx2)?_[0-9a-f]{12}", name), name
    assert extension.build_name(None, same) == name
    assert extension.build_name(None, changed) != name
    monkeypatch.setattr(extension, "_cpu_flags", lambda: ["-O2"])
    assert extension.build_name(None, same) != name
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "2.99.0")
    assert extension.build_name(None, same) != name


def test_build_prints_one_line_then_reuses_the_library(tmp_path, monkeypatch, capsys):
    """A build says so in one line on stderr while it runs; the next process loads the library
    it left without compiling or printing (a fake compiler stands in for torch's)."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    compiled, loaded = [], []

    class FakeCppExtension:
        @staticmethod
        def load(name, build_directory, **kwargs):
            compiled.append(name)
            library = Path(build_directory) / f"{name}.so"
            library.write_bytes(b"\x7fELF")
            return str(library)

    monkeypatch.setattr(extension, "_cpp_extension", lambda cuda_home: FakeCppExtension)
    monkeypatch.setattr(extension, "_load_library", loaded.append)
    first = extension.build(None)
    assert capsys.readouterr().err.splitlines() == [
        "visbench: compiling the STDeformAttn extension (first use, about a minute)…"
    ]
    assert Path(first).parent == tmp_path / extension.build_name(None)
    assert compiled == [Path(first).parent.name] and loaded == []
    assert extension.build(None) == first
    assert capsys.readouterr().err == ""
    assert compiled == [Path(first).parent.name] and loaded == [Path(first)]
