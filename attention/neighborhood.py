"""3D neighbourhood attention with NATTEN's na3d semantics: each token attends to the
k_t x k_h x k_w tokens around it in its level's (T, H, W) volume.

Per dimension of length n and (odd) kernel k the window of the query at i is [s, s + k) with
s = clamp(i - k // 2, 0, n - k): centred on the query, shifted to stay inside the volume near a
border, so that every query sees exactly k_t*k_h*k_w keys (dilation 1, not causal). A kernel
larger than a dimension is clipped to it (NATTEN refuses it). Padded tokens are masked as keys.

The attention itself is the op ``torch.ops.visbench.neighborhood_attn`` (one level, per-head
q, k, v as (N, M, T, H, W, D)), so that the FLOP counters see one operator whose cost is the
mechanism's, N*M*T*H*W*k_t*k_h*k_w*2D multiply-accumulates, whichever kernel computes it.
Its gradient recomputes the attention with autograd (as activation checkpointing does): the op
keeps only q, k, v for the backward. Implementations:

- ``masked`` (default): per query frame, F.scaled_dot_product_attention over the k_t frames of
  its temporal window with a boolean mask for the spatial window and padding; work
  T*H*W * k_t*H*W instead of dense attention's (T*H*W)^2. Runs everywhere, trains on the CPU.
- ``flex``: torch.nn.attention.flex_attention, compiled, with a block mask of the neighbourhood
  (padding as -inf scores). torch (2.14) has no FlexAttention backward or float64 kernel on the
  CPU: there the gradient and float64 use the masked path, as does any torch without
  flex_attention (< 2.5).

Default masked: on the CPU (2 threads, kernel 3x5x5, one attention call, min of repeats) it is
0.9 ms vs compiled flex's 2.7 ms at the quick shape (T=6, 8x8, d=96, 4 heads) and 281 vs 295 ms
at the paper shape (T=36, 10x17, d=384, 8 heads; dense SDPA 625 ms), needs no compilation (flex:
7-17 s per new shape) and trains on the CPU. Flex is untested on CUDA here, where its block
sparsity may win. NATTEN 0.21.7 (PyPI: source only) builds without its kernels where CUDA is
absent, then runs na3d through FlexAttention itself and refuses head dims that are not powers
of two (24 and 48 here): no implementation of its own.
"""

import functools
import math

import torch

from attention.base import AttentionBackend
from attention.grid import Projections, attend, grid_levels, grid_tokens
from attention.options import Option

try:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:  # torch < 2.5
    flex_attention = create_block_mask = None

IMPLS = ("masked", "flex")
SCHEMA = "(Tensor q, Tensor k, Tensor v, Tensor? key_padding, int kt, int kh, int kw, str impl) -> Tensor"


class NeighborhoodAttention(AttentionBackend):
    """Multi-head 3D neighbourhood attention over every level's token volume."""

    name = "neighborhood"
    complexity = "O(THW·kt·kh·kw·C)"
    encoder_only = True
    OPTIONS = (
        Option(
            "kernel",
            "int3",
            (3, 5, 5),
            "neighbourhood TxHxW in tokens, odd, clipped to smaller levels; 3x5x5 spans the "
            "adjacent frames and a 5x5 patch: 75 keys, a fifth of the quick preset's 6x8x8 grid",
            minimum=1,
        ),
        Option(
            "impl",
            "str",
            "masked",
            "masked: SDPA over each frame's temporal window, masked; flex: compiled FlexAttention "
            "with a block mask (see attention/neighborhood.py)",
            choices=IMPLS,
        ),
    )

    @classmethod
    def label(cls, options: dict) -> str:
        """e.g. "neighborhood 3x5x5", "neighborhood 3x5x5 (flex)"."""
        text = "neighborhood " + "x".join(str(n) for n in options["kernel"])
        return text if options["impl"] == "masked" else f"{text} ({options['impl']})"

    @classmethod
    def check_options(cls, options: dict) -> None:
        if any(k % 2 == 0 for k in options["kernel"]):
            shown = "x".join(str(k) for k in options["kernel"])
            raise ValueError(f"backend neighborhood: option kernel must be odd, got {shown}")

    def __init__(
        self, d_model: int = 256, n_heads: int = 8, kernel=(3, 5, 5), impl: str = "masked", **_
    ):
        super().__init__()
        self.check_options({"kernel": kernel})
        self.d_model, self.n_heads, self.impl = d_model, n_heads, impl
        self.kernel = tuple(kernel)
        self.proj = Projections(d_model, n_heads, self.name)

    def forward(
        self,
        query,
        query_pos,
        value,
        value_pos,
        spatial_shapes,
        level_start,
        reference_points=None,
        value_padding_mask=None,
    ):
        levels = grid_levels(self.name, query, value, spatial_shapes, level_start)
        N, _, d = value.shape
        q, k, v = self.proj(query, query_pos, value, value_pos)  # (N, S, M, D) each
        outs = []
        for start, T, H, W in levels:
            end = start + T * H * W
            # (N, T*H*W, M, D) -> (N, M, T, H, W, D)
            heads = [x[:, start:end].unflatten(1, (T, H, W)).movedim(4, 1) for x in (q, k, v)]
            padding = None
            if value_padding_mask is not None:
                padding = value_padding_mask[:, start:end].view(N, T, H, W)
            out = torch.ops.visbench.neighborhood_attn(*heads, padding, *self.kernel, self.impl)
            outs.append(out.movedim(1, 4).reshape(N, T * H * W, d))
        return self.proj.out_proj(torch.cat(outs, 1))

    def mac_breakdown(self, num_queries, spatial_shapes):
        S, d = grid_tokens(self.name, num_queries, spatial_shapes), self.d_model
        attention = sum(
            2 * t * h * w * math.prod(clip(self.kernel, (t, h, w))) * d
            for t, h, w in spatial_shapes
        )  # QK^T and AV over the k_t*k_h*k_w keys of every query
        return {"projections": 4 * S * d * d, "attention": attention}


