"""The VisTR-style encoder-decoder whose attention comes from a pluggable backend.

Per level l the backbone map (B*T, C_l, H_l, W_l) is projected to d (1x1 conv + GroupNorm, as
Deformable DETR), and becomes a (T, H_l, W_l) token volume flattened t-major, then y, then x; the
levels are concatenated (``spatial_shapes`` rows (T, H_l, W_l), ``level_start`` offsets). Each
token's position is the 3D sine encoding of its (t, y, x) plus a learned level embedding.

- encoder: N layers of [backend self-attention + FFN]; reference points are the token centres
  ((x+0.5)/W, (y+0.5)/H, (t+0.5)/T), scaled by the valid (unpadded) ratios as Deformable DETR.
- decoder: T x n_instances queries, frame-major (query q = t * n_instances + i, as VisTR), zero
  content and learned positional query embeddings; every layer is [dense self-attention among the
  queries (nn.MultiheadAttention, the same for every backend) + backend cross-attention to the
  memory + FFN]. Each query's reference point is (x, y) = sigmoid(linear(query embedding)) (as
  Deformable DETR), t = the centre of its frame (t + 0.5)/T.

Post-norm layers as DETR, with a final decoder LayerNorm applied to every layer's output (the
intermediate outputs feed the auxiliary losses). ``encoder_attention(i)`` and
``decoder_attention(i)`` build layer i's encoder self-attention and decoder cross-attention: the
backends are the only thing that differs between models, and the encoder's and the decoder's
may differ (hybrids).
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attention.base import AttentionBackend
from models.position_encoding import PositionEmbeddingSine3D


class FFN(nn.Module):
    """linear -> ReLU -> dropout -> linear."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class EncoderLayer(nn.Module):
    """Backend self-attention over all tokens + FFN, post-norm."""

    def __init__(self, attention: AttentionBackend, d_model: int, dim_feedforward: int, dropout):
        super().__init__()
        self.self_attn = attention
        self.ffn = FFN(d_model, dim_feedforward, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, src, pos, shapes, start, reference_points, padding_mask):
        # src, pos (B, S, d); reference_points (B, S, L, 3); padding_mask (B, S)
        attended = self.self_attn(src, pos, src, pos, shapes, start, reference_points, padding_mask)
        src = self.norm1(src + self.dropout1(attended))
        return self.norm2(src + self.dropout2(self.ffn(src)))


class DecoderLayer(nn.Module):
    """Dense query self-attention + backend cross-attention to the memory + FFN, post-norm."""

    def __init__(
        self, attention: AttentionBackend, d_model: int, n_heads: int, dim_feedforward: int, dropout
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.cross_attn = attention
        self.ffn = FFN(d_model, dim_feedforward, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))

    def forward(self, tgt, query_pos, memory, memory_pos, shapes, start, reference_points, mask):
        # tgt, query_pos (B, Q, d); memory, memory_pos (B, S, d); reference_points (B, Q, L, 3)
        q = k = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, tgt, need_weights=False)[0]))
        attended = self.cross_attn(
            tgt, query_pos, memory, memory_pos, shapes, start, reference_points, mask
        )
        tgt = self.norm2(tgt + self.dropout2(attended))
        return self.norm3(tgt + self.dropout3(self.ffn(tgt)))


