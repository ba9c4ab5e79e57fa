"""The one interface every attention backend implements (DESIGN.md section 4).

A backend is an ``nn.Module`` used both for encoder self-attention (query = value = the
flattened multi-level video tokens) and for decoder cross-attention (query = the instance
queries, value = the encoder memory)::

    forward(query (N, Q, d), query_pos (N, Q, d) | None, value (N, S, d), value_pos (N, S, d) | None,
            spatial_shapes (L, 3) int64 rows (T, H_l, W_l), level_start (L,) int64,
            reference_points (N, Q, L, 3) normalised (x, y, t), value_padding_mask (N, S) bool | None
            ) -> (N, Q, d)

A backend ignores what it does not need (full attention ignores the reference points). It also
states its asymptotic cost (``complexity``) and an analytic multiply-accumulate count
(``mac_breakdown``) that the FLOP harness cross-checks against counted FLOPs.
"""

import torch
from torch import nn


class AttentionBackend(nn.Module):
    """Base class: subclasses set ``name``/``complexity`` and implement forward and mac_breakdown."""

    name: str = ""
    complexity: str = ""

    def forward(
        self,
        query: torch.Tensor,  # (N, Q, d)
        query_pos: torch.Tensor | None,  # (N, Q, d)
        value: torch.Tensor,  # (N, S, d)
        value_pos: torch.Tensor | None,  # (N, S, d)
        spatial_shapes: torch.Tensor,  # (L, 3) rows (T, H, W)
        level_start: torch.Tensor,  # (L,)
        reference_points: torch.Tensor,  # (N, Q, L, 3) normalised (x, y, t)
        value_padding_mask: torch.Tensor | None = None,  # (N, S) True = padding
    ) -> torch.Tensor:  # (N, Q, d)
        raise NotImplementedError

    def mac_breakdown(self, num_queries: int, spatial_shapes: list[tuple[int, int, int]]) -> dict:
        """Multiply-accumulates per batch element, by component, for these shapes."""
        raise NotImplementedError

    def macs(self, num_queries: int, spatial_shapes: list[tuple[int, int, int]]) -> int:
        """Total multiply-accumulates per batch element."""
        return sum(self.mac_breakdown(num_queries, spatial_shapes).values())

    def options(self) -> dict:
        """The options that identify this backend in results (e.g. impl, mode, K)."""
        return {}