def clip(kernel, dims) -> tuple[int, ...]:
    return tuple(min(k, n) for k, n in zip(kernel, dims, strict=True))


def window_start(i: torch.Tensor, length: int, k: int) -> torch.Tensor:
    """First key of the window of each query position ``i`` along a dimension (NATTEN's)."""
    return (i - k // 2).clamp(0, length - k)


def axis_mask(length: int, k: int, device) -> torch.Tensor:
    """(length, length) bool: key j lies in the window of query i along one dimension."""
    i = torch.arange(length, device=device)
    start = window_start(i, length, k)[:, None]
    return (i[None, :] >= start) & (i[None, :] < start + k)


def flex_runs(device: torch.device, dtype: torch.dtype, backward: bool = False) -> bool:
    """Whether impl=flex computes with FlexAttention here (else the masked path does)."""
    if flex_attention is None:
        return False
    if device.type == "cpu":
        return not backward and dtype in (torch.float32, torch.bfloat16, torch.float16)
    return True


def _masked(q, k, v, key_padding, kernel):
    """q, k, v (N, M, T, H, W, D); key_padding (N, T, H, W) | None -> (N, M, T, H, W, D)."""
    N, M, T, H, W, D = q.shape
    kt, kh, kw = kernel
    frames = window_start(torch.arange(T, device=q.device), T, kt)[:, None]
    frames = frames + torch.arange(kt, device=q.device)  # (T, kt) key frames of each frame
    k, v = (x.reshape(N, M, T, H * W, D)[:, :, frames].flatten(3, 4) for x in (k, v))
    spatial = (
        axis_mask(H, kh, q.device)[:, None, :, None] & axis_mask(W, kw, q.device)[None, :, None]
    )
    keep = spatial.reshape(H * W, H * W).repeat(1, kt)  # (HW, kt*HW)
    if key_padding is not None:
        valid = ~key_padding.reshape(N, T, H * W)[:, frames].flatten(2)  # (N, T, kt*HW)
        keep = keep & valid[:, None, :, None, :]  # (N, 1, T, HW, kt*HW)
    out = attend(q.reshape(N, M, T, H * W, D), k, v, keep)  # (N, M, T, HW, D)
    return out.view(q.shape)


@functools.cache
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=False)


@functools.lru_cache(maxsize=32)
def _block_mask(dims: tuple[int, int, int], kernel: tuple[int, int, int], device: str):
    T, H, W = dims
    kt, kh, kw = kernel

    def inside(i, j, length, k):
        start = window_start(i, length, k)
        return (j >= start) & (j < start + k)

    def neighbours(b, h, q, kv):
        return (
            inside(q // (H * W), kv // (H * W), T, kt)
            & inside(q // W % H, kv // W % H, H, kh)
            & inside(q % W, kv % W, W, kw)
        )

    S = T * H * W
    return create_block_mask(neighbours, None, None, S, S, device=device)


def _flex(q, k, v, key_padding, kernel):
    N, M, T, H, W, D = q.shape
    score_mod = None
    if key_padding is not None:
        padded = key_padding.reshape(N, T * H * W)

        def score_mod(score, b, h, q_index, kv_index):
            return torch.where(padded[b, kv_index], float("-inf"), score)

    block_mask = _block_mask((T, H, W), tuple(kernel), str(q.device))
    q, k, v = (x.reshape(N, M, T * H * W, D) for x in (q, k, v))
    out = _compiled_flex()(q, k, v, score_mod=score_mod, block_mask=block_mask)
    return out.view(N, M, T, H, W, D)


def _neighborhood(q, k, v, key_padding, kernel, impl, backward=False):
    kernel = clip(kernel, q.shape[2:5])
    if impl == "flex" and flex_runs(q.device, q.dtype, backward):
        return _flex(q, k, v, key_padding, kernel)
    return _masked(q, k, v, key_padding, kernel)


@torch.library.custom_op("visbench::neighborhood_attn", mutates_args=(), schema=SCHEMA)
def neighborhood_attn(q, k, v, key_padding, kt, kh, kw, impl):
    """Neighbourhood attention of one level: q, k, v (N, M, T, H, W, D), key_padding
    (N, T, H, W) bool True = padding or None, kernel (kt, kh, kw) -> (N, M, T, H, W, D)."""
    # below autograd (the gradient is _backward's): plain tensors, as FlexAttention on the CPU needs
    q, k, v = (x.detach() for x in (q, k, v))
    return _neighborhood(q, k, v, key_padding, (kt, kh, kw), impl)


@neighborhood_attn.register_fake
def _(q, k, v, key_padding, kt, kh, kw, impl):
    return q.new_empty(q.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, key_padding, kt, kh, kw, impl = inputs
    ctx.save_for_backward(q, k, v, key_padding)
    ctx.kernel, ctx.impl = (kt, kh, kw), impl


def _backward(ctx, grad):
    q, k, v, key_padding = ctx.saved_tensors
    with torch.enable_grad():
        inputs = [x.detach().requires_grad_() for x in (q, k, v)]
        out = _neighborhood(*inputs, key_padding, ctx.kernel, ctx.impl, backward=True)
        grads = torch.autograd.grad(out, inputs, grad)
    return *grads, None, None, None, None, None


neighborhood_attn.register_autograd(_backward, setup_context=_setup_context)
