"""3D sine position encoding over (t, y, x), as VisTR.

The d channels are split in three equal parts for t, y and x (d must be divisible by 6: each
part holds sin/cos pairs). Coordinates are the cumulative count of non-padding positions along
each axis, normalised by the axis' valid extent and scaled by 2π, so the encoding of a padded
clip equals that of the unpadded one on the valid region (padded pixels get t = 0; their tokens
are masked out of attention anyway).
Channel order: [t part, y part, x part], each [sin, cos] interleaved as DETR.
"""

import math

import torch
from torch import nn


class PositionEmbeddingSine3D(nn.Module):
    """forward(mask (B, T, H, W) bool, True = padding) -> (B, T, H, W, d)."""

    def __init__(self, d_model: int, temperature: float = 10000.0, scale: float = 2 * math.pi):
        super().__init__()
        if d_model % 6:
            raise ValueError(
                f"3D sine position encoding: d_model={d_model} must be divisible by 6 "
                "(three axes, sin/cos pairs)"
            )
        self.num_pos_feats = d_model // 3
        self.temperature, self.scale = temperature, scale

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        if mask.dim() != 4 or mask.dtype != torch.bool:
            raise ValueError(
                f"3D sine position encoding: mask must be (B, T, H, W) bool, got "
                f"{tuple(mask.shape)} {mask.dtype}"
            )
        not_mask = (~mask).float()  # (B, T, H, W)
        eps = 1e-6
        t = not_mask.cumsum(1)
        y = not_mask.cumsum(2)
        x = not_mask.cumsum(3)
        t = t / (t[:, -1:] + eps) * self.scale
        y = y / (y[:, :, -1:] + eps) * self.scale
        x = x / (x[:, :, :, -1:] + eps) * self.scale
        F_ = self.num_pos_feats
        dim_t = torch.arange(F_, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / F_)  # (F_,)

        def encode(coord: torch.Tensor) -> torch.Tensor:  # (B, T, H, W) -> (B, T, H, W, F_)
            pos = coord[..., None] / dim_t
            return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=5).flatten(4)

        return torch.cat((encode(t), encode(y), encode(x)), dim=-1)  # (B, T, H, W, d)
