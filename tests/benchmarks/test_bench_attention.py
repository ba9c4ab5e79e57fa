"""pytest-benchmark microbenchmarks: one encoder layer per backend, and the STDeformAttn op.

Not part of the default test run (``--benchmark-skip`` in pyproject); run them with

    pytest tests/benchmarks --benchmark-only --benchmark-json results/benchmarks.json

Groups follow xformers' naming: the group is the operation and shape, the test id the
implementation, so pytest-benchmark's table compares implementations side by side.
"""

import pytest
import torch

from attention import stdeform_attn
from attention.registry import build_attention
from models.transformer import EncoderLayer

# one encoder layer at the paper's width on 8 frames of 10x17 tokens
T, H, W, D_MODEL, HEADS, FFN = 8, 10, 17, 384, 8, 2048
BACKENDS = {
    "full-sdpa": ("full", {"impl": "sdpa"}),
    "full-math": ("full", {"impl": "math"}),
    "stdeform-3d-k32": ("stdeform", {"mode": "3d", "n_points": 32}),
    "stdeform-frame-k32": ("stdeform", {"mode": "frame", "n_points": 32}),
    "stdeform-frames-k4": ("stdeform", {"mode": "frames", "n_points": 4, "n_frames": T}),
}


def _layer_inputs():
    S = T * H * W
    generator = torch.Generator().manual_seed(0)
    src = torch.randn(1, S, D_MODEL, generator=generator)
    pos = torch.randn(1, S, D_MODEL, generator=generator)
    t, y, x = torch.meshgrid(
        (torch.arange(T) + 0.5) / T,
        (torch.arange(H) + 0.5) / H,
        (torch.arange(W) + 0.5) / W,
        indexing="ij",
    )
    reference = torch.stack([x, y, t], -1).reshape(1, S, 1, 3)
    return src, pos, torch.tensor([[T, H, W]]), torch.zeros(1, dtype=torch.long), reference


@pytest.mark.benchmark(group=f"encoder layer forward T={T} {H}x{W} d={D_MODEL}")
@pytest.mark.parametrize("name", list(BACKENDS))
def test_encoder_layer_forward(benchmark, name):
    backend, options = BACKENDS[name]
    attention = build_attention(backend, d_model=D_MODEL, n_heads=HEADS, **options)
    layer = EncoderLayer(attention, D_MODEL, FFN, 0.0).eval()
    src, pos, shapes, start, reference = _layer_inputs()
    with torch.no_grad():
        out = benchmark(layer, src, pos, shapes, start, reference, None)
    assert out.shape == src.shape


@pytest.mark.benchmark(group="stdeform_attn paper shape forward+backward")
@pytest.mark.parametrize("impl", ["op", "reference"])
def test_stdeform_op_forward_backward(benchmark, impl):
    N, M, D, Tp, Hp, Wp, K = 1, 8, 48, 36, 10, 17, 32
    S = Q = Tp * Hp * Wp
    generator = torch.Generator().manual_seed(0)
    value = torch.randn(N, S, M, D, generator=generator, requires_grad=True)
    loc = torch.rand(N, Q, M, 1, K, 3, generator=generator, requires_grad=True)
    weights = torch.rand(N, Q, M, 1, K, generator=generator, requires_grad=True)
    shapes, start = torch.tensor([[Tp, Hp, Wp]]), torch.zeros(1, dtype=torch.long)

    def step():
        out = stdeform_attn(value, shapes, start, loc, weights, impl=impl)
        out.sum().backward()
        return out

    out = benchmark(step)
    assert out.shape == (N, Q, M * D)
