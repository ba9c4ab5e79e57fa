"""The one interface every attention backend implements (docs/design.md section 4).

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

A backend owns its vocabulary, declared on its class: ``OPTIONS`` (attention.options.Option:
name, kind, default, allowed values), ``label(options)`` (its name in tables), ``check_options``
(constraints between options) and ``encoder_only`` (self-attention over a token grid only, so not
usable as decoder cross-attention). The model builds every backend as

    Backend(d_model=..., n_heads=..., n_levels=..., n_frames=..., layer_index=..., **options)

with the structural arguments from the model (``layer_index``: the layer's position in the
encoder or decoder, e.g. for windows shifted in alternate layers) and ``options`` holding a value
for every declared option; a backend takes the structural arguments it needs and ``**_`` for the
rest.
"""

from typing import ClassVar

import torch
from torch import nn

from attention.options import Option


class AttentionBackend(nn.Module):
    """Base class: subclasses set ``name``/``complexity`` and implement forward and mac_breakdown."""

    name: ClassVar[str] = ""
    complexity: ClassVar[str] = ""
    OPTIONS: ClassVar[tuple[Option, ...]] = ()
    encoder_only: ClassVar[bool] = False

    @classmethod
    def label(cls, options: dict) -> str:
        """Display name for tables, e.g. "full (sdpa)"; from the identifying options."""
        shown = [
            f"{o.name}={o.format(options[o.name])}"
            for o in cls.OPTIONS
            if o.identifies and o.name in options
        ]
        return f"{cls.name} ({', '.join(shown)})" if shown else cls.name

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Raise a one-line ValueError where options contradict each other (each option's own
        range is checked by its Option)."""

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
        """The identifying options of this instance, as recorded in results (JSON-ready: a
        triple is a list, as in attention.registry.BackendSpec.identity)."""
        values = {o.name: getattr(self, o.name) for o in self.OPTIONS if o.identifies}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
