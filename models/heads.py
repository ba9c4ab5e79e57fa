"""Prediction heads: an MLP (boxes, mask embeddings) and the pixel decoder of the mask head.

Masks are dynamic, as in VisTR's successors and MaskFormer: every query predicts a mask embedding
(MLP of its decoder output) whose dot product with its frame's pixel embedding gives the frame's
mask logits. The pixel embedding comes from a light FPN: the encoder memory of the coarsest level
(reshaped back to (B*T, d, H, W)) is upsampled and merged with 1x1 laterals of the backbone's
skip features (e.g. strides 16 and 8), each merge followed by 3x3 conv + GroupNorm + ReLU. The
logits are at the finest skip stride.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """n_layers linear layers with ReLU between them (DETR's MLP)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, n_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (n_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [out_dim], strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < len(self.layers) - 1 else layer(x)
        return x


def _conv_norm_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.GroupNorm(math.gcd(32, channels), channels),
        nn.ReLU(inplace=True),
    )


class PixelDecoder(nn.Module):
    """forward(memory (B*T, d, H, W), skips {stride: (B*T, C_s, H_s, W_s)}) -> (B*T, c, h, w)."""

    def __init__(self, d_model: int, skip_channels: dict[int, int], mask_dim: int):
        super().__init__()
        self.strides = sorted(skip_channels, reverse=True)  # coarse to fine
        self.input = nn.Sequential(nn.Conv2d(d_model, mask_dim, 1), _conv_norm_relu(mask_dim))
        self.laterals = nn.ModuleList(
            nn.Conv2d(skip_channels[s], mask_dim, 1) for s in self.strides
        )
        self.merges = nn.ModuleList(_conv_norm_relu(mask_dim) for _ in self.strides)
        self.output = nn.Conv2d(mask_dim, mask_dim, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.zeros_(module.bias)

    def forward(self, memory: torch.Tensor, skips: dict[int, torch.Tensor]) -> torch.Tensor:
        x = self.input(memory)  # (B*T, c, H, W)
        for stride, lateral, merge in zip(self.strides, self.laterals, self.merges, strict=True):
            skip = lateral(skips[stride])  # (B*T, c, H_s, W_s)
            x = merge(skip + F.interpolate(x, size=skip.shape[-2:], mode="nearest"))
        return self.output(x)  # (B*T, c, h, w) at the finest skip stride
