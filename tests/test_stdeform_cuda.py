"""Tests of the CUDA kernel of ``visbench::stdeform_attn`` (csrc/stdeform_attn_cuda.cu).

``test_cuda_kernel_compiles`` runs wherever torch has CUDA and a CUDA toolkit is found: no GPU is
needed to compile. Every other test needs a GPU (marked ``gpu``) and compares the kernel with the
pure-PyTorch reference (float64, on the CPU) on inputs that hit the special cases: several levels,
N > 1, points outside the volume, on frame centres (4-corner path), on pixel centres (one-sided
gradients) and pixel edges, T = 1, D not a multiple of 32, D > 128 (two passes over the channels),
L*K > 32 (two batches of points).
The test with more than 2**31 elements comes last: an illegal address there would poison the
CUDA context for every test after it. Needs only torch and pytest.

Where no GPU exists, the kernels' device code (csrc/stdeform_attn_cuda_kernels.cuh) still runs:
tests/cuda_emulation/ compiles it for the CPU with one host thread per lane, and the
``test_emulated_*`` tests hold it to the same reference and CPU-kernel checks. That covers its
arithmetic, indexing, lane striding and warp reductions, not the GPU's memory model, nvcc's code
or the launch on a real device.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attention import register_op, stdeform_attn_reference, stdeform_attn_reference_backward
from attention.extension import csrc_dir, find_cuda_toolkit, load_extension

HAS_GPU = torch.cuda.is_available()


def needs_gpu(test):
    """Mark a test gpu and skip it where no CUDA device is visible."""
    return pytest.mark.gpu(pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA device")(test))


# Name -> (levels (T, H, W), N, Q, M, D, K). T is a power of two so frame centres are exact.
CASES = {
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
}
# dtype -> relative tolerance (rtol, and atol as a fraction of the expected tensor's largest entry).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 3e-2}


def _cuda_build_skip_reason() -> str | None:
    if torch.version.cuda is None:
        return "torch has no CUDA"
    if find_cuda_toolkit() is None:
        return "no CUDA toolkit found (set CUDA_HOME)"
    if os.environ.get("VISBENCH_EXTENSION", "1") == "0":
        return "extension disabled by VISBENCH_EXTENSION=0"
    if os.environ.get("VISBENCH_EXTENSION_CUDA", "1") == "0":
        return "CUDA build disabled by VISBENCH_EXTENSION_CUDA=0"
    return None


COMPILE_SCRIPT = """
import json
import torch
import attention
info = attention.register_op()
ops = ("visbench::stdeform_attn", "visbench::stdeform_attn_backward")
print(json.dumps({
    "cuda_kernel": info.cuda_kernel,
    "notes": info.notes,
    "cuda_dispatch": [torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA") for op in ops],
}))
"""


def test_cuda_kernel_compiles():
    """The CUDA sources compile and register a CUDA kernel for both ops (no GPU needed: a fresh
    process with VISBENCH_EXTENSION_CUDA=1, which builds them without a GPU too)."""
    reason = _cuda_build_skip_reason()
    if reason:
        pytest.skip(reason)
    proc = subprocess.run(
        [sys.executable, "-c", COMPILE_SCRIPT],
        env=dict(os.environ, VISBENCH_EXTENSION_CUDA="1"),
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["cuda_kernel"], "CUDA kernel not built: " + "; ".join(result["notes"])
    assert result["cuda_dispatch"] == [True, True]


@pytest.fixture(scope="module")
def ops():
    """torch.ops.visbench with the compiled CUDA kernel (fails, not skips, if the build failed)."""
    reason = _cuda_build_skip_reason()
    if reason:
        pytest.skip(f"CUDA kernel not built: {reason}")
    info = register_op()
    if not info.cuda_kernel:
        pytest.fail("CUDA kernel not built: " + "; ".join(info.notes))
    return torch.ops.visbench


def make_inputs(levels, N, Q, M, D, K, seed=0, special=True, centred=False):
    """Random float64 CPU inputs (value, shapes, start, loc, weights).

    With ``special``, points 0-3 of every level are placed (K >= 4): 0 on a frame centre, 1 on a
    frame centre and pixel centres in x/y (where the size is a power of two, so exactly), 2 on
    pixel edges in x/y, 3 with one coordinate far outside; pixel coordinate -1 and size are among
    the centres drawn. The other points are uniform in [-0.15, 1.15]^3 (some outside), away from
    integer pixel coordinates.
    With ``centred``, every coordinate of every point is a pixel/frame centre (i + 0.5) / size,
    i in [-1, size], for any size: inexact in floating point unless size is a power of two.
    """
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(levels, dtype=torch.int64)  # (L, 3)
    sizes = shapes.prod(dim=1)
    start = torch.cumsum(sizes, 0) - sizes  # (L,)
    S, L = int(sizes.sum()), len(levels)
    value = torch.randn(N, S, M, D, generator=g, dtype=torch.float64)
    loc = torch.rand(N, Q, M, L, K, 3, generator=g, dtype=torch.float64) * 1.3 - 0.15
    weights = torch.randn(N, Q, M, L, K, generator=g, dtype=torch.float64)

    # Random points stay >= 1e-4 pixel away from integer pixel coordinates (the gradient's kinks),
    # where float32 rounding could take the other one-sided derivative than the float64 reference.
    for level, (T, H, W) in enumerate(levels):
        for axis, size in enumerate((W, H, T)):
            coord = loc[:, :, :, level, :, axis]  # view
            pixel = coord * size - 0.5
            coord[(pixel - pixel.round()).abs() < 1e-4] += 3e-4 / size

    def centres(size):  # pixel coordinate i in [-1, size]
        return (torch.randint(-1, size + 1, (N, Q, M), generator=g) + 0.5) / size

    def edges(size):  # pixel coordinate i - 0.5
        return torch.randint(0, size + 1, (N, Q, M), generator=g) / size

    if centred:
        for level, (T, H, W) in enumerate(levels):
            for axis, size in enumerate((W, H, T)):
                i = torch.randint(-1, size + 1, (N, Q, M, K), generator=g)
                loc[:, :, :, level, :, axis] = (i + 0.5) / size
    elif special:
        for level, (T, H, W) in enumerate(levels):
            assert T & (T - 1) == 0 and K >= 4
            pts = loc[:, :, :, level]  # (N, Q, M, K, 3) view
            pts[..., 0, 2] = centres(T)
            pts[..., 1, 2] = centres(T)
            for axis, size in ((0, W), (1, H)):
                if size & (size - 1) == 0:
                    pts[..., 1, axis] = centres(size)
                pts[..., 2, axis] = edges(size)
            pts[..., 3, level % 3] = -0.6 if level % 2 else 1.7
    return value, shapes, start, loc, weights


def randn(*shape, seed, dtype=torch.float64, device="cpu"):
    """Seeded standard normal (drawn in float64 on the CPU, then cast and moved)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(device, dtype)


def to(tensors, device, dtype=None):
    """Move to device; cast floating tensors to dtype."""
    return tuple(
        t.to(device=device, dtype=dtype if dtype and t.is_floating_point() else t.dtype)
        for t in tensors
    )


def reference(inputs, grad_out):
    """float64 CPU reference (out, grad_value, grad_loc, grad_weights) on the given inputs."""
    inputs = tuple(t.contiguous() for t in to(inputs, "cpu", torch.float64))
    grad_out = grad_out.to("cpu", torch.float64)
    return (stdeform_attn_reference(*inputs), *stdeform_attn_reference_backward(grad_out, *inputs))


def where_mismatch(actual, expected, rtol, atol, names):
    """Short description of the mismatching entries: counts per value of each named leading dim."""
    bad = ~torch.isclose(actual, expected, rtol=rtol, atol=atol)
    if bad.dim() == 0 or not bad.any():
        return ""
    idx = bad.nonzero()
    parts = []
    for dim, name in enumerate(names[: idx.shape[1]]):
        values, counts = idx[:, dim].unique(return_counts=True)
        shown = [f"{v}x{c}" for v, c in zip(values.tolist(), counts.tolist(), strict=True)]
        parts.append(f"{name}:" + ",".join(shown[:12]) + (",..." if len(shown) > 12 else ""))
    return f"{int(bad.sum())} of {bad.numel()} mismatch; by index " + " ".join(parts)


DIMS = {
    "out": ("n", "q", "md"),
    "grad_value": ("n", "s", "m", "d"),
    "grad_loc": ("n", "q", "m", "l", "k", "xyt"),
    "grad_weights": ("n", "q", "m", "l", "k"),
}


def check(actual, expected, tol, label):
    """Compare each named tensor with expected at tol (atol relative to its largest entry)."""
    for name, a, e in zip(DIMS, actual, expected, strict=True):
        a, e = a.detach().cpu().double(), e.detach().cpu().double()
        assert a.shape == e.shape, f"{label} {name}: shape {tuple(a.shape)} != {tuple(e.shape)}"
        atol = tol * max(e.abs().max().item() if e.numel() else 0.0, 1e-3)
        detail = where_mismatch(a, e, tol, atol, DIMS[name])
        torch.testing.assert_close(
            a, e, rtol=tol, atol=atol, msg=lambda m, n=name, d=detail: f"{label} {n}: {d}\n{m}"
        )


def run_kernel(ops, inputs, grad_out):
    """(out, grad_value, grad_loc, grad_weights) of ``ops.stdeform_attn`` and
    ``ops.stdeform_attn_backward`` (torch.ops.visbench or the emulation) on the inputs' device."""
    out = ops.stdeform_attn(*inputs)
    grads = ops.stdeform_attn_backward(grad_out, *inputs)
    if out.is_cuda:
        torch.cuda.synchronize()  # a launch error surfaces in this test
    return (out, *grads)


def misaligned(t):
    """A contiguous copy of t whose data starts one element past an aligned address."""
    copy = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)[1:].view(t.shape)
    return copy.copy_(t)


