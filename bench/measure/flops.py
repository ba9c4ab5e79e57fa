"""FLOP counting, cross-checked three ways.

1. fvcore's FlopCountAnalysis (jit trace; counts one multiply-accumulate as one "flop", so its
   totals are reported as GMACs), with handles added for the custom ops
   (``visbench::stdeform_attn``, ``visbench::neighborhood_attn``) and
   ``aten::scaled_dot_product_attention``; per module and per operator.
2. torch.utils.flop_counter.FlopCounterMode (dispatch level; counts 2 FLOPs per MAC), given
   formulas for the custom ops and for CPU's fused SDPA kernel.
3. The attention backends' analytic formulas (``AttentionBackend.mac_breakdown``).

Operators neither counter has a formula for are listed (``unsupported``), never dropped silently;
fvcore's own ignore list holds only shape, copy and integer ops, which cost no arithmetic.
"""

import contextlib
import dataclasses
import math
from collections import Counter

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch.utils.flop_counter import FlopCounterMode, flop_registry

STDEFORM_OP = "visbench::stdeform_attn"
NEIGHBORHOOD_OP = "visbench::neighborhood_attn"
CORNERS = 8  # trilinear interpolation reads 8 corners per point


def encoder_layer_macs(attention, tokens: int, shapes, d_model: int, dim_feedforward: int) -> dict:
    """One encoder layer's multiply-accumulates by formula, per component: the backend's own
    breakdown, the FFN's two linears and the two LayerNorms (5 per element, as fvcore counts)."""
    return {
        **attention.mac_breakdown(tokens, shapes),
        "ffn": tokens * 2 * d_model * dim_feedforward,
        "norms": 2 * 5 * tokens * d_model,
    }


def stdeform_macs(value_shape, loc_shape) -> int:
    """MACs of the op: N*Q*M*L*K points x 8 corners x D channels (weighting included)."""
    N, _, M, D = value_shape
    _, Q, _, L, K, _ = loc_shape
    return N * Q * M * L * K * CORNERS * D


def neighborhood_macs(query_shape, value_shape, kernel) -> int:
    """MACs of the neighbourhood op: QK^T and AV over the k_t*k_h*k_w keys of every query (the
    kernel clipped to the volume), whichever kernel computes it (attention/neighborhood.py)."""
    N, M, T, H, W, D = query_shape
    keys = math.prod(min(k, n) for k, n in zip(kernel, (T, H, W), strict=True))
    return N * M * T * H * W * keys * (D + value_shape[-1])


def sdpa_macs(query_shape, key_shape, value_shape) -> int:
    """MACs of softmax(QK^T)V: Q·K^T plus attention·V, per batch and head."""
    *batch, q_len, head_dim = query_shape
    k_len, v_dim = key_shape[-2], value_shape[-1]
    heads = 1
    for size in batch:
        heads *= size
    return heads * q_len * k_len * (head_dim + v_dim)


def _fvcore_stdeform(inputs, outputs) -> int:
    return stdeform_macs(get_shape(inputs[0]), get_shape(inputs[3]))


def _fvcore_sdpa(inputs, outputs) -> int:
    return sdpa_macs(get_shape(inputs[0]), get_shape(inputs[1]), get_shape(inputs[2]))


def _fvcore_neighborhood(inputs, outputs) -> int:
    kernel = [inputs[i].toIValue() for i in (4, 5, 6)]  # kt, kh, kw: constants of the trace
    return neighborhood_macs(get_shape(inputs[0]), get_shape(inputs[2]), kernel)


FVCORE_HANDLES = {
    STDEFORM_OP: _fvcore_stdeform,
    NEIGHBORHOOD_OP: _fvcore_neighborhood,
    "aten::scaled_dot_product_attention": _fvcore_sdpa,
}


def _stdeform_flop(value_shape, shapes_shape, start_shape, loc_shape, *args, **kwargs) -> int:
    return 2 * stdeform_macs(value_shape, loc_shape)


def _stdeform_backward_flop(
    grad_shape, value_shape, shapes_shape, start_shape, loc_shape, *args, **kwargs
) -> int:
    # gradient of value and of the weights/locations: twice the forward, as for matmuls
    return 4 * stdeform_macs(value_shape, loc_shape)


def _neighborhood_flop(q_shape, k_shape, v_shape, padding_shape, kt, kh, kw, *args, **kwargs):
    return 2 * neighborhood_macs(q_shape, v_shape, (kt, kh, kw))


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return 2 * sdpa_macs(query_shape, key_shape, value_shape)


def flop_counter_formulas() -> dict:
    """FlopCounterMode formulas (2 FLOPs per MAC, on shapes) for the ops and the fused SDPA kernels
    torch lacks, keyed by operator packet, for FlopCounterMode's ``custom_mapping``.

    Passed per counter rather than registered globally: on torch 2.4, register_flop_formula keys
    its registry by overload while FlopCounterMode looks operators up by packet, so a registered
    formula was never found and those operators counted zero.
    """
    import attention.neighborhood  # noqa: F401  (defines visbench::neighborhood_attn)
    from attention import register_op

    register_op()
    formulas = {
        torch.ops.visbench.stdeform_attn: _stdeform_flop,
        torch.ops.visbench.stdeform_attn_backward: _stdeform_backward_flop,
        torch.ops.visbench.neighborhood_attn: _neighborhood_flop,
    }
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None and cpu_sdpa not in flop_registry:
        formulas[cpu_sdpa] = _cpu_sdpa_flop
    return formulas


@dataclasses.dataclass
class FlopCount:
    """fvcore's count: MACs in total, per module and per operator, and what it could not count."""

    total_macs: int
    by_module: dict[str, int]
    by_operator: dict[str, int]
    unsupported: dict[str, int]


def count_fvcore(model: torch.nn.Module, inputs: tuple) -> FlopCount:
    """Trace ``model(*inputs)`` with fvcore and count multiply-accumulates."""
    from attention import register_op

    register_op()
    analysis = FlopCountAnalysis(model, inputs).set_op_handle(**FVCORE_HANDLES)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return FlopCount(
        total_macs=int(analysis.total()),
        by_module={name: int(v) for name, v in analysis.by_module().items()},
        by_operator={name: int(v) for name, v in analysis.by_operator().items()},
        unsupported=dict(Counter(analysis.unsupported_ops())),
    )


@contextlib.contextmanager
def _parameters_frozen(model: torch.nn.Module):
    """requires_grad off for every parameter, restored afterwards.

    FlopCounterMode's module tracker hooks tensors that require grad; under torch.no_grad() it
    fails on a parameter passed straight into a submodule, so freeze instead of no_grad.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def count_flop_counter(model: torch.nn.Module, inputs: tuple) -> tuple[int, dict[str, int]]:
    """FLOPs (2 per MAC) of ``model(*inputs)`` by torch's FlopCounterMode: total and per operator."""
    counter = FlopCounterMode(display=False, custom_mapping=flop_counter_formulas())
    with _parameters_frozen(model), counter:
        model(*inputs)
    per_op = Counter()
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        per_op[str(op)] += int(flops)
    return int(counter.get_total_flops()), dict(per_op)
