"""Tests of ``visbench::stdeform_attn`` on the CPU (csrc/stdeform_attn_cpu.cpp) and of the op's
machinery.

``TestCPU`` runs tests/op_toolkit.py's DeviceChecks on the CPU kernel: forward and all three
gradients against the pure-PyTorch reference (5-D ``F.grid_sample``) on seeded random inputs
that hit the special points (several levels of different T x H x W, N > 1, points outside the
volume, exactly on frame centres (the 4-corner path) and on pixel centres / edges (one-sided
derivatives), T = 1 (also 4-D bilinear ``F.grid_sample``, i.e. Deformable DETR's MSDeformAttn),
D not a multiple of the SIMD width, every dtype), gradcheck, opcheck, empty sizes and the input
checks (C++ and Python alike). Beside it: what only the CPU or the op's Python side has
(torch.compile, autocast, the schemas, backward determinism, int64 overflow, the pure-PyTorch
fallback, registration on import, the build's name and cache). The extension is built once (the
first test that needs it takes about a minute).
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

import attention
from attention import extension, stdeform_attn
from attention.stdeform_op import BACKWARD_SCHEMA, FORWARD_SCHEMA
from tests.op_toolkit import (
    CASES,
    TOLERANCE,
    DeviceChecks,
    assert_close,
    assert_outputs_close,
    gradcheck_inputs,
    make_inputs,
    op_outputs,
    random_grad_out,
    require_kernel,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kernel():
    """Build (or load from the cache) the extension once; the CPU kernel must be there."""
    require_kernel("cpu")
    return attention.register_op()


class TestCPU(DeviceChecks):
    device = "cpu"


@pytest.mark.parametrize("case", CASES)
def test_reference_backward_equals_autograd(case):
    """stdeform_attn_reference_backward (the backward kernel where none is compiled) equals
    autograd through the reference."""
    inputs = make_inputs(**CASES[case])
    grad_out = random_grad_out(inputs)
    expected = op_outputs(inputs, grad_out, impl="reference")[1:]
    actual = attention.stdeform_attn_reference_backward(grad_out, *inputs)
    for name, a, b in zip(("value", "loc", "weights"), actual, expected, strict=True):
        assert_close(a, b, TOLERANCE[torch.float64], name)


def test_reference_double_backward():
    """impl="reference" (autograd through grid_sample) gives correct second-order gradients."""
    value, shapes, start, loc, weights = gradcheck_inputs()
    leaves = [t.requires_grad_() for t in (value, loc, weights)]

    def fn(value, loc, weights):
        return stdeform_attn(value, shapes, start, loc, weights, impl="reference")

    assert torch.autograd.gradgradcheck(fn, leaves, eps=1e-6, atol=1e-6)


def test_torch_compile_fullgraph(kernel):
    """torch.compile(fullgraph=True, inductor) gives the eager output and gradients."""
    inputs = make_inputs([(2, 4, 5), (1, 2, 3)], dtype=torch.float32)
    value, shapes, start, loc, weights = inputs
    grad_out = random_grad_out(inputs)

    def fn(value, loc, weights):
        return stdeform_attn(value, shapes, start, loc, weights)

    compiled = torch.compile(fn, fullgraph=True, backend="inductor")
    results = []
    for f in (fn, compiled):
        leaves = [t.detach().clone().requires_grad_() for t in (value, loc, weights)]
        out = f(*leaves)
        out.backward(grad_out)
        results.append((out.detach(), *(t.grad for t in leaves)))
    assert_outputs_close(results[1], results[0], 1e-5, "compiled vs eager")


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


@pytest.mark.parametrize("call", ["op", "reference", "torch.ops"])
def test_autocast_bfloat16_runs_in_float32(kernel, call):
    """Under CPU bfloat16 autocast, with value and weights in bfloat16 and loc in float32 (as
    autocast leaves them), the op runs in float32: it equals the float32 op on the same rounded
    inputs, and gradients reach the float32 leaves."""
    if call == "torch.ops" and not hasattr(torch.library, "register_autocast"):
        pytest.skip("torch.library.register_autocast needs torch >= 2.5")
    inputs = make_inputs([(3, 4, 5), (1, 3, 3)], lo=-0.1, hi=1.1, dtype=torch.float32)
    value, shapes, start, loc, weights = inputs
    grad_out = random_grad_out(inputs, seed=4)
    # float32 reference on the inputs as bfloat16 rounds them
    rounded = (value.bfloat16().float(), shapes, start, loc, weights.bfloat16().float())
    expected = op_outputs(rounded, grad_out, impl="reference")

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
    inputs = make_inputs(
        [(3, 5, 6), (2, 2, 3)], N=N, M=M, Q=64, D=16, K=8, dtype=torch.float32, special=0.2
    )
    value, shapes, start, loc, weights = inputs
    grad_out = random_grad_out(inputs)
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


@pytest.mark.parametrize(
    "setting, gpu, cuda_built",
    [("", False, False), ("", True, True), ("1", False, True), ("0", True, False)],
)
def test_the_cuda_kernel_is_built_only_where_it_can_run(monkeypatch, setting, gpu, cuda_built):
    """With a toolkit and a CUDA torch, the CUDA sources compile by default only where a GPU is
    visible (VISBENCH_EXTENSION_CUDA=1 forces them, =0 skips them); the CPU kernel always."""
    builds = []
    monkeypatch.setenv("VISBENCH_EXTENSION", "1")
    monkeypatch.setenv("VISBENCH_EXTENSION_CUDA", setting)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(extension, "find_cuda_toolkit", lambda: Path("/opt/fake-cuda"))
    monkeypatch.setattr(extension, "version_mismatch", lambda home, version: None)
    monkeypatch.setattr(extension, "build", lambda home, verbose=False: builds.append(home) or "x")
    info = extension.load_extension.__wrapped__()
    assert builds == [Path("/opt/fake-cuda") if cuda_built else None]
    assert info.cuda_kernel is cuda_built and info.cpu_kernel
    if setting == "" and not gpu:
        assert any("no CUDA device visible" in note for note in info.notes), info.notes


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
