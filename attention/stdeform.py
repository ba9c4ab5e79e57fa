"""Spatio-temporal deformable attention (STDeformAttn): each query attends to K sampled points.

Per query, head and level, K sampling points sit around the query's reference point; their
offsets and attention-weight logits are linear projections of the query, and one softmax per
head runs over all of that head's points (jointly over levels and frames). The values are
sampled trilinearly by the ``visbench::stdeform_attn`` op. Cost O(HWTCK).

Modes (docs/design.md section 4):
- ``3d``: K points with learned continuous offsets (Δx, Δy, Δt) — the poster's "K key elements".
- ``frames``: K points in every frame of a temporal window (default all ``n_frames`` frames) at
  learned (Δx, Δy) around the query's (x, y), t pinned to frame centres (frames act as levels, as
  in the official Deformable VisTR: each frame of the window has its own offsets and weights).
- ``frame``: K points in the query's own frame only (the spatial-only control).

Offsets are in pixels (and frames) of each level and are normalised by the level's (W, H, T), as
in Deformable DETR. Initialisation as Deformable DETR: head m points along direction
2πm/M with radius growing with the point index, attention-weight logits zero. In ``3d`` mode the
points of a head additionally cycle through the temporal offsets 0, +1, -1, +2 frames (the radius
grows every 4 points).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from attention.base import AttentionBackend
from attention.options import Option
from attention.stdeform_op import stdeform_attn

MODES = ("3d", "frames", "frame")
IMPLS = ("op", "reference")
TEMPORAL_INIT = (0.0, 1.0, -1.0, 2.0)  # frames, cycled over a head's points in 3d mode


class STDeformAttention(AttentionBackend):
    """Deformable attention over (T, H, W) volumes of L levels with K points per head and level."""

    name = "stdeform"
    complexity = "O(HWTCK)"
    OPTIONS = (
        Option("mode", "str", "3d", "where the K points lie (see the module docstring)", MODES),
        Option("n_points", "int", 32, "K: sampling points per head, level (and frame)", minimum=1),
        Option(
            "window",
            "int",
            None,
            "frames mode: frames around the query's that get K points each (none: all T)",
            minimum=1,
            optional=True,
        ),
        Option(
            "impl",
            "str",
            "op",
            "op: the compiled visbench::stdeform_attn; reference: pure PyTorch (grid_sample)",
            IMPLS,
        ),
    )

    @classmethod
    def label(cls, options: dict) -> str:
        """e.g. "stdeform 3d K=32", "stdeform frames K=4 window=3", "stdeform frame K=16 (2D)"."""
        words = [f"stdeform {options['mode']} K={options['n_points']}"]
        if options.get("window") is not None:
            words.append(f"window={options['window']}")
        if options.get("impl", "op") != "op":
            words.append(f"impl={options['impl']}")
        if options["mode"] == "frame":
            words.append("(per-frame 2D)")
        return " ".join(words)

    @classmethod
    def check_options(cls, options: dict) -> None:
        if options.get("window") is not None and options["mode"] != "frames":
            raise ValueError(
                f"backend stdeform: option window needs mode=frames, got mode={options['mode']}"
            )

    def __init__(
        self,
        d_model: int = 256,
        n_heads: int = 8,
        n_levels: int = 1,
        n_points: int = 32,
        mode: str = "3d",
        n_frames: int | None = None,
        window: int | None = None,
        impl: str = "op",
        **_,  # structural arguments it does not need (layer_index)
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"stdeform attention: mode must be one of {MODES}, got {mode!r}")
        if d_model % n_heads:
            raise ValueError(
                f"stdeform attention: d_model={d_model} not divisible by n_heads={n_heads}"
            )
        if mode == "frames" and n_frames is None:
            raise ValueError("stdeform attention: mode 'frames' needs n_frames (the clip length T)")
        if window is not None and (mode != "frames" or not 1 <= window <= n_frames):
            raise ValueError(
                f"stdeform attention: window={window} needs mode 'frames' and 1 <= window <= "
                f"n_frames={n_frames}"
            )
        self.d_model, self.n_heads, self.n_levels = d_model, n_heads, n_levels
        self.n_points, self.mode, self.n_frames, self.impl = n_points, mode, n_frames, impl
        self.window = window  # the option as given (None: all frames)
        self.window_frames = (window or n_frames) if mode == "frames" else 1
        self.offset_dims = 3 if mode == "3d" else 2
        self.points = n_points * self.window_frames  # sampled points per head and level
        self.sampling_offsets = nn.Linear(
            d_model, n_heads * n_levels * self.points * self.offset_dims
        )
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * self.points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        M, L, K = self.n_heads, self.n_levels, self.n_points
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(M, dtype=torch.float32) * (2.0 * math.pi / M)
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)  # (M, 2)
        directions = directions / directions.abs().max(-1, keepdim=True)[0]
        steps = len(TEMPORAL_INIT) if self.mode == "3d" else 1
        radius = torch.arange(K, dtype=torch.float32) // steps + 1  # (K,)
        init = directions[:, None, :] * radius[None, :, None]  # (M, K, 2)
        if self.mode == "3d":
            dt = torch.tensor([TEMPORAL_INIT[k % steps] for k in range(K)])  # (K,)
            init = torch.cat([init, dt.view(1, K, 1).expand(M, K, 1)], -1)  # (M, K, 3)
        # the same pattern on every level and, in frames mode, in every frame of the window
        init = init[:, None, None].expand(M, L, self.window_frames, K, self.offset_dims)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(init.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for layer in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        query,
        query_pos,
        value,
        value_pos,
        spatial_shapes,
        level_start,
        reference_points,
        value_padding_mask=None,
    ):
        N, Q, _ = query.shape
        S = value.shape[1]
        M, L, P, D = self.n_heads, self.n_levels, self.points, self.d_model // self.n_heads
        if spatial_shapes.shape[0] != L:
            raise ValueError(
                f"stdeform attention: built for L={L} levels, got spatial_shapes with "
                f"{spatial_shapes.shape[0]} rows"
            )
        if reference_points.shape != (N, Q, L, 3):
            raise ValueError(
                f"stdeform attention: reference_points must be (N, Q, L, 3) = {(N, Q, L, 3)}, "
                f"got {tuple(reference_points.shape)}"
            )
        q = query if query_pos is None else query + query_pos
        v = self.value_proj(value)
        if value_padding_mask is not None:
            v = v.masked_fill(value_padding_mask[..., None], 0.0)
        v = v.view(N, S, M, D)

        sizes = spatial_shapes.to(q.dtype)  # (L, 3) rows (T, H, W)
        T = sizes[:, 0]  # (L,)
        normaliser = torch.stack([sizes[:, 2], sizes[:, 1], T], -1)  # (L, 3) as (x, y, t)
        offsets = self.sampling_offsets(q).view(N, Q, M, L, P, self.offset_dims)
        logits = self.attention_weights(q).view(N, Q, M, L * P)
        weights = F.softmax(logits, -1).view(N, Q, M, L, P)  # one softmax per head
        ref = reference_points[:, :, None, :, None, :]  # (N, Q, 1, L, 1, 3)
        if self.mode == "3d":
            loc = ref + offsets / normaliser[:, None, :]
        else:
            xy = ref[..., :2] + offsets / normaliser[:, None, :2]  # (N, Q, M, L, P, 2)
            t = self._frame_centres(reference_points[..., 2], T)  # (N, Q, L, P)
            loc = torch.cat([xy, t[:, :, None, :, :, None].expand(N, Q, M, L, P, 1)], -1)
        out = stdeform_attn(
            v.contiguous(),
            spatial_shapes,
            level_start,
            loc.to(v.dtype).contiguous(),
            weights.to(v.dtype).contiguous(),
            impl="reference" if self.impl == "reference" else "op",
        )  # (N, Q, M*D)
        return self.output_proj(out)

    def _frame_centres(self, ref_t: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """Normalised t (N, Q, L, P) of each point: its frame's centre (frame / frames modes)."""
        frame = (ref_t * T).floor().clamp(min=0)  # (N, Q, L) the query's own frame
        frame = torch.minimum(frame, T - 1)
        if self.mode == "frame":
            frames = frame[..., None].expand(*frame.shape, self.n_points)
        else:
            if bool((self.n_frames != T).any()):
                raise ValueError(
                    f"stdeform attention: mode 'frames' was built for n_frames={self.n_frames}, "
                    f"got T={T.long().tolist()}"
                )
            W = self.window_frames
            first = (frame - W // 2).clamp(min=0, max=self.n_frames - W)  # window inside [0, T)
            frames = first[..., None] + torch.arange(W, device=T.device, dtype=T.dtype)
            frames = frames[..., None].expand(*frame.shape, W, self.n_points).flatten(-2)
        return (frames + 0.5) / T[:, None]

    def mac_breakdown(self, num_queries, spatial_shapes):
        S = sum(t * h * w for t, h, w in spatial_shapes)
        d, M, L, P, Q = self.d_model, self.n_heads, self.n_levels, self.points, num_queries
        return {
            "value_proj": S * d * d,
            "output_proj": Q * d * d,
            "sampling_offsets": Q * d * M * L * P * self.offset_dims,
            "attention_weights": Q * d * M * L * P,
            # trilinear interpolation: 8 corners x D channels per point, weighting included
            "sampling": Q * M * L * P * (d // M) * 8,
        }
