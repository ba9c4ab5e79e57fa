"""The STDeformAttn custom op ``torch.ops.visbench.stdeform_attn`` and its public wrapper.

The schema and the CPU/CUDA kernels live in csrc/ (TORCH_LIBRARY / TORCH_LIBRARY_IMPL) and are
compiled on first use (attention/extension.py); ``import attention`` calls register_op. This module adds what the modern custom-op
convention keeps in Python: the fake (meta) kernels for torch.compile and the autograd formula,
whose backward is itself the registered op ``visbench::stdeform_attn_backward``. Where no
compiled kernel exists for a device (no compiler, no CUDA toolkit) the op runs the pure-PyTorch
reference there, after one warning.
"""

import warnings

import torch

from attention.extension import ExtensionInfo, load_extension
from attention.stdeform_checks import check_stdeform_inputs
from attention.stdeform_reference import (
    stdeform_attn_reference,
    stdeform_attn_reference_backward,
)

FORWARD_SCHEMA = (
    "stdeform_attn(Tensor value, Tensor shapes, Tensor start, Tensor loc, Tensor weights) -> Tensor"
)
BACKWARD_SCHEMA = (
    "stdeform_attn_backward(Tensor grad_out, Tensor value, Tensor shapes, Tensor start, "
    "Tensor loc, Tensor weights) -> (Tensor, Tensor, Tensor)"
)

# Under autocast the op runs in float32 on every device, like autocast's float32 ops: bfloat16
# rounds loc to 1/256, half a pixel on a 128-pixel level, and the kernels take one dtype for all.
AUTOCAST_DTYPE = torch.float32

_info: ExtensionInfo | None = None  # set once the op is registered
_libraries: list[torch.library.Library] = []  # keep Python-side registrations alive


def _fake_forward(value, shapes, start, loc, weights):
    check_stdeform_inputs(value, shapes, start, loc, weights, check_values=False)
    N, _, M, D = value.shape
    return value.new_empty(N, loc.shape[1], M * D)


def _fake_backward(grad_out, value, shapes, start, loc, weights):
    check_stdeform_inputs(value, shapes, start, loc, weights, check_values=False)
    return torch.empty_like(value), torch.empty_like(loc), torch.empty_like(weights)


def _setup_context(ctx, inputs, output):
    value, shapes, start, loc, weights = inputs
    ctx.save_for_backward(value, shapes, start, loc, weights)


def _backward(ctx, grad_out):
    value, shapes, start, loc, weights = ctx.saved_tensors
    grad_value, grad_loc, grad_weights = torch.ops.visbench.stdeform_attn_backward(
        grad_out.contiguous(), value, shapes, start, loc, weights
    )
    return grad_value, None, None, grad_loc, grad_weights


DOUBLE_BACKWARD_ERROR = (
    "visbench::stdeform_attn does not support double backward (second-order gradients); "
    "use impl='reference'"
)


def _setup_backward_context(ctx, inputs, output):
    pass


def _double_backward(ctx, *grads):
    """The backward op's own backward: second-order gradients are not implemented, so asking for
    them raises (an op without an autograd kernel would give zeros with only a warning)."""
    raise RuntimeError(DOUBLE_BACKWARD_ERROR)


def _autocast_enabled(device_type: str) -> bool:
    if device_type not in ("cpu", "cuda"):
        return False
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch 2.4 takes no device type: is_autocast_enabled() means CUDA
        return (
            torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
        )


