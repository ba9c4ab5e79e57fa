"""Attention backends for the VIS model and the spatio-temporal deformable attention op.

    from attention import BACKENDS, build_attention, parse_backend
    spec = parse_backend("stdeform:mode=frames,n_points=32")
    layer = build_attention(spec, d_model=96, n_heads=4, n_levels=1, n_frames=6)

Importing the package registers ``torch.ops.visbench.stdeform_attn``: it loads the compiled
kernels (building them on the first import on a machine, about a minute; a cached build loads in
well under a second) or, with VISBENCH_EXTENSION=0 or no compiler, registers the pure-PyTorch
reference. So the op exists before any call, and torch.compile can trace a first call to it.
"""

from attention.extension import ExtensionInfo, load_extension
from attention.registry import BACKENDS, BackendSpec, build_attention, parse_backend
from attention.stdeform_op import register_op, stdeform_attn, stdeform_impl
from attention.stdeform_reference import stdeform_attn_reference, stdeform_attn_reference_backward

register_op()

__all__ = [
    "BACKENDS",
    "BackendSpec",
    "ExtensionInfo",
    "build_attention",
    "load_extension",
    "parse_backend",
    "register_op",
    "stdeform_attn",
    "stdeform_attn_reference",
    "stdeform_attn_reference_backward",
    "stdeform_impl",
]
