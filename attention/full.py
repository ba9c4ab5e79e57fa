"""VisTR's full spatio-temporal attention: every query attends to all T*H*W tokens.

Multi-head attention as ``nn.MultiheadAttention`` computes it (query and key get their position
embedding added, the value does not). Two implementations with the same arithmetic:
``impl="sdpa"`` uses ``F.scaled_dot_product_attention`` (fused, memory-efficient where the
platform has such a kernel) and ``impl="math"`` computes softmax(QK^T/sqrt(d_head))V explicitly,
materialising the (N, M, Q, S) attention matrix as VisTR's nn.MultiheadAttention did.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from attention.base import AttentionBackend
from attention.options import DENSE_IMPL, DENSE_IMPLS


class FullAttention(AttentionBackend):
    """Dense multi-head attention over all value tokens; cost O(H²W²T²C)."""

    name = "full"
    complexity = "O(H²W²T²C)"
    OPTIONS = (DENSE_IMPL,)

    @classmethod
    def label(cls, options: dict) -> str:
        return f"full ({options['impl']})"

    def __init__(
        self,
        d_model: int = 256,
        n_heads: int = 8,
        impl: str = "sdpa",
        dropout: float = 0.0,
        **_,  # structural arguments dense attention does not need (n_levels, n_frames, ...)
    ):
        super().__init__()
        if impl not in DENSE_IMPLS:
            raise ValueError(f"full attention: impl must be one of {DENSE_IMPLS}, got {impl!r}")
        if d_model % n_heads:
            raise ValueError(
                f"full attention: d_model={d_model} not divisible by n_heads={n_heads}"
            )
        self.d_model, self.n_heads, self.impl, self.dropout = d_model, n_heads, impl, dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        for layer in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (N, L, d) -> (N, M, L, d/M)
        N, L, _ = x.shape
        return x.view(N, L, self.n_heads, -1).transpose(1, 2)

    def forward(
        self,
        query,
        query_pos,
        value,
        value_pos,
        spatial_shapes=None,
        level_start=None,
        reference_points=None,
        value_padding_mask=None,
    ):
        N, Q, d = query.shape
        q = self._heads(self.q_proj(query if query_pos is None else query + query_pos))
        k = self._heads(self.k_proj(value if value_pos is None else value + value_pos))
        v = self._heads(self.v_proj(value))  # (N, M, S, d/M)
        keep = None
        if value_padding_mask is not None:
            keep = ~value_padding_mask[:, None, None, :]  # (N, 1, 1, S) True = attend
        dropout = self.dropout if self.training else 0.0
        if self.impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout)
        else:
            scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (N, M, Q, S)
            if keep is not None:
                scores = scores.masked_fill(~keep, float("-inf"))
            attn = F.dropout(scores.softmax(dim=-1), dropout, self.training)
            out = torch.matmul(attn, v)  # (N, M, Q, d/M)
        return self.out_proj(out.transpose(1, 2).reshape(N, Q, d))

    def mac_breakdown(self, num_queries, spatial_shapes):
        S = sum(t * h * w for t, h, w in spatial_shapes)
        d, Q = self.d_model, num_queries
        return {
            "projections": (2 * Q + 2 * S) * d * d,  # q, k, v, out
            "attention": 2 * Q * S * d,  # QK^T and AV
        }