def autocast_inputs(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors as the op sees them under autocast: when autocast is on for their device,
    floating tensors other than float64 in AUTOCAST_DTYPE (the rule torch.library.register_autocast
    applies), else unchanged."""
    if not tensors or not _autocast_enabled(tensors[0].device.type):
        return tensors
    return tuple(
        t.to(AUTOCAST_DTYPE) if t.is_floating_point() and t.dtype != torch.float64 else t
        for t in tensors
    )


def _register_autocast() -> None:
    """The op's autocast rule, for calls of torch.ops.visbench.* (torch >= 2.5 has
    register_autocast; on 2.4 only the stdeform_attn wrapper follows autocast)."""
    if not hasattr(torch.library, "register_autocast"):
        return
    for device_type in ("cpu", "cuda"):
        for name in ("visbench::stdeform_attn", "visbench::stdeform_attn_backward"):
            try:
                torch.library.register_autocast(name, device_type, AUTOCAST_DTYPE)
            except ValueError:  # no autocast for this device type in this torch build
                break


def _register_reference(library: torch.library.Library, dispatch_key: str) -> None:
    library.impl("stdeform_attn", stdeform_attn_reference, dispatch_key)
    library.impl("stdeform_attn_backward", stdeform_attn_reference_backward, dispatch_key)


def register_op() -> ExtensionInfo:
    """Build/load the kernels and register the op once per process; returns what was built."""
    global _info
    if _info is not None:
        return _info
    info = load_extension()
    if info.loaded:
        library = torch.library.Library("visbench", "IMPL")
    else:
        library = torch.library.Library("visbench", "DEF")
        library.define(FORWARD_SCHEMA)
        library.define(BACKWARD_SCHEMA)
    if not info.cpu_kernel:
        _register_reference(library, "CPU")
        warnings.warn(
            "visbench: the STDeformAttn C++ kernels are not available ("
            + "; ".join(info.notes)
            + "); torch.ops.visbench.stdeform_attn runs the slow pure-PyTorch reference.",
            RuntimeWarning,
            stacklevel=2,
        )
    if not info.cuda_kernel:
        _register_reference(library, "CUDA")
        if torch.cuda.is_available():
            warnings.warn(
                "visbench: no CUDA kernel for STDeformAttn ("
                + "; ".join(info.notes)
                + "); CUDA tensors run the pure-PyTorch reference.",
                RuntimeWarning,
                stacklevel=2,
            )
    elif info.notes and torch.cuda.is_available():  # built, but with a caveat (toolkit version)
        warnings.warn("visbench: " + "; ".join(info.notes), RuntimeWarning, stacklevel=2)
    _libraries.append(library)
    torch.library.register_fake("visbench::stdeform_attn", _fake_forward)
    torch.library.register_fake("visbench::stdeform_attn_backward", _fake_backward)
    torch.library.register_autograd(
        "visbench::stdeform_attn", _backward, setup_context=_setup_context
    )
    torch.library.register_autograd(
        "visbench::stdeform_attn_backward",
        _double_backward,
        setup_context=_setup_backward_context,
    )
    _register_autocast()
    _info = info
    return info


def stdeform_impl(device: str | torch.device = "cpu") -> str:
    """Which implementation the op runs on ``device``: "cpu kernel", "cuda kernel" or "reference"."""
    info = register_op()
    kind = torch.device(device).type
    if kind == "cpu" and info.cpu_kernel:
        return "cpu kernel"
    if kind == "cuda" and info.cuda_kernel:
        return "cuda kernel"
    return "reference"


def stdeform_attn(
    value: torch.Tensor,  # (N, S, M, D)
    shapes: torch.Tensor,  # (L, 3) int64 rows (T, H, W)
    start: torch.Tensor,  # (L,) int64
    loc: torch.Tensor,  # (N, Q, M, L, K, 3) normalised (x, y, t)
    weights: torch.Tensor,  # (N, Q, M, L, K)
    *,
    impl: str = "op",
) -> torch.Tensor:  # (N, Q, M*D)
    """Spatio-temporal deformable attention: sum over levels and points of weight * trilinear sample.

    ``impl="op"`` runs ``torch.ops.visbench.stdeform_attn`` (the compiled kernel of the tensors'
    device); ``impl="reference"`` the pure-PyTorch ``F.grid_sample`` reference. Under autocast
    both run in float32 (AUTOCAST_DTYPE) and return float32.
    """
    value, loc, weights = autocast_inputs(value, loc, weights)
    if impl == "reference":
        return stdeform_attn_reference(value, shapes, start, loc, weights)
    if impl != "op":
        raise ValueError(f"stdeform_attn: impl must be 'op' or 'reference', got {impl!r}")
    # `import attention` registered the op (register_op), so nothing here runs outside the op.
    return torch.ops.visbench.stdeform_attn(value, shapes, start, loc, weights)