class Transformer(nn.Module):
    """Input projection, 3D position, encoder and decoder; see the module docstring."""

    def __init__(
        self,
        encoder_attention: Callable[[int], AttentionBackend],
        decoder_attention: Callable[[int], AttentionBackend],
        in_channels: list[int],
        d_model: int = 256,
        n_heads: int = 8,
        enc_layers: int = 6,
        dec_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.d_model, self.n_levels = d_model, len(in_channels)
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, d_model, 1), nn.GroupNorm(math.gcd(32, d_model), d_model))
            for c in in_channels
        )
        self.level_embed = nn.Parameter(torch.empty(self.n_levels, d_model))
        self.position = PositionEmbeddingSine3D(d_model)
        self.encoder = nn.ModuleList(
            EncoderLayer(encoder_attention(i), d_model, dim_feedforward, dropout)
            for i in range(enc_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(decoder_attention(i), d_model, n_heads, dim_feedforward, dropout)
            for i in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(d_model)
        self.reference_points = nn.Linear(d_model, 2)  # query embedding -> (x, y) logits
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Xavier for every matrix outside the backends (they initialise themselves), as DETR."""
        backends = [m for m in self.modules() if isinstance(m, AttentionBackend)]
        backend = {id(p) for m in backends for p in m.parameters()}
        for p in self.parameters():
            if p.dim() > 1 and id(p) not in backend:
                nn.init.xavier_uniform_(p)
        for proj in self.input_proj:
            nn.init.zeros_(proj[0].bias)
        nn.init.normal_(self.level_embed)
        nn.init.zeros_(self.reference_points.bias)

    @staticmethod
    def valid_ratios(mask: torch.Tensor) -> torch.Tensor:  # (B, H, W) -> (B, 2) as (x, y)
        """Fraction of each padded map's width and height that is image (Deformable DETR)."""
        H, W = mask.shape[-2:]
        valid_h = (~mask[:, :, 0]).sum(1).float() / H
        valid_w = (~mask[:, 0, :]).sum(1).float() / W
        return torch.stack([valid_w, valid_h], -1)

    @staticmethod
    def encoder_reference_points(shapes, ratios: torch.Tensor) -> torch.Tensor:
        """Token centres (B, S, L, 3) as (x, y, t), normalised by the valid extent (as DDETR)."""
        points = []
        for level, (T, H, W) in enumerate(shapes):
            t, y, x = torch.meshgrid(
                (torch.arange(T, device=ratios.device, dtype=ratios.dtype) + 0.5) / T,
                torch.arange(H, device=ratios.device, dtype=ratios.dtype) + 0.5,
                torch.arange(W, device=ratios.device, dtype=ratios.dtype) + 0.5,
                indexing="ij",
            )  # (T, H, W) each
            x = x.reshape(1, -1) / (ratios[:, None, level, 0] * W)  # (B, THW)
            y = y.reshape(1, -1) / (ratios[:, None, level, 1] * H)
            t = t.reshape(1, -1).expand_as(x)
            points.append(torch.stack([x, y, t], -1))  # (B, THW, 3)
        points = torch.cat(points, 1)[:, :, None]  # (B, S, 1, 3)
        scale = torch.cat([ratios, ratios.new_ones(ratios.shape[:2] + (1,))], -1)  # (B, L, 3)
        return points * scale[:, None]  # (B, S, L, 3)

    def forward(
        self,
        features: list[torch.Tensor],  # L x (B*T, C_l, H_l, W_l)
        padding_mask: torch.Tensor,  # (B, H, W) bool, True = padding
        query_embed: torch.Tensor,  # (Q, d), Q = T * n_instances, frame-major
    ) -> dict:
        B = padding_mask.shape[0]
        T = features[0].shape[0] // B
        n_instances = query_embed.shape[0] // T
        tokens, positions, masks, shapes, level_masks = [], [], [], [], []
        for level, (feature, proj) in enumerate(zip(features, self.input_proj, strict=True)):
            src = proj(feature)  # (B*T, d, H, W)
            H, W = src.shape[-2:]
            mask = F.interpolate(padding_mask[None].float(), size=(H, W))[0].bool()  # (B, H, W)
            mask3d = mask[:, None].expand(B, T, H, W)
            pos = self.position(mask3d) + self.level_embed[level]  # (B, T, H, W, d)
            tokens.append(src.view(B, T, -1, H, W).permute(0, 1, 3, 4, 2).reshape(B, T * H * W, -1))
            positions.append(pos.reshape(B, T * H * W, -1))
            masks.append(mask3d.reshape(B, T * H * W))
            shapes.append((T, H, W))
            level_masks.append(mask)
        src, pos, mask = torch.cat(tokens, 1), torch.cat(positions, 1), torch.cat(masks, 1)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=src.device)  # (L, 3)
        sizes = spatial_shapes.prod(1)
        level_start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])  # (L,)
        dtype = torch.promote_types(src.dtype, torch.float32)  # reference points never in bf16
        ratios = torch.stack([self.valid_ratios(m) for m in level_masks], 1).to(dtype)

        memory = src  # (B, S, d)
        reference = self.encoder_reference_points(shapes, ratios)  # (B, S, L, 3)
        for layer in self.encoder:
            memory = layer(memory, pos, spatial_shapes, level_start, reference, mask)

        query_pos = query_embed[None].expand(B, -1, -1)  # (B, Q, d)
        xy = self.reference_points(query_pos).sigmoid().to(dtype)  # (B, Q, 2)
        frame = torch.arange(T, device=src.device, dtype=dtype).repeat_interleave(n_instances)
        t = ((frame + 0.5) / T)[None, :, None, None].expand(B, -1, self.n_levels, 1)
        reference = torch.cat([xy[:, :, None] * ratios[:, None], t], -1)  # (B, Q, L, 3)
        tgt = torch.zeros_like(query_pos)
        hs = []
        for layer in self.decoder:
            tgt = layer(tgt, query_pos, memory, pos, spatial_shapes, level_start, reference, mask)
            hs.append(self.decoder_norm(tgt))
        return {
            "hs": torch.stack(hs),  # (n_dec, B, Q, d)
            "memory": memory,  # (B, S, d)
            "spatial_shapes": spatial_shapes,
            "level_start": level_start,
            "reference_xy": xy,  # (B, Q, 2) before the valid-ratio scaling
        }
