"""Pure-PyTorch reference of the STDeformAttn op (docs/design.md section 5).

Every level is a (T, H, W) volume sampled trilinearly with 5-D ``F.grid_sample``
(mode="bilinear" is trilinear in 5-D, padding_mode="zeros", align_corners=False) at
grid = 2 * loc - 1 in (x, y, t) order. It is the semantics every kernel must match,
differentiable by autograd, and always available.
"""

import torch
import torch.nn.functional as F

from attention.stdeform_checks import check_stdeform_backward_inputs, check_stdeform_inputs


def stdeform_attn_reference(
    value: torch.Tensor,  # (N, S, M, D)
    shapes: torch.Tensor,  # (L, 3) int64 rows (T, H, W)
    start: torch.Tensor,  # (L,) int64
    loc: torch.Tensor,  # (N, Q, M, L, K, 3) normalised (x, y, t)
    weights: torch.Tensor,  # (N, Q, M, L, K)
) -> torch.Tensor:  # (N, Q, M*D)
    """Reference STDeformAttn: sum over levels and points of weight * trilinear sample."""
    check_stdeform_inputs(value, shapes, start, loc, weights)
    N, S, M, D = value.shape
    _, Q, _, L, K, _ = loc.shape
    grid = 2 * loc - 1  # (N, Q, M, L, K, 3)
    out = value.new_zeros(N * M, D, Q)
    for level, ((T, H, W), offset) in enumerate(zip(shapes.tolist(), start.tolist(), strict=True)):
        volume = value[:, offset : offset + T * H * W]  # (N, T*H*W, M, D)
        volume = volume.reshape(N, T, H, W, M, D).permute(0, 4, 5, 1, 2, 3)  # (N, M, D, T, H, W)
        volume = volume.reshape(N * M, D, T, H, W)
        level_grid = grid[:, :, :, level].permute(0, 2, 1, 3, 4)  # (N, M, Q, K, 3)
        level_grid = level_grid.reshape(N * M, Q, K, 1, 3)
        sampled = F.grid_sample(
            volume, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (N*M, D, Q, K, 1)
        level_weights = weights[:, :, :, level].permute(0, 2, 1, 3).reshape(N * M, 1, Q, K, 1)
        out = out + (sampled * level_weights).sum(dim=(3, 4))  # (N*M, D, Q)
    return out.reshape(N, M, D, Q).permute(0, 3, 1, 2).reshape(N, Q, M * D).contiguous()


def stdeform_attn_reference_backward(
    grad_out: torch.Tensor,  # (N, Q, M*D)
    value: torch.Tensor,  # (N, S, M, D)
    shapes: torch.Tensor,  # (L, 3)
    start: torch.Tensor,  # (L,)
    loc: torch.Tensor,  # (N, Q, M, L, K, 3)
    weights: torch.Tensor,  # (N, Q, M, L, K)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (value, loc, weights) of the reference, without autograd.

    Used as the backward kernel where no compiled one exists; it calls grid_sample's own
    backward (aten.grid_sampler_3d_backward) per level.
    """
    check_stdeform_backward_inputs(grad_out, value, shapes, start, loc, weights)
    N, S, M, D = value.shape
    _, Q, _, L, K, _ = loc.shape
    grid = 2 * loc - 1
    grad = grad_out.reshape(N, Q, M, D).permute(0, 2, 3, 1).reshape(N * M, D, Q, 1, 1)
    grad_value = torch.zeros_like(value)
    grad_loc = torch.zeros_like(loc)
    grad_weights = torch.zeros_like(weights)
    for level, ((T, H, W), offset) in enumerate(zip(shapes.tolist(), start.tolist(), strict=True)):
        volume = value[:, offset : offset + T * H * W].reshape(N, T, H, W, M, D)
        volume = volume.permute(0, 4, 5, 1, 2, 3).reshape(N * M, D, T, H, W)
        level_grid = grid[:, :, :, level].permute(0, 2, 1, 3, 4).reshape(N * M, Q, K, 1, 3)
        level_weights = weights[:, :, :, level].permute(0, 2, 1, 3).reshape(N * M, 1, Q, K, 1)
        sampled = F.grid_sample(
            volume, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (N*M, D, Q, K, 1)
        grad_sampled = grad * level_weights  # (N*M, D, Q, K, 1)
        grad_volume, grad_grid = torch.ops.aten.grid_sampler_3d_backward(
            grad_sampled, volume, level_grid, 0, 0, False, [True, True]
        )  # (N*M, D, T, H, W), (N*M, Q, K, 1, 3)
        grad_volume = grad_volume.reshape(N, M, D, T, H, W).permute(0, 3, 4, 5, 1, 2)
        grad_value[:, offset : offset + T * H * W] = grad_volume.reshape(N, T * H * W, M, D)
        grad_loc[:, :, :, level] = 2 * grad_grid.reshape(N, M, Q, K, 3).permute(0, 2, 1, 3, 4)
        grad_w = (grad * sampled).sum(dim=(1, 4))  # (N*M, Q, K)
        grad_weights[:, :, :, level] = grad_w.reshape(N, M, Q, K).permute(0, 2, 1, 3)
    return grad_value, grad_loc, grad_weights
