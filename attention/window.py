"""Video Swin's 3D window attention: each token attends within its non-overlapping (t, h, w) window.

Per level, the (T, H, W) volume is padded at the end of each dimension to a multiple of the
window and cut into windows of t*h*w tokens; padding tokens (the volume's and value_padding_mask's)
are masked as keys. In alternate layers (odd ``layer_index``, when ``shift``) the windows are
shifted by half a window (floor) as Video Swin does it: the padded volume is rolled cyclically by
minus the shift, tokens attend within a window only to keys of their own shift region (Swin's
attn_mask: regions [0, P - t), [P - t, P - shift), [P - shift, P) per dimension of padded length
P), and the output is rolled back. A window larger than a level's dimension is clipped to it, and
a dimension the window covers whole is not shifted (Video Swin's get_window_size). Cost
O(THW·thw·C).
"""

import torch
import torch.nn.functional as F

from attention.base import AttentionBackend
from attention.grid import Projections, attend, grid_levels, grid_tokens
from attention.options import DENSE_IMPL, Option


class WindowAttention(AttentionBackend):
    """Multi-head attention within (shifted) 3D windows of every level's token volume."""

    name = "window"
    complexity = "O(THW·thw·C)"
    encoder_only = True
    OPTIONS = (
        Option(
            "size",
            "int3",
            (2, 4, 4),
            "window TxHxW in tokens, clipped to smaller levels; 2x4x4 tiles the quick preset's "
            "6x8x8 grid into 3x2x2 windows of 32 tokens with no padding, and its 1x2x2 shift "
            "joins neighbouring windows in every dimension",
            minimum=1,
        ),
        Option("shift", "bool", True, "shift the windows by half a window in odd layers"),
        DENSE_IMPL,
    )

    @classmethod
    def label(cls, options: dict) -> str:
        """e.g. "window 2x4x4", "window 2x4x4 unshifted (math)"."""
        text = "window " + "x".join(str(n) for n in options["size"])
        text += "" if options["shift"] else " unshifted"
        return text if options["impl"] == "sdpa" else f"{text} ({options['impl']})"

    def __init__(
        self,
        d_model: int = 256,
        n_heads: int = 8,
        size=(2, 4, 4),
        shift: bool = True,
        impl: str = "sdpa",
        layer_index: int = 0,
        **_,
    ):
        super().__init__()
        self.d_model, self.n_heads, self.impl = d_model, n_heads, impl
        self.size = tuple(size)
        self.shift = shift
        self.shifted = shift and layer_index % 2 == 1  # this layer's windows are shifted
        self.proj = Projections(d_model, n_heads, self.name)

    def windows(self, dims) -> tuple[list[int], list[int]]:
        """(window, shift) per dimension of a level of (T, H, W) tokens, as Video Swin: the
        window clipped to the dimension, no shift where the window covers the dimension."""
        window = [min(s, n) for s, n in zip(self.size, dims, strict=True)]
        shift = [
            s // 2 if self.shifted and n > s else 0 for s, n in zip(self.size, dims, strict=True)
        ]
        return window, shift

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
        q, k, v = self.proj(query, query_pos, value, value_pos)  # (N, S, M, D) each
        outs = [self._level(q, k, v, value_padding_mask, *level) for level in levels]
        return self.proj.out_proj(torch.cat(outs, 1))

    def _level(self, q, k, v, padding, start, T, H, W):
        N, _, M, D = q.shape
        dims = (T, H, W)
        window, shift = self.windows(dims)
        padded = [-(-n // s) * s for n, s in zip(dims, window, strict=True)]
        end = start + T * H * W

        def tile(x):  # (N, T, H, W, *C) -> (N, nW, t*h*w, *C): pad, roll, cut into windows
            extra = [0, 0] * (x.dim() - 4)
            x = F.pad(x, extra + [0, padded[2] - W, 0, padded[1] - H, 0, padded[0] - T])
            if any(shift):
                x = torch.roll(x, [-s for s in shift], (1, 2, 3))
            return partition(x, window)

        q, k, v = (tile(x[:, start:end].view(N, T, H, W, M, D)) for x in (q, k, v))
        keep = None  # (N | 1, nW, t*h*w | 1, t*h*w) True = attend
        if any(shift):
            region = partition(regions(padded, window, shift, q.device)[None], window)
            keep = region[..., :, None] == region[..., None, :]
        if padding is not None or padded != list(dims):
            valid = q.new_ones(N, T * H * W, dtype=torch.bool)
            valid = valid if padding is None else ~padding[:, start:end]
            valid = tile(valid.view(N, T, H, W))[:, :, None, :]  # (N, nW, 1, t*h*w)
            keep = valid if keep is None else keep & valid
        nW, L = q.shape[1], q.shape[2]
        if keep is not None:
            keep = keep.expand(N, nW, *keep.shape[2:]).reshape(N * nW, 1, -1, L)
        q, k, v = (x.permute(0, 1, 3, 2, 4).reshape(N * nW, M, L, D) for x in (q, k, v))
        out = attend(q, k, v, keep, self.impl)  # (N*nW, M, L, D)
        out = merge(out.view(N, nW, M, L, D).transpose(2, 3), window, padded)  # (N, *padded, M, D)
        if any(shift):
            out = torch.roll(out, shift, (1, 2, 3))
        return out[:, :T, :H, :W].reshape(N, T * H * W, M * D)

    def mac_breakdown(self, num_queries, spatial_shapes):
        """Padded windows count whole: their padding tokens are computed, masked as keys."""
        S, d = grid_tokens(self.name, num_queries, spatial_shapes), self.d_model
        attention = 0
        for dims in spatial_shapes:
            window, _ = self.windows(dims)
            count, tokens = 1, 1
            for n, s in zip(dims, window, strict=True):
                count, tokens = count * -(-n // s), tokens * s
            attention += 2 * count * tokens * tokens * d  # QK^T and AV in every window
        return {"projections": 4 * S * d * d, "attention": attention}


def partition(x, window):
    """(N, P0, P1, P2, *C) -> (N, nW, w0*w1*w2, *C): windows in (t, y, x) order."""
    N, P, C = x.shape[0], x.shape[1:4], x.shape[4:]
    n = [p // w for p, w in zip(P, window, strict=True)]
    x = x.reshape(N, n[0], window[0], n[1], window[1], n[2], window[2], *C)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, *range(7, 7 + len(C)))
    return x.reshape(N, n[0] * n[1] * n[2], window[0] * window[1] * window[2], *C)


def merge(x, window, padded):
    """The inverse of partition: (N, nW, w0*w1*w2, *C) -> (N, P0, P1, P2, *C)."""
    N, C = x.shape[0], x.shape[3:]
    n = [p // w for p, w in zip(padded, window, strict=True)]
    x = x.reshape(N, *n, *window, *C)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, *range(7, 7 + len(C)))
    return x.reshape(N, *padded, *C)


def regions(padded, window, shift, device) -> torch.Tensor:
    """Swin's shift regions of the rolled, padded volume: (P0, P1, P2) ids, equal where tokens
    may attend to each other within a window."""
    ids = torch.zeros((), dtype=torch.long, device=device)
    for p, w, s in zip(padded, window, shift, strict=True):
        pos = torch.arange(p, device=device)
        region = (pos >= p - w).long() + (pos >= p - s).long() if s else torch.zeros_like(pos)
        ids = ids[..., None] * 3 + region  # one more dimension per axis
    return ids
