"""Tests of the CUDA kernel of ``visbench::stdeform_attn`` (csrc/stdeform_attn_cuda.cu).

``test_cuda_kernel_compiles`` runs wherever torch has CUDA and a CUDA toolkit is found: no GPU is
needed to compile. Every other test needs a GPU (marked ``gpu``): ``TestCUDA`` runs
tests/op_toolkit.py's DeviceChecks on the CUDA kernel (forward and all three gradients against
the reference on the special points, every dtype, gradcheck, opcheck, empty sizes, the input
checks, mixed devices), and the tests below it what only the CUDA kernel has: tensors not aligned
for two channels per lane, agreement with the CPU kernel on pixel centres, the current stream, a
second device, more than 2**31 elements. The test with more than 2**31 elements comes last: an
illegal address there would poison the CUDA context for every test after it. Needs only torch,
pytest and hypothesis.

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

import attention
from attention.extension import content_key, csrc_dir, load_extension, source_files
from tests.op_toolkit import (
    CASES,
    DTYPES,
    EMPTY,
    GPU_MARKS,
    DeviceChecks,
    assert_outputs_close,
    case_inputs,
    check_against_reference,
    check_empty,
    kernel_outputs,
    make_inputs,
    needs_gpu,
    random_grad_out,
    reference_outputs,
    require_kernel,
    to,
)


def _cuda_build_skip_reason() -> str | None:
    if torch.version.cuda is None:
        return "torch has no CUDA"
    if attention.extension.find_cuda_toolkit() is None:
        return "no CUDA toolkit found (set CUDA_HOME)"
    if os.environ.get("VISBENCH_EXTENSION", "1") == "0":
        return "extension disabled by VISBENCH_EXTENSION=0"
    if os.environ.get("VISBENCH_EXTENSION_CUDA", "") == "0":
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
    require_kernel("cuda")
    return torch.ops.visbench


class TestCUDA(DeviceChecks):
    device = "cuda"
    pytestmark = list(GPU_MARKS)


def misaligned(t):
    """A contiguous copy of t whose data starts one element past an aligned address."""
    copy = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)[1:].view(t.shape)
    return copy.copy_(t)


def check_misaligned(ops, device, dtype):
    """The kernels of `ops` with value and grad_out starting at an odd element, so an even D
    cannot take the two-channels-per-lane path, give the reference's outputs."""
    inputs, grad_out = case_inputs("3 levels D=48", dtype, device)
    inputs, grad_out = (misaligned(inputs[0]), *inputs[1:]), misaligned(grad_out)
    check_against_reference(inputs, grad_out, f"{device} misaligned", ops=ops)


