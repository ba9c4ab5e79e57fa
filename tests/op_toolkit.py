"""The STDeformAttn op tests' shared toolkit: inputs with named special points, the tolerance per
dtype, one comparator, the bad-input table, and ``DeviceChecks``, the checks every device runs.

tests/test_stdeform_op.py runs DeviceChecks on the CPU (``TestCPU``) and tests/test_stdeform_cuda.py
on a GPU (``TestCUDA``, marked ``gpu``, skipped without one), each beside what is particular to its
kernel; the CUDA file's emulated device-code tests use the same inputs, reference and comparator.
"""

import os
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attention
from attention import stdeform_attn, stdeform_attn_reference_backward

HAS_GPU = torch.cuda.is_available()
GPU_MARKS = (pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA device"))


def needs_gpu(test):
    """Mark a test gpu and skip it where no CUDA device is visible."""
    for mark in GPU_MARKS:
        test = mark(test)
    return test


# dtype -> tolerance: entry by entry |actual - expected| <= tol * max(max |expected|, 1e-3).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 3e-2}
DTYPES = list(TOLERANCE)


def reference_dtype(dtype: torch.dtype) -> torch.dtype:
    """The reference runs in the kernel's dtype where grid_sample computes pixel coordinates as the
    kernels do (float32, float64: the same side of every kink, even on an inexact pixel centre);
    float16 / bfloat16, which the kernels compute in float32, in float64 on the rounded inputs."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float64


# ------------------------------------------------------------------------- named special points
# Normalised coordinates on an axis of `size` pixels (frames, for t), drawn in float64 (so the
# nearest float64 to the exact point) for a tensor of `shape`. Pixel coordinate = coord*size - 0.5.


def pixel_centres(size, shape, gen, outside=False):
    """(i + 0.5) / size, i in [0, size), or in [-1, size] with ``outside`` (the pixels just beyond
    each border): an integer pixel coordinate, where the one-sided derivatives differ. On t, a frame
    centre: the next frame's 4 corners have weight exactly 0."""
    low, high = (-1, size + 1) if outside else (0, size)
    return (torch.randint(low, high, shape, generator=gen).double() + 0.5) / size


def pixel_edges(size, shape, gen):
    """i / size, i in [0, size]: half-way between two pixels; 0 and 1 are the volume's borders."""
    return torch.randint(0, size + 1, shape, generator=gen).double() / size


def half_steps(size, shape, gen):
    """j / (2 size), j in [0, 2 size]: pixel centres, pixel edges and the two borders."""
    return torch.randint(0, 2 * size + 1, shape, generator=gen).double() / (2 * size)


def _frame_centre(point, sizes, level, gen):
    point[..., 2] = pixel_centres(sizes[0], point.shape[:-1], gen, outside=True)


def _frame_and_pixel_centres(point, sizes, level, gen):
    for axis, size in ((2, sizes[0]), (0, sizes[2]), (1, sizes[1])):
        point[..., axis] = pixel_centres(size, point.shape[:-1], gen, outside=True)


def _pixel_edges_and_borders(point, sizes, level, gen):
    for axis, size in ((0, sizes[2]), (1, sizes[1])):
        point[..., axis] = pixel_edges(size, point.shape[:-1], gen)


def _far_outside(point, sizes, level, gen):
    point[..., level % 3] = -0.6 if level % 2 else 1.7  # x, y or t by level: no corner inside


# Name -> placement of one point (N, Q, M, 3) of a level (T, H, W); with ``placed=True`` point k
# of every level takes the k-th.
SPECIAL_POINTS = {
    "on a frame centre (t), frames -1 and T included": _frame_centre,
    "on a frame centre and pixel centres (t, x, y)": _frame_and_pixel_centres,
    "on pixel edges or borders (x, y)": _pixel_edges_and_borders,
    "far outside on one axis": _far_outside,
}


def make_inputs(
    levels,
    N=2,
    Q=5,
    M=3,
    D=7,
    K=4,
    *,
    seed=0,
    dtype=torch.float64,
    device="cpu",
    lo=0.0,
    hi=1.0,
    margin=0.0,
    special=0.0,
    placed=False,
    centred=False,
    t=None,
):
    """Seeded random (value, shapes, start, loc, weights), never zeros: drawn in float64 on the
    CPU, then cast to ``dtype`` and moved to ``device`` (shapes and start stay int64).

    loc is uniform in [lo, hi] per coordinate, then
      margin   random coordinates moved to >= margin pixel from integer pixel coordinates;
      special  each t with this probability on a frame centre, each x, y on a half step
               (pixel centre, pixel edge or border);
      centred  every coordinate on a pixel centre, i in [-1, size];
      placed   point k < 4 of every level on the k-th of SPECIAL_POINTS;
      t        every t set to this value (t = 0.5 with T = 1 is 2-D deformable attention).
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(levels, dtype=torch.int64).reshape(-1, 3)
    sizes = shapes.prod(dim=1)
    start = torch.cumsum(sizes, 0) - sizes
    L, S = len(levels), int(sizes.sum())
    value = torch.randn(N, S, M, D, generator=gen, dtype=torch.float64)
    loc = lo + (hi - lo) * torch.rand(N, Q, M, L, K, 3, generator=gen, dtype=torch.float64)
    weights = torch.randn(N, Q, M, L, K, generator=gen, dtype=torch.float64)
    for level, (T, H, W) in enumerate(levels):
        for axis, size in enumerate((W, H, T)):
            coord = loc[:, :, :, level, :, axis]  # a view
            if margin:
                pixel = coord * size - 0.5
                coord[(pixel - pixel.round()).abs() < margin] += 3 * margin / size
            if centred:
                coord[...] = pixel_centres(size, coord.shape, gen, outside=True)
            elif special:
                pick = torch.rand(coord.shape, generator=gen) < special
                on = (
                    pixel_centres(size, coord.shape, gen)
                    if axis == 2
                    else half_steps(size, coord.shape, gen)
                )
                coord[...] = torch.where(pick, on, coord)
        if placed:
            for k, place in zip(range(K), SPECIAL_POINTS.values(), strict=False):
                place(loc[:, :, :, level, k], (T, H, W), level, gen)
    if t is not None:
        loc[..., 2] = t

    def cast(x):
        return x.to(device=device, dtype=dtype)

    return cast(value), shapes.to(device), start.to(device), cast(loc), cast(weights)


def random_grad_out(inputs, seed=1):
    """A seeded standard normal grad_out (N, Q, M*D), drawn in float64, in value's dtype and
    device."""
    value, _, _, loc, _ = inputs
    N, _, M, D = value.shape
    gen = torch.Generator().manual_seed(seed)
    grad = torch.randn(N, loc.shape[1], M * D, generator=gen, dtype=torch.float64)
    return grad.to(device=value.device, dtype=value.dtype)


def to(tensors, device, dtype=None):
    """The tensors on device, the floating ones cast to dtype."""
    return tuple(
        t.to(device=device, dtype=dtype if dtype and t.is_floating_point() else t.dtype)
        for t in tensors
    )


# Name -> make_inputs keyword arguments. The first eight aim at the CPU kernel's paths, the last
# six at the CUDA kernel's; every device runs them all.
CASES = {
    "3 levels, outside, special": dict(
        levels=[(3, 4, 5), (2, 3, 7), (1, 2, 2)], lo=-0.2, hi=1.2, special=0.3
    ),
    "frame centres and pixel edges": dict(levels=[(5, 6, 7), (3, 3, 4)], D=9, special=0.8),
    "T=1 levels (MSDeformAttn), t=0.5": dict(levels=[(1, 6, 8), (1, 3, 4)], K=5, t=0.5),
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
    # CUDA paths: D not a multiple of 32, D > 128 (two passes over the channels), L*K > 32 (two
    # batches of points), many blocks. Random points keep 1e-4 pixel off the kinks.
    **{
        name: dict(levels=levels, N=N, Q=Q, M=M, D=D, K=K, lo=-0.15, hi=1.15, margin=1e-4)
        | dict(placed=True, seed=len(name))
        for name, (levels, N, Q, M, D, K) in {
            "3 levels D=48": ([(4, 8, 16), (4, 5, 7), (4, 2, 3)], 2, 5, 3, 48, 6),
            "T=1 D=32": ([(1, 8, 8), (1, 4, 4), (1, 3, 5)], 2, 4, 2, 32, 5),
            "D=160 two passes": ([(2, 4, 4), (2, 3, 2)], 1, 3, 2, 160, 4),
            "D=5": ([(2, 4, 8)], 3, 2, 1, 5, 4),
            "L*K=40 two batches": ([(4, 6, 8), (2, 3, 5)], 2, 3, 2, 40, 20),
            "600 blocks, contended atomics": (
                [(4, 16, 16), (4, 8, 8), (4, 4, 4), (4, 2, 2)],
                2,
                300,
                8,
                32,
                4,
            ),
        }.items()
    },
}


def case_inputs(case, dtype, device):
    """The case's inputs in dtype on device, and its grad_out."""
    inputs = make_inputs(dtype=dtype, device=device, **CASES[case])
    return inputs, random_grad_out(inputs, seed=len(case) + 100)


# ------------------------------------------------------------------------------- the comparator

# The op's outputs and the names of their dims (for the mismatch report).
OUTPUTS = {
    "out": ("n", "q", "md"),
    "grad_value": ("n", "s", "m", "d"),
    "grad_loc": ("n", "q", "m", "l", "k", "xyt"),
    "grad_weights": ("n", "q", "m", "l", "k"),
}


def _where(bad, dims):
    """The mismatching entries, counted per index of each named dim."""
    idx = bad.nonzero()
    parts = []
    for dim, name in enumerate(dims[: idx.shape[1]]):
        values, counts = idx[:, dim].unique(return_counts=True)
        shown = [f"{v}x{c}" for v, c in zip(values.tolist(), counts.tolist(), strict=True)]
        parts.append(f"{name}:" + ",".join(shown[:12]) + (",..." if len(shown) > 12 else ""))
    return f"{int(bad.sum())} of {bad.numel()} entries; by index " + " ".join(parts)


def assert_close(actual, expected, tol, label, dims=()):
    """Same shape, and entry by entry |actual - expected| <= tol * max(max |expected|, 1e-3),
    compared in float64 on the CPU (a NaN never passes)."""
    a = actual.detach().cpu().double()
    e = expected.detach().cpu().double()
    assert a.shape == e.shape, f"{label}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    if e.numel() == 0:
        return
    bound = tol * max(e.abs().max().item(), 1e-3)
    error = (a - e).abs()
    bad = ~(error <= bound)
    if bad.any():
        worst = error.nan_to_num(float("inf")).max().item()
        raise AssertionError(
            f"{label}: max error {worst:.3g} > {bound:.3g} (tol {tol:g}); {_where(bad, dims)}"
        )


def assert_outputs_close(actual, expected, tol, label):
    """assert_close for each of the four outputs (out, grad_value, grad_loc, grad_weights)."""
    for (name, dims), a, e in zip(OUTPUTS.items(), actual, expected, strict=True):
        assert_close(a, e, tol, f"{label} {name}", dims)


# ---------------------------------------------------------------------------------- the runners


def op_outputs(inputs, grad_out, impl="op"):
    """(out, grad_value, grad_loc, grad_weights) of attention.stdeform_attn(impl=...), the
    gradients by autograd (the op's registered autograd, or grid_sample's) for grad_out."""
    value, shapes, start, loc, weights = inputs
    leaves = [t.detach().clone().requires_grad_() for t in (value, loc, weights)]
    out = stdeform_attn(leaves[0], shapes, start, leaves[1], leaves[2], impl=impl)
    out.backward(grad_out)
    if out.is_cuda:
        torch.cuda.synchronize()  # a launch error surfaces in this test
    return (out.detach(), *(t.grad for t in leaves))


def kernel_outputs(ops, inputs, grad_out):
    """The same from ``ops.stdeform_attn`` and ``ops.stdeform_attn_backward`` called directly
    (torch.ops.visbench, or the CUDA device code emulated on the CPU)."""
    out = ops.stdeform_attn(*inputs)
    grads = ops.stdeform_attn_backward(grad_out, *inputs)
    if out.is_cuda:
        torch.cuda.synchronize()
    return (out, *grads)


def reference_outputs(inputs, grad_out, dtype):
    """The reference's outputs (autograd of grid_sample) on the CPU in reference_dtype(dtype)."""
    dtype = reference_dtype(dtype)
    return op_outputs(to(inputs, "cpu", dtype), grad_out.to("cpu", dtype), impl="reference")


def check_against_reference(inputs, grad_out, label, ops=None):
    """The op on the inputs' device and dtype (ops=None: attention.stdeform_attn with autograd;
    else ops' two kernels called directly) gives the reference's forward and gradients."""
    dtype, device = inputs[0].dtype, inputs[0].device
    actual = op_outputs(inputs, grad_out) if ops is None else kernel_outputs(ops, inputs, grad_out)
    for name, a in zip(OUTPUTS, actual, strict=True):
        assert a.dtype == dtype and a.device == device, f"{label} {name}: {a.dtype} on {a.device}"
    expected = reference_outputs(inputs, grad_out, dtype)
    assert_outputs_close(actual, expected, TOLERANCE[dtype], f"{label} {dtype}")


# Name -> make_inputs changes of one level (2, 3, 4): sizes that leave nothing to compute.
EMPTY = {"Q=0": dict(Q=0), "K=0": dict(K=0), "N=0": dict(N=0), "D=0": dict(D=0)}


def check_empty(empty, device, ops=None):
    """Empty sizes give correctly shaped zeros, forward and gradients, on device, no crash."""
    ops = ops or torch.ops.visbench
    inputs = make_inputs([(2, 3, 4)], device=device, **EMPTY[empty])
    value, _, _, loc, weights = inputs
    out = ops.stdeform_attn(*inputs)
    N, _, M, D = value.shape
    assert out.shape == (N, loc.shape[1], M * D) and out.dtype == value.dtype
    assert out.device == value.device and not out.any()
    grads = ops.stdeform_attn_backward(random_grad_out(inputs), *inputs)
    for grad, like in zip(grads, (value, loc, weights), strict=True):
        assert grad.shape == like.shape and grad.dtype == like.dtype
        assert grad.device == like.device and not grad.any()


# ------------------------------------------------------------------------------ bad input table


def _other_device(device):
    return "cpu" if torch.device(device).type == "cuda" else "cuda"


# Name -> (change, what the ValueError says): change(valid inputs by name, device) returns the
# entries it replaces. The valid inputs: float32, levels (2, 3, 4) and (1, 2, 2).
BAD_INPUTS = {
    "value rank 3": (lambda a, d: {"value": a["value"][0]}, "value must be 4-D"),
    "shapes rank 1": (lambda a, d: {"shapes": a["shapes"].flatten()}, "shapes must be (L, 3)"),
    "shapes (L, 2)": (lambda a, d: {"shapes": a["shapes"][:, :2]}, "shapes must be (L, 3)"),
    "start rank 2": (lambda a, d: {"start": a["start"][None]}, "start must be 1-D"),
    "loc rank 5": (lambda a, d: {"loc": a["loc"][0]}, "loc must be 6-D"),
    "weights rank 4": (lambda a, d: {"weights": a["weights"][0]}, "weights must be 5-D"),
    "loc last dim 2": (lambda a, d: {"loc": a["loc"][..., :2].contiguous()}, "last dim of loc"),
    "N mismatch": (lambda a, d: {"loc": a["loc"][:1].contiguous()}, "loc batch size N"),
    "M mismatch": (lambda a, d: {"value": a["value"][:, :, :2].contiguous()}, "loc heads M"),
    "L mismatch (loc)": (
        lambda a, d: {"loc": a["loc"][:, :, :, :1].contiguous()},
        "loc levels L",
    ),
    "L mismatch (start)": (lambda a, d: {"start": a["start"][:1]}, "start must have L=2"),
    "K mismatch": (
        lambda a, d: {"weights": a["weights"][..., :2].contiguous()},
        "weights must be",
    ),
    "Q mismatch": (
        lambda a, d: {"weights": a["weights"][:, :2].contiguous()},
        "weights must be",
    ),
    "S != sum T*H*W": (lambda a, d: {"value": a["value"][:, 1:].contiguous()}, "value has S="),
    "wrong start offset": (
        lambda a, d: {"start": torch.tensor([0, 5], device=d)},
        "start[1] must be 24",
    ),
    "start offset by one": (lambda a, d: {"start": a["start"] + 1}, "start[0] must be 0"),
    "non-positive shape": (
        lambda a, d: {
            "shapes": torch.tensor([[2, 3, 4], [0, 2, 2]], device=d),
            "value": a["value"][:, :24].contiguous(),
        },
        "shapes[1] must be positive",
    ),
    "integer value": (lambda a, d: {"value": a["value"].long()}, "value must be a floating-point"),
    "integer loc": (lambda a, d: {"loc": a["loc"].int()}, "loc must be a floating-point"),
    "integer weights": (lambda a, d: {"weights": a["weights"].int()}, "weights must be a floating"),
    "mixed dtypes": (lambda a, d: {"loc": a["loc"].double()}, "must share one dtype"),
    "int32 shapes": (lambda a, d: {"shapes": a["shapes"].int()}, "shapes must be int64"),
    "int32 start": (lambda a, d: {"start": a["start"].int()}, "start must be int64"),
    "non-contiguous value": (
        lambda a, d: {"value": a["value"].transpose(2, 3).contiguous().transpose(2, 3)},
        "value must be contiguous",
    ),
    "non-contiguous loc": (
        lambda a, d: {"loc": a["loc"].transpose(0, 1).contiguous().transpose(0, 1)},
        "loc must be contiguous",
    ),
    "non-contiguous weights": (
        lambda a, d: {"weights": a["weights"].transpose(1, 4).contiguous().transpose(1, 4)},
        "weights must be contiguous",
    ),
    "value on another device": (
        lambda a, d: {"value": a["value"].to(_other_device(d))},
        "all tensors must be on one device",
    ),
    "loc on another device": (
        lambda a, d: {"loc": a["loc"].to(_other_device(d))},
        "all tensors must be on one device",
    ),
    "shapes on another device": (
        lambda a, d: {"shapes": a["shapes"].to(_other_device(d))},
        "all tensors must be on one device",
    ),
}

NAMES = ("value", "shapes", "start", "loc", "weights")


def valid_inputs(device):
    """The valid inputs BAD_INPUTS changes (float32, levels (2, 3, 4) and (1, 2, 2))."""
    return make_inputs([(2, 3, 4), (1, 2, 2)], dtype=torch.float32, device=device)


def bad_inputs(case, device):
    """The valid inputs on device with the case's change (skips a second-device case where only
    the CPU exists)."""
    if "another device" in case and not HAS_GPU:
        pytest.skip("needs a CUDA device")
    args = dict(zip(NAMES, valid_inputs(device), strict=True))
    change, _ = BAD_INPUTS[case]
    args.update(change(args, device))
    return [args[name] for name in NAMES]


# Name -> (change of a valid grad_out, what the backward's ValueError says).
BAD_GRAD_OUT = {
    "shape": (lambda g, d: g[..., :-1].contiguous(), "grad_out must be"),
    "dtype": (lambda g, d: g.double(), "grad_out dtype"),
    "non-contiguous": (
        lambda g, d: g.transpose(1, 2).contiguous().transpose(1, 2),
        "grad_out must be contiguous",
    ),
    "device": (lambda g, d: g.to(_other_device(d)), "grad_out must be on"),
}


# --------------------------------------------------------------------------- the device checks


def require_kernel(device):
    """The compiled kernel runs on device: the CPU kernel must have been built; the CUDA kernel
    is skipped where its build was turned off or impossible, and must have been built otherwise."""
    kind = torch.device(device).type
    info = attention.register_op()
    if kind == "cuda":
        if torch.version.cuda is None:
            pytest.skip("torch has no CUDA")
        if os.environ.get("VISBENCH_EXTENSION", "1") == "0":
            pytest.skip("extension disabled by VISBENCH_EXTENSION=0")
        if os.environ.get("VISBENCH_EXTENSION_CUDA", "") == "0":
            pytest.skip("CUDA build disabled by VISBENCH_EXTENSION_CUDA=0")
        if info.cuda_home is None and attention.extension.find_cuda_toolkit() is None:
            pytest.skip("no CUDA toolkit found (set CUDA_HOME)")
    assert attention.stdeform_impl(device) == f"{kind} kernel", info.notes


def gradcheck_inputs(device="cpu"):
    """float64 inputs with every pixel coordinate 0.2 to 0.8 from an integer, where the op is
    smooth: finite differences are exact up to eps."""
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
    return to((value, shapes, start, loc, weights), device)


# gradcheck's tolerances per device type (the CUDA backward sums with float64 atomics).
GRADCHECK_TOLERANCE = {"cpu": dict(atol=1e-7), "cuda": dict(atol=1e-6, rtol=1e-4)}


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


class DeviceChecks:
    """The op's checks on one device: a test file subclasses this with ``device`` set (TestCPU in
    tests/test_stdeform_op.py, TestCUDA in tests/test_stdeform_cuda.py)."""

    device = "cpu"

    @pytest.fixture(autouse=True)
    def kernel(self):
        require_kernel(self.device)  # cheap after the first call: registration happens once

    @pytest.mark.parametrize("dtype", DTYPES, ids=str)
    @pytest.mark.parametrize("case", CASES)
    def test_matches_reference(self, case, dtype):
        """Forward and the three gradients (autograd through the op) equal the reference's."""
        inputs, grad_out = case_inputs(case, dtype, self.device)
        check_against_reference(inputs, grad_out, f"{self.device} {case}")

    @settings(
        derandomize=True,
        max_examples=40,
        deadline=None,
        database=None,
        # the autouse `kernel` fixture holds no state an example could leak into the next
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(problem=random_problem(), dtype=st.sampled_from([torch.float64, torch.float32]))
    def test_matches_reference_random(self, problem, dtype):
        """Random shapes, levels and points (a fixed, derandomised set of examples)."""
        inputs = make_inputs(dtype=dtype, device=self.device, **problem)
        check_against_reference(inputs, random_grad_out(inputs), f"{self.device} {problem}")

    def test_t1_equals_bilinear_grid_sample(self):
        """With T = 1 and t = 0.5 the op is exactly 2-D multi-scale deformable attention."""
        levels = [(1, 7, 9), (1, 4, 5), (1, 2, 3)]
        value, shapes, start, loc, weights = make_inputs(levels, lo=-0.1, device=self.device)
        value, loc_xy, weights = (
            t.requires_grad_() for t in (value, loc[..., :2].clone(), weights)
        )
        full_loc = torch.cat([loc_xy, torch.full_like(loc_xy[..., :1], 0.5)], dim=-1)
        out = stdeform_attn(value, shapes, start, full_loc, weights)
        expected = msdeform_attn_2d(value, shapes, start, loc_xy, weights)
        grad_out = random_grad_out((value, shapes, start, full_loc, weights))
        grads = torch.autograd.grad(out, (value, loc_xy, weights), grad_out)
        expected_grads = torch.autograd.grad(expected, (value, loc_xy, weights), grad_out)
        assert_close(out, expected, 1e-10, "out")
        for name, a, b in zip(("value", "loc", "weights"), grads, expected_grads, strict=True):
            assert_close(a, b, 1e-10, name)

    def test_gradcheck(self):
        """Finite differences in float64 through the registered autograd."""
        value, shapes, start, loc, weights = gradcheck_inputs(self.device)
        leaves = [t.requires_grad_() for t in (value, loc, weights)]

        def fn(value, loc, weights):
            return stdeform_attn(value, shapes, start, loc, weights)

        tolerance = GRADCHECK_TOLERANCE[torch.device(self.device).type]
        assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, **tolerance)

    def test_double_backward_raises(self):
        """Gradients with create_graph=True work; differentiating them again raises a clear
        error (the backward op has no derivative), never silent zeros."""
        inputs = make_inputs([(3, 4, 5), (1, 2, 3)], lo=-0.1, hi=1.1, device=self.device)
        value, shapes, start, loc, weights = inputs
        leaves = [t.requires_grad_() for t in (value, loc, weights)]
        out = stdeform_attn(value, shapes, start, loc, weights)
        grad_out = random_grad_out(inputs, seed=2)
        grads = torch.autograd.grad(out, leaves, grad_out, create_graph=True)
        expected = reference_outputs(inputs, grad_out, torch.float64)[1:]
        for name, a, b in zip(("value", "loc", "weights"), grads, expected, strict=True):
            assert_close(a, b, TOLERANCE[torch.float64], name)
        penalty = sum(g.square().sum() for g in grads)
        with pytest.raises(RuntimeError, match=r"does not support double backward.*'reference'"):
            penalty.backward()

    def test_opcheck(self):
        """torch.library.opcheck: schema, autograd registration, fake kernel, AOT dispatch."""
        inputs = make_inputs([(2, 3, 4), (1, 2, 2)], D=8, dtype=torch.float32, device=self.device)
        value, shapes, start, loc, weights = inputs
        args = (
            value.requires_grad_(),
            shapes,
            start,
            loc.requires_grad_(),
            weights.requires_grad_(),
        )
        torch.library.opcheck(torch.ops.visbench.stdeform_attn.default, args)
        detached = [t.detach() for t in args]
        torch.library.opcheck(
            torch.ops.visbench.stdeform_attn_backward.default, (random_grad_out(inputs), *detached)
        )

    @pytest.mark.parametrize("empty", EMPTY)
    def test_empty(self, empty):
        """Empty sizes give correctly shaped zeros (forward and gradients), no crash."""
        check_empty(empty, self.device)

    @pytest.mark.parametrize("impl", ["op", "reference"])
    @pytest.mark.parametrize("case", BAD_INPUTS)
    def test_bad_input_raises_value_error(self, case, impl):
        """The C++ (impl="op") and Python (impl="reference") checks raise the same ValueError
        before any kernel runs, in the forward and in the backward."""
        inputs = bad_inputs(case, self.device)
        message = re.escape(BAD_INPUTS[case][1])
        with pytest.raises(ValueError, match=message):
            stdeform_attn(*inputs, impl=impl)
        backward = (
            torch.ops.visbench.stdeform_attn_backward
            if impl == "op"
            else stdeform_attn_reference_backward
        )
        grad_out = random_grad_out(valid_inputs(self.device))
        with pytest.raises(ValueError, match=message):
            backward(grad_out, *inputs)

    @pytest.mark.parametrize("impl", ["op", "reference"])
    @pytest.mark.parametrize("case", BAD_GRAD_OUT)
    def test_bad_grad_out_raises_value_error(self, case, impl):
        """The backward's C++ and Python checks of grad_out raise the same ValueError."""
        if case == "device" and not HAS_GPU:
            pytest.skip("needs a CUDA device")
        inputs = valid_inputs(self.device)
        change, message = BAD_GRAD_OUT[case]
        grad_out = change(random_grad_out(inputs), self.device)
        backward = (
            torch.ops.visbench.stdeform_attn_backward
            if impl == "op"
            else stdeform_attn_reference_backward
        )
        with pytest.raises(ValueError, match=re.escape(message)):
            backward(grad_out, *inputs)
