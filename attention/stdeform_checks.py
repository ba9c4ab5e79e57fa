"""Input checks of the STDeformAttn op, mirrored from csrc/stdeform_attn_op.cpp.

The compiled kernels check in C++; the reference, the fake (meta) kernel and the pure-Python
fallback check here. Every failure is a ValueError naming the argument, expected and got.
"""

import torch

INT64_MAX = 2**63 - 1


def _fail(message: str) -> None:
    raise ValueError(f"stdeform_attn: {message}")


def check_stdeform_inputs(
    value: torch.Tensor,
    shapes: torch.Tensor,
    start: torch.Tensor,
    loc: torch.Tensor,
    weights: torch.Tensor,
    check_values: bool = True,
) -> None:
    """Validate ranks, sizes, dtypes, devices, layout and (if check_values) shapes/start values."""
    for name, t in (
        ("value", value),
        ("shapes", shapes),
        ("start", start),
        ("loc", loc),
        ("weights", weights),
    ):
        if not isinstance(t, torch.Tensor):
            _fail(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if value.dim() != 4:
        _fail(f"value must be 4-D (N, S, M, D), got shape {tuple(value.shape)}")
    if shapes.dim() != 2 or shapes.shape[1] != 3:
        _fail(f"shapes must be (L, 3) with rows (T, H, W), got shape {tuple(shapes.shape)}")
    if start.dim() != 1:
        _fail(f"start must be 1-D (L,), got shape {tuple(start.shape)}")
    if loc.dim() != 6:
        _fail(f"loc must be 6-D (N, Q, M, L, K, 3), got shape {tuple(loc.shape)}")
    if loc.shape[5] != 3:
        _fail(f"the last dim of loc must be 3 (x, y, t), got {loc.shape[5]}")
    if weights.dim() != 5:
        _fail(f"weights must be 5-D (N, Q, M, L, K), got shape {tuple(weights.shape)}")

    N, _, M, _ = value.shape
    L = shapes.shape[0]
    if start.shape[0] != L:
        _fail(f"start must have L={L} entries (one per row of shapes), got {start.shape[0]}")
    if loc.shape[0] != N:
        _fail(f"loc batch size N must equal value's ({N}), got {loc.shape[0]}")
    if loc.shape[2] != M:
        _fail(f"loc heads M must equal value's ({M}), got {loc.shape[2]}")
    if loc.shape[3] != L:
        _fail(f"loc levels L must equal shapes' rows ({L}), got {loc.shape[3]}")
    if tuple(weights.shape) != tuple(loc.shape[:5]):
        _fail(
            f"weights must be (N, Q, M, L, K) = {tuple(loc.shape[:5])} to match loc, "
            f"got {tuple(weights.shape)}"
        )

    if shapes.dtype != torch.int64:
        _fail(f"shapes must be int64, got {shapes.dtype}")
    if start.dtype != torch.int64:
        _fail(f"start must be int64, got {start.dtype}")
    for name, t in (("value", value), ("loc", loc), ("weights", weights)):
        if not t.is_floating_point():
            _fail(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if not (loc.dtype == weights.dtype == value.dtype):
        _fail(
            "value, loc and weights must share one dtype, got "
            f"value {value.dtype}, loc {loc.dtype}, weights {weights.dtype}"
        )
    devices = {t.device for t in (value, shapes, start, loc, weights)}
    if len(devices) != 1:
        _fail(
            "all tensors must be on one device, got "
            f"value {value.device}, shapes {shapes.device}, start {start.device}, "
            f"loc {loc.device}, weights {weights.device}"
        )
    for name, t in (("value", value), ("loc", loc), ("weights", weights)):
        if not t.is_contiguous():
            _fail(
                f"{name} must be contiguous (call .contiguous()), got strides {t.stride()} "
                f"for sizes {tuple(t.shape)}"
            )

    if check_values:
        total = 0
        for level, ((T, H, W), offset) in enumerate(
            zip(shapes.tolist(), start.tolist(), strict=True)
        ):
            if min(T, H, W) <= 0:
                _fail(f"shapes[{level}] must be positive (T, H, W), got ({T}, {H}, {W})")
            if offset != total:
                _fail(
                    f"start[{level}] must be {total} (the sum of T*H*W over the levels before it), "
                    f"got {offset}"
                )
            # The C++ checks' bounds: the kernels index in int64.
            if T * H * W > INT64_MAX:
                _fail(f"shapes[{level}] = ({T}, {H}, {W}) has T*H*W beyond int64")
            total += T * H * W
            if total > INT64_MAX:
                _fail(
                    f"sum(T*H*W) over shapes[0..{level}] is beyond int64 "
                    f"(at shapes[{level}] = ({T}, {H}, {W}))"
                )
        if value.shape[1] != total:
            _fail(f"value has S={value.shape[1]} tokens but shapes describe sum(T*H*W)={total}")


def check_stdeform_backward_inputs(grad_out, value, shapes, start, loc, weights) -> None:
    """The forward's checks plus grad_out (N, Q, M*D) with value's dtype and device, contiguous."""
    check_stdeform_inputs(value, shapes, start, loc, weights)
    expected = (value.shape[0], loc.shape[1], value.shape[2] * value.shape[3])
    if not isinstance(grad_out, torch.Tensor) or tuple(grad_out.shape) != expected:
        got = tuple(grad_out.shape) if isinstance(grad_out, torch.Tensor) else type(grad_out)
        raise ValueError(
            f"stdeform_attn_backward: grad_out must be (N, Q, M*D) = {expected}, got {got}"
        )
    if grad_out.dtype != value.dtype:
        raise ValueError(
            f"stdeform_attn_backward: grad_out dtype must equal value's ({value.dtype}), "
            f"got {grad_out.dtype}"
        )
    if grad_out.device != value.device:
        raise ValueError(
            f"stdeform_attn_backward: grad_out must be on {value.device}, got {grad_out.device}"
        )
    if not grad_out.is_contiguous():
        raise ValueError("stdeform_attn_backward: grad_out must be contiguous")