def check_against_cpu_kernel(ops, device, dtype, points):
    """The kernels of `ops` on `device` agree with the CPU kernel (or the reference where none was
    built).

    "centred": all points on pixel centres of sizes like 5 and 7, whose pixel coordinates round
    to just below or above an integer: both kernels must round as grid_sample does (no FMA) to
    take the same side of floor() and so the same one-sided gradient.
    """
    case = dict(CASES["3 levels D=48"], seed=3, dtype=dtype)
    if points == "centred":
        case |= dict(placed=False, centred=True)
    inputs = make_inputs(**case)
    grad_out = random_grad_out(inputs, seed=4)
    on_cpu = kernel_outputs(torch.ops.visbench, inputs, grad_out)
    actual = kernel_outputs(ops, to(inputs, device), grad_out.to(device))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert_outputs_close(actual, on_cpu, tol, f"{device} vs cpu kernel {dtype} {points}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@needs_gpu
def test_misaligned_matches_reference(ops, dtype):
    """Tensors not aligned for paired channels take the one-channel-per-lane kernels."""
    check_misaligned(ops, "cuda", dtype)


@pytest.mark.parametrize("points", ["special", "centred"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@needs_gpu
def test_matches_cpu_kernel(ops, dtype, points):
    """The CUDA kernel agrees with the CPU kernel, on pixel centres too (see the helper)."""
    check_against_cpu_kernel(ops, "cuda", dtype, points)


@pytest.fixture(scope="module")
def emulated():
    """The kernels' device code compiled for the CPU (tests/cuda_emulation/), with the op's
    names (stdeform_attn, stdeform_attn_backward) as torch.ops.visbench has them.

    Built wherever the op's own CPU kernel builds (a C++ compiler, VISBENCH_EXTENSION != 0),
    under a name keyed by its sources, flags and torch's version (see attention/extension.py).
    """
    info = load_extension()
    if not info.cpu_kernel:
        pytest.skip("C++ extensions not built: " + "; ".join(info.notes))
    from torch.utils.cpp_extension import load

    source = Path(__file__).parent / "cuda_emulation" / "stdeform_attn_cuda_emulated.cpp"
    cflags = ["-O2", "-std=c++20", "-ffp-contract=off", "-pthread"]
    key = content_key([source, *source_files()], " ".join(cflags), torch.__version__)
    return load(
        name=f"visbench_stdeform_cuda_emulated_{key}",
        sources=[str(source)],
        extra_include_paths=[str(csrc_dir())],
        extra_cflags=cflags,
        extra_ldflags=["-pthread"],
    )


# The device code's paths: D not a multiple of 32, D > 128 (two passes), L*K > 32 (two batches),
# T = 1. The contended-atomics case needs ~3 million emulated warp shuffles (minutes); its point,
# atomics racing on a GPU, is not something the emulation can show.
EMULATED_CASES = ["3 levels D=48", "T=1 D=32", "D=160 two passes", "D=5", "L*K=40 two batches"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", EMULATED_CASES)
def test_emulated_device_code_matches_reference(emulated, case, dtype):
    """The device code, one host thread per lane, gives the reference's forward and gradients."""
    inputs, grad_out = case_inputs(case, dtype, "cpu")
    check_against_reference(inputs, grad_out, f"emulated {case}", ops=emulated)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_emulated_misaligned_matches_reference(emulated, dtype):
    """The one-channel-per-lane path for an even D, taken when value is not aligned for pairs."""
    check_misaligned(emulated, "cpu", dtype)


@pytest.mark.parametrize("points", ["special", "centred"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_emulated_device_code_matches_cpu_kernel(emulated, dtype, points):
    """The device code rounds pixel coordinates as the CPU kernel does (same one-sided gradients)."""
    attention.register_op()
    check_against_cpu_kernel(emulated, "cpu", dtype, points)


@pytest.mark.parametrize("empty", EMPTY)
def test_emulated_empty(emulated, empty):
    """The host side returns correctly shaped zeros for empty sizes."""
    check_empty(empty, "cpu", ops=emulated)


@needs_gpu
def test_runs_on_current_stream(ops):
    """Kernels run on the current stream: a side stream must not wait for a busy default stream."""
    inputs = make_inputs(
        **CASES["3 levels D=48"] | dict(seed=8, dtype=torch.float32, device="cuda")
    )
    grad_out = random_grad_out(inputs, seed=9)
    expected = kernel_outputs(ops, inputs, grad_out)
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
    assert_outputs_close(copies, expected, 1e-5, "side stream")
    torch.cuda.synchronize()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device(ops):
    """The device guard: tensors on cuda:1 while cuda:0 is current."""
    inputs = make_inputs(**CASES["D=5"] | dict(seed=9))
    grad_out = random_grad_out(inputs, seed=12)
    with torch.cuda.device(0):
        actual = kernel_outputs(ops, to(inputs, "cuda:1"), grad_out.to("cuda:1"))
    assert all(a.device == torch.device("cuda:1") for a in actual)
    expected = reference_outputs(inputs, grad_out, torch.float64)
    assert_outputs_close(actual, expected, 1e-10, "cuda:1")


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
    out, grad_value, grad_loc, grad_weights = kernel_outputs(ops, inputs, grad_out.cuda())
    del value, inputs

    # Level 1 alone, by the reference; level 0 by hand: its sample is 3 wherever it is taken.
    level1 = (tail, shapes[1:], start[:1] * 0, loc[:, :, :, 1:], weights[:, :, :, 1:])
    ref_out, ref_gv, ref_gl, ref_gw = reference_outputs(level1, grad_out, torch.float64)
    a0 = weights[:, :, :, 0].double()  # (1, Q, M, K)
    go = grad_out.double().reshape(1, Q, M, D)
    exp_out = ref_out + (3 * a0.sum(-1, keepdim=True) * go.new_ones(D)).reshape(1, Q, M * D)
    exp_gl0 = torch.zeros(1, Q, M, K, 3, dtype=torch.float64)
    exp_gl0[..., 2] = -3 * a0 * go.sum(-1, keepdim=True)  # one-sided d/dt: (0 - 3) per unit t
    exp_gw0 = (3 * go.sum(-1, keepdim=True)).expand(1, Q, M, K)
    exp_gl = torch.cat([exp_gl0[:, :, :, None], ref_gl], dim=3)
    exp_gw = torch.cat([exp_gw0[:, :, :, None], ref_gw], dim=3)
    assert_outputs_close(
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
