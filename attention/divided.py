"""TimeSformer's divided space-time attention: temporal attention, then spatial attention.

Temporal step: each token attends to the T tokens at its own (y, x) in its level; spatial step:
each token attends to the H_l*W_l tokens of its own frame. Each step has its own q, k, v and
output projections (attention/grid.py), positions added to queries and keys as in full attention.

Composition inside one call. TimeSformer adds each step residually, x_t = x + temporal(x), then
x_t + spatial(x_t); the encoder layer adds this backend's output to its input (src + out), so the
backend returns

    h = temporal(x);  out = h + spatial(x + h)        so that  src + out = x_t + spatial(x_t).

TimeSformer's pre-norms before each step and its extra linear after the temporal step are left
out: the encoder is post-norm (one LayerNorm after src + out) and the temporal output projection
already is a linear map. Cost O(THW(T + HW)C).
"""

import torch

from attention.base import AttentionBackend
from attention.grid import Projections, attend, grid_levels, grid_tokens
from attention.options import DENSE_IMPL


class DividedAttention(AttentionBackend):
    """Temporal attention at each (y, x), then spatial attention within each frame."""

    name = "divided"
    complexity = "O(THW(T+HW)C)"
    encoder_only = True
    OPTIONS = (DENSE_IMPL,)

    @classmethod
    def label(cls, options: dict) -> str:
        return "divided" if options["impl"] == "sdpa" else f"divided ({options['impl']})"

    def __init__(self, d_model: int = 256, n_heads: int = 8, impl: str = "sdpa", **_):
        super().__init__()
        self.d_model, self.n_heads, self.impl = d_model, n_heads, impl
        self.temporal = Projections(d_model, n_heads, self.name)
        self.spatial = Projections(d_model, n_heads, self.name)

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
        h = self._step(
            self.temporal, query, query_pos, value, value_pos, levels, value_padding_mask, True
        )
        x_t, v_t = query + h, value + h
        return h + self._step(
            self.spatial, x_t, query_pos, v_t, value_pos, levels, value_padding_mask, False
        )

    def _step(self, proj, query, query_pos, value, value_pos, levels, padding, temporal):
        """One attention step over every level: temporal (same (y, x)) or spatial (same t)."""
        N, _, d = value.shape
        M, D = self.n_heads, d // self.n_heads
        q, k, v = proj(query, query_pos, value, value_pos)  # (N, S, M, D) each
        outs = []
        for start, T, H, W in levels:
            # (N, T, HW, M, D) -> (N, G, M, L, D): G groups of L tokens that attend together
            if temporal:  # G = H*W groups of L = T tokens
                order, back, groups, length = (0, 2, 3, 1, 4), (0, 3, 1, 2, 4), H * W, T
            else:  # G = T groups of L = H*W tokens
                order, back, groups, length = (0, 1, 3, 2, 4), (0, 1, 3, 2, 4), T, H * W
            grouped = [
                x[:, start : start + T * H * W].view(N, T, H * W, M, D).permute(order)
                for x in (q, k, v)
            ]  # (N, G, M, L, D)
            keep = None
            if padding is not None:
                valid = ~padding[:, start : start + T * H * W].view(N, T, H * W)
                valid = valid.transpose(1, 2) if temporal else valid  # (N, G, L)
                keep = valid.reshape(N * groups, 1, 1, length)
            out = attend(*(x.reshape(N * groups, M, length, D) for x in grouped), keep, self.impl)
            out = out.view(N, groups, M, length, D).permute(back)  # (N, T, HW, M, D)
            outs.append(out.reshape(N, T * H * W, d))
        return proj.out_proj(torch.cat(outs, 1))

    def mac_breakdown(self, num_queries, spatial_shapes):
        S, d = grid_tokens(self.name, num_queries, spatial_shapes), self.d_model
        return {
            "projections": 2 * 4 * S * d * d,  # q, k, v, out for each step
            "temporal attention": sum(2 * t * h * w * t * d for t, h, w in spatial_shapes),
            "spatial attention": sum(2 * t * h * w * h * w * d for t, h, w in spatial_shapes),
        }
