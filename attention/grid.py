"""What the self-attention backends over the token grid share (divided, window, neighborhood).

These backends are encoder self-attention only: the query and the value are the same flattened
multi-level tokens (Q = S = sum of T*H_l*W_l; per level a (T, H_l, W_l) volume flattened t-major,
then y, then x, at level_start[l]), and each token attends within its own level's volume.
Projections follow attention/full.py: q = W_q(query + query_pos), k = W_k(value + value_pos),
v = W_v(value), xavier-initialised, zero biases. Padded tokens (value_padding_mask True) are never
attended to; a query left with no key to attend to gets a zero output (before the output
projection), never NaN.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def grid_levels(
    name: str, query: torch.Tensor, value: torch.Tensor, spatial_shapes, level_start
) -> list[tuple[int, int, int, int]]:
    """(start, T, H, W) of every level; a one-line ValueError unless query and value are the
    same token grid (self-attention)."""
    shapes = [tuple(int(n) for n in row) for row in spatial_shapes.tolist()]
    starts = [int(s) for s in level_start.tolist()]
    tokens = sum(t * h * w for t, h, w in shapes)
    if query.shape != value.shape or query.shape[1] != tokens:
        raise ValueError(
            f"{name} attention is self-attention over the token grid: query (N, Q, d) and value "
            f"(N, S, d) must both be the {tokens} tokens of spatial_shapes {shapes}, got query "
            f"{tuple(query.shape)} and value {tuple(value.shape)}"
        )
    return [(start, *shape) for start, shape in zip(starts, shapes, strict=True)]


class Projections(nn.Module):
    """The q, k, v and output projections of one multi-head attention (as attention/full.py)."""

    def __init__(self, d_model: int, n_heads: int, owner: str):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(
                f"{owner} attention: d_model={d_model} not divisible by n_heads={n_heads}"
            )
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        for layer in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, query, query_pos, value, value_pos):
        """(q, k, v), each (N, S, M, d/M)."""
        N, S, d = value.shape
        q = self.q_proj(query if query_pos is None else query + query_pos)
        k = self.k_proj(value if value_pos is None else value + value_pos)
        v = self.v_proj(value)
        return tuple(x.view(N, S, self.n_heads, d // self.n_heads) for x in (q, k, v))


def attend(q, k, v, keep: torch.Tensor | None, impl: str = "sdpa") -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v over the keys ``keep`` allows.

    q (..., Lq, D), k and v (..., Lk, D); keep (..., Lq, Lk) bool, broadcastable, True = attend
    (None: every key). A query with no key to attend to gets zeros: its row attends to every key
    (finite values) and is then multiplied by zero, so that no NaN reaches the gradients.
    """
    has_key = None
    if keep is not None:
        has_key = keep.any(-1, keepdim=True)  # (..., Lq, 1)
        keep = keep | ~has_key
    if impl == "sdpa":
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    else:
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (..., Lq, Lk)
        if keep is not None:
            scores = scores.masked_fill(~keep, float("-inf"))
        out = torch.matmul(scores.softmax(-1), v)  # (..., Lq, D)
    return out if has_key is None else out * has_key


def grid_tokens(name: str, num_queries: int, spatial_shapes) -> int:
    """S, the token count of ``spatial_shapes``, which self-attention needs ``num_queries`` to be."""
    tokens = sum(t * h * w for t, h, w in spatial_shapes)
    if num_queries != tokens:
        raise ValueError(
            f"{name} attention is self-attention over the token grid: num_queries={num_queries} "
            f"must equal the {tokens} tokens of {list(spatial_shapes)}"
        )
    return tokens