def check_against_reference(ops, device, case, dtype, misalign=False):
    """The kernels of `ops` (see run_kernel) on `device` give the float64 reference's forward and
    gradients. ``misalign``: value and grad_out start at an odd element, so an even D cannot take
    the two-channels-per-lane path."""
    levels, N, Q, M, D, K = CASES[case]
    inputs = to(make_inputs(levels, N, Q, M, D, K, seed=len(case)), device, dtype)
    grad_out = randn(N, Q, M * D, seed=len(case) + 100, dtype=dtype, device=device)
    if misalign:
        inputs, grad_out = (misaligned(inputs[0]), *inputs[1:]), misaligned(grad_out)
    expected = reference(inputs, grad_out)  # on the dtype-rounded inputs, in float64
    actual = run_kernel(ops, inputs, grad_out)
    for a in actual:
        assert a.dtype == dtype and a.device.type == torch.device(device).type
    check(actual, expected, TOLERANCE[dtype], f"{case} {dtype}")


def check_against_cpu_kernel(ops, device, dtype, points):
    """The kernels of `ops` (see run_kernel) on `device` agree with the CPU kernel (or the
    reference where none was built).

    "centred": all points on pixel centres of sizes like 5 and 7, whose pixel coordinates round
    to just below or above an integer: both kernels must round as grid_sample does (no FMA) to
    take the same side of floor() and so the same one-sided gradient.
    """
    register_op()
    levels, N, Q, M, D, K = CASES["3 levels D=48"]
    inputs = make_inputs(levels, N, Q, M, D, K, seed=3, centred=points == "centred")
    inputs = to(inputs, "cpu", dtype)
    grad_out = randn(N, Q, M * D, seed=4, dtype=dtype)
    on_cpu = run_kernel(torch.ops.visbench, inputs, grad_out)
    actual = run_kernel(ops, to(inputs, device), grad_out.to(device))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    check(actual, on_cpu, tol, f"{device} vs cpu kernel {dtype} {points}")


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("case", list(CASES))
@needs_gpu
def test_matches_reference(ops, case, dtype):
    """Forward and all three gradients equal the float64 reference on the same (rounded) inputs."""
    check_against_reference(ops, "cuda", case, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@needs_gpu
def test_misaligned_matches_reference(ops, dtype):
    """Tensors not aligned for paired channels take the one-channel-per-lane kernels."""
    check_against_reference(ops, "cuda", "3 levels D=48", dtype, misalign=True)


@pytest.mark.parametrize("points", ["special", "centred"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@needs_gpu
def test_matches_cpu_kernel(ops, dtype, points):
    """The CUDA kernel agrees with the CPU kernel, on pixel centres too (see the helper)."""
    check_against_cpu_kernel(ops, "cuda", dtype, points)


def check_empty(ops, device, empty):
    """The kernels of `ops` on N = 0 or Q = 0 inputs give correctly shaped zeros on `device`."""
    N, Q = (0, 3) if empty == "N=0" else (2, 0)
    value, shapes, start, loc, weights = to(
        make_inputs([(2, 3, 4)], N, Q, 2, 5, 2, special=False), device
    )
    out = ops.stdeform_attn(value, shapes, start, loc, weights)
    assert out.shape == (N, Q, 10) and out.dtype == value.dtype
    grad_out = torch.zeros(N, Q, 10, dtype=value.dtype, device=device)
    grads = ops.stdeform_attn_backward(grad_out, value, shapes, start, loc, weights)
    for g, t in zip(grads, (value, loc, weights), strict=True):
        assert g.shape == t.shape and g.dtype == t.dtype and g.device == t.device
        assert not g.any()


@pytest.fixture(scope="module")
def emulated():
    """The kernels' device code compiled for the CPU (tests/cuda_emulation/), with the op's
    names (stdeform_attn, stdeform_attn_backward) as torch.ops.visbench has them.

    Built wherever the op's own CPU kernel builds (a C++ compiler, VISBENCH_EXTENSION != 0).
    """
    info = load_extension()
    if not info.cpu_kernel:
        pytest.skip("C++ extensions not built: " + "; ".join(info.notes))
    from torch.utils.cpp_extension import load

    source = Path(__file__).parent / "cuda_emulation" / "stdeform_attn_cuda_emulated.cpp"
    return load(
        name="visbench_stdeform_cuda_emulated",
        sources=[str(source)],
        extra_include_paths=[str(csrc_dir())],
        extra_cflags=["-O2", "-std=c++20", "-ffp-contract=off", "-pthread"],
        extra_ldflags=["-pthread"],
    )


# The contended-atomics case needs ~3 million emulated warp shuffles (minutes); its point, atomics
# racing on a GPU, is not something the emulation can show.
EMULATED_CASES = [case for case in CASES if case != "600 blocks, contended atomics"]


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("case", EMULATED_CASES)
def test_emulated_device_code_matches_reference(emulated, case, dtype):
    """The device code, one host thread per lane, gives the reference's forward and gradients."""
    check_against_reference(emulated, "cpu", case, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_emulated_misaligned_matches_reference(emulated, dtype):
    """The one-channel-per-lane path for an even D, taken when value is not aligned for pairs."""
    check_against_reference(emulated, "cpu", "3 levels D=48", dtype, misalign=True)


@pytest.mark.parametrize("points", ["special", "centred"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_emulated_device_code_matches_cpu_kernel(emulated, dtype, points):
    """The device code rounds pixel coordinates as the CPU kernel does (same one-sided gradients)."""
    check_against_cpu_kernel(emulated, "cpu", dtype, points)


@pytest.mark.parametrize("empty", ["N=0", "Q=0"])
def test_emulated_empty(emulated, empty):
    """The host side returns correctly shaped zeros for N*Q*M == 0."""
    check_empty(emulated, "cpu", empty)


@needs_gpu
def test_gradcheck(ops):
    """float64 gradcheck through autograd (register_autograd -> the CUDA backward op)."""
    value, shapes, start, loc, weights = to(
        make_inputs([(2, 3, 4), (1, 2, 2)], 1, 2, 2, 3, 2, seed=5, special=False), "cuda"
    )
    leaves = [t.clone().requires_grad_() for t in (value, loc, weights)]
    fn = lambda v, p, w: ops.stdeform_attn(v, shapes, start, p, w)
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-4)


@needs_gpu
def test_opcheck(ops):
    """torch.library.opcheck (schema, autograd registration, fake kernel, AOT) on CUDA inputs."""
    value, shapes, start, loc, weights = to(
        make_inputs([(2, 4, 4), (2, 2, 3)], 2, 3, 2, 8, 4, seed=6), "cuda", torch.float32
    )
    args = (value.requires_grad_(), shapes, start, loc.requires_grad_(), weights.requires_grad_())
    torch.library.opcheck(ops.stdeform_attn.default, args)
    grad_out = randn(2, 3, 16, seed=7, dtype=torch.float32, device="cuda")
    torch.library.opcheck(
        ops.stdeform_attn_backward.default, (grad_out, *[a.detach() for a in args])
    )


@pytest.mark.parametrize("empty", ["N=0", "Q=0"])
@needs_gpu
def test_empty(ops, empty):
    """N*Q*M == 0 launches nothing and returns correctly shaped zeros."""
    check_empty(ops, "cuda", empty)


@needs_gpu
def test_runs_on_current_stream(ops):
    """Kernels run on the current stream: a side stream must not wait for a busy default stream."""
    levels, N, Q, M, D, K = CASES["3 levels D=48"]
    inputs = to(make_inputs(levels, N, Q, M, D, K, seed=8), "cuda", torch.float32)
    grad_out = randn(N, Q, M * D, seed=9, dtype=torch.float32, device="cuda")
    expected = run_kernel(ops, inputs, grad_out)
    side = torch.cuda.Stream()
    zero_w = (*inputs[:4], torch.zeros_like(inputs[4]))
    with torch.cuda.stream(side):  # warm the side stream's pool: its cached blocks now hold zeros
        zeros = (
            ops.stdeform_attn(*zero_w),
            *ops.stdeform_attn_backward(torch.zeros_like(grad_out), *zero_w),
        )
        zeros = [t.clone() for t in zeros]
    del zeros
    side.synchronize()
    torch.cuda._sleep(200_000_000)  # the default stream is busy for ~0.1 s
    with torch.cuda.stream(side):
        results = (ops.stdeform_attn(*inputs), *ops.stdeform_attn_backward(grad_out, *inputs))
        copies = [t.clone() for t in results]  # on the side stream, right behind the kernels
    side.synchronize()  # not the default stream: had the kernels gone there, copies hold zeros
    check(copies, expected, 1e-5, "side stream")
    torch.cuda.synchronize()


BAD_INPUTS = {  # name -> (what the error names, change to (value, shapes, start, loc, weights))
    "loc on cpu": ("device", lambda v, s, o, p, w: (v, s, o, p.cpu(), w)),
    "shapes on cpu": ("device", lambda v, s, o, p, w: (v, s.cpu(), o, p, w)),
    "non-contiguous value": (
        "contiguous",
        lambda v, s, o, p, w: (v.mT.contiguous().mT, s, o, p, w),
    ),
    "float32 loc": ("dtype", lambda v, s, o, p, w: (v, s, o, p.float(), w)),
    "wrong start": ("start", lambda v, s, o, p, w: (v, s, o + 1, p, w)),
}


@pytest.mark.parametrize("bad", list(BAD_INPUTS))
@needs_gpu
def test_bad_inputs_raise_value_error(ops, bad):
    """Mixed devices, non-contiguous inputs, dtype mismatches: ValueError before any launch."""
    inputs = to(make_inputs([(2, 3, 4), (2, 1, 2)], 1, 2, 2, 4, 4), "cuda")
    grad_out = randn(1, 2, 8, seed=10, device="cuda")
    match, change = BAD_INPUTS[bad]
    with pytest.raises(ValueError, match=match):
        ops.stdeform_attn(*change(*inputs))
    with pytest.raises(ValueError, match=match):
        ops.stdeform_attn_backward(grad_out, *change(*inputs))
    with pytest.raises(ValueError, match="grad_out"):  # non-contiguous (N, Q, M*D)
        ops.stdeform_attn_backward(grad_out.mT.contiguous().mT, *inputs)
    torch.cuda.synchronize()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device(ops):
    """The device guard: tensors on cuda:1 while cuda:0 is current."""
    levels, N, Q, M, D, K = CASES["D=5"]
    inputs = make_inputs(levels, N, Q, M, D, K, seed=9)
    grad_out = randn(N, Q, M * D, seed=12)
    with torch.cuda.device(0):
        actual = run_kernel(ops, to(inputs, "cuda:1"), grad_out.to("cuda:1"))
    assert all(a.device == torch.device("cuda:1") for a in actual)
    check(actual, reference(inputs, grad_out), 1e-10, "cuda:1")


@needs_gpu
def test_zz_offsets_past_2_31(ops):
    """value with > 2**31 elements: level 1 lies wholly past element 2**31 (int32 offsets wrap).

    value (1, S, 2, 32) float32 (8.6 GB, plus 8.6 GB for grad_value). Level 0 (1, 4096, 8192) is
    the constant 3 and every level-0 point samples its last 2x2 pixels; level 1 (2, 16, 16)
    starts at element 2**31 exactly and holds random values: it is checked against the reference
    on the level-1 slice alone, level 0 by hand.
    """
    M, D, Q, K = 2, 32, 4, 4
    H0, W0 = 4096, 8192
    s1 = H0 * W0  # start of level 1
    S = s1 + 2 * 16 * 16
    assert s1 * M * D == 2**31
    if torch.cuda.mem_get_info()[0] < 20 * 2**30:
        pytest.skip("needs 20 GiB of free GPU memory")
    g = torch.Generator().manual_seed(11)
    shapes = torch.tensor([(1, H0, W0), (2, 16, 16)], dtype=torch.int64)
    start = torch.tensor([0, s1], dtype=torch.int64)
    tail = torch.randn(1, S - s1, M, D, generator=g)  # level 1
    loc = torch.rand(1, Q, M, 2, K, 3, generator=g)
    loc[:, :, :, 0, :, 0] = (W0 - 1.25) / W0  # pixel x W0 - 1.75: last 2 columns (0.75, 0.25)
    loc[:, :, :, 0, :, 1] = (H0 - 1.0) / H0  # pixel y H0 - 1.5: last 2 rows (0.5 each)
    loc[:, :, :, 0, :, 2] = 0.5  # frame centre of T = 1: the t1 corner lies outside
    loc[:, :, :, 1, 0, 2] = 0.25  # a frame centre of level 1 (pixel t 0)
    weights = torch.rand(1, Q, M, 2, K, generator=g)
    # Multiples of 1/8: every level-0 sum is exact, so its x/y gradients cancel to exactly 0
    # (float32 rounding there would be amplified by H0, W0).
    grad_out = torch.randint(-16, 17, (1, Q, M * D), generator=g) / 8

    value = torch.full((1, S, M, D), 3.0, device="cuda")
    value[:, s1:] = tail.cuda()
    inputs = (value, *to((shapes, start, loc, weights), "cuda"))
    out, grad_value, grad_loc, grad_weights = run_kernel(ops, inputs, grad_out.cuda())
    del value, inputs

    # Level 1 alone, by the reference; level 0 by hand: its sample is 3 wherever it is taken.
    level1 = (tail, shapes[1:], start[:1] * 0, loc[:, :, :, 1:], weights[:, :, :, 1:])
    ref_out, ref_gv, ref_gl, ref_gw = reference(level1, grad_out)
    a0 = weights[:, :, :, 0].double()  # (1, Q, M, K)
    go = grad_out.double().reshape(1, Q, M, D)
    exp_out = ref_out + (3 * a0.sum(-1, keepdim=True) * go.new_ones(D)).reshape(1, Q, M * D)
    exp_gl0 = torch.zeros(1, Q, M, K, 3, dtype=torch.float64)
    exp_gl0[..., 2] = -3 * a0 * go.sum(-1, keepdim=True)  # one-sided d/dt: (0 - 3) per unit t
    exp_gw0 = (3 * go.sum(-1, keepdim=True)).expand(1, Q, M, K)
    exp_gl = torch.cat([exp_gl0[:, :, :, None], ref_gl], dim=3)
    exp_gw = torch.cat([exp_gw0[:, :, :, None], ref_gw], dim=3)
    check(
        (out, grad_value[:, s1:], grad_loc, grad_weights),
        (exp_out, ref_gv, exp_gl, exp_gw),
        1e-5,
        "2**31",
    )

    # grad_value of level 0: only the last 2x2 pixels, weights (0.5 x (0.75, 0.25)).
    grad0 = grad_value[0, :s1].view(H0, W0, M, D)
    corner = torch.tensor([[0.375, 0.125], [0.375, 0.125]], dtype=torch.float64)  # (y, x)
    G = (a0.sum(-1, keepdim=True) * go).sum(dim=1)[0]  # (M, D): sum over q and k of a * g
    exp_corner = corner[:, :, None, None] * G
    torch.testing.assert_close(
        grad0[H0 - 2 :, W0 - 2 :].double().cpu(), exp_corner, rtol=1e-5, atol=1e-5
    )
    grad0[H0 - 2 :, W0 - 2 :] = 0
    low, high = torch.aminmax(grad0)
    assert low.item() == 0 and high.item() == 0, "grad_value of level 0 away from the points"
    del grad_value, grad0
    torch.cuda.empty_cache()
